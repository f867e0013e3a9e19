"""The layering of docs/adr/0001-architecture.md, kept honest: each package imports only
from itself and the layers below it, and nothing imports the web framework but ``api``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "fhirhub"
LAYERS = ["fhir", "search", "store", "audit", "auth", "engine", "bulk", "api", "cli"]
BASE = {"errors", "config", "__init__"}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "fhirhub" or len(parts) < 2:
        return None
    name = parts[1]
    return LAYERS.index(name) if name in LAYERS else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_imports_only_from_its_layer_or_below(path: Path) -> None:
    rel = path.relative_to(SRC)
    own_name = rel.parts[0].removesuffix(".py")
    own = -1 if own_name in BASE else LAYERS.index(own_name)
    for module in _imports(path):
        layer = _layer(module)
        if layer is not None:
            assert layer <= own, f"{rel} imports {module}, a layer above it"
        if module.split(".")[0] in ("starlette", "uvicorn"):
            assert own_name in ("api", "cli"), f"{rel} imports the web framework ({module})"
        if module.split(".")[0] in ("psycopg", "psycopg_pool", "sqlite3"):
            assert own_name == "store", f"{rel} talks to a database driver ({module})"


def test_public_surface_of_the_package() -> None:
    import fhirhub
    import fhirhub.engine
    import fhirhub.store

    assert set(fhirhub.__all__) == {"FHIR_VERSION", "__version__"}
    assert set(fhirhub.engine.__all__) == {"Engine", "FhirRequest", "FhirResponse"}
    assert "Store" in fhirhub.store.__all__ and "open_store" in fhirhub.store.__all__
