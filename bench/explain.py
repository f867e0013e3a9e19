#!/usr/bin/env python3
"""The SQL the server runs for each search scenario, with PostgreSQL's plan for it.

  python bench/explain.py --db postgresql://postgres@127.0.0.1:5432/fhirhub_search \\
      --urls-dir bench/results/<stamp>-postgresql-x10-urls [--which median] [--generic]

For each scenario's representative request (``--which``: the ``median`` or ``slowest`` of
its one-off set-up timings in ``info.json``, or the ``first`` line of its URL file), this
builds the SQL in-process, the way the server does: ``parse_search`` with the server's
page sizes, the store's ``SearchCompiler`` (the page query, the count for
``_total=accurate``, one query per ``_include``/``_revinclude`` over the page's matches),
``?`` placeholders turned into psycopg's ``%s``. Each statement is run under
``EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT)`` with its values, and the indexes the plan uses
are listed with their definitions. Output: markdown (stdout, or ``--out FILE``), a summary
table first, slowest statement first.

The server's driver (psycopg) prepares a statement after 5 runs on a connection, and
PostgreSQL may then switch to a generic plan, made without the values. ``--generic`` adds
that plan (``plan_cache_mode = force_generic_plan``, ``PREPARE`` and ``EXPLAIN EXECUTE``),
so a plan that only goes wrong when generic can be seen.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import psycopg
from psycopg import sql as pgsql

if TYPE_CHECKING:
    from fhirhub.config import Settings
    from fhirhub.store.search_sql import SearchCompiler

_INDEX_USE = re.compile(r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)?"
                        r" (?:using|on) (\w+)")
_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")
_EXEC_MS = re.compile(r"Execution Time: ([\d.]+) ms")
_PLAN_MS = re.compile(r"Planning Time: ([\d.]+) ms")
_SQL_BREAKS = re.compile(r" (?=FROM |WHERE |AND \(r\.|ORDER BY |LIMIT )")


@dataclass
class Statement:
    role: str  # "page", "count", "include Encounter:practitioner", ...
    sql: str  # with %s placeholders, as psycopg gets it
    params: list[Any]
    plan: str = ""
    generic_plan: str = ""
    error: str = ""

    @property
    def execution_ms(self) -> float | None:
        m = _EXEC_MS.search(self.plan)
        return float(m.group(1)) if m else None

    @property
    def planning_ms(self) -> float | None:
        m = _PLAN_MS.search(self.plan)
        return float(m.group(1)) if m else None

    def indexes(self) -> list[str]:
        found = _INDEX_USE.findall(self.plan) + _INDEX_USE.findall(self.generic_plan)
        return list(dict.fromkeys(found))

    def seq_scans(self) -> list[str]:
        return list(dict.fromkeys(_SEQ_SCAN.findall(self.plan)))


@dataclass
class Scenario:
    name: str
    url: str
    statements: list[Statement] = field(default_factory=list)
    error: str = ""


def split_url(url: str) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """(the searched types, the parameters) of a URL relative to the base."""
    path, _, query = url.partition("?")
    path = path.strip("/")
    types = (path,) if path and path != "_search" else ()
    return types, parse_qsl(query, keep_blank_values=True)


def to_psycopg(sql: str) -> str:
    """What the PostgreSQL store does to the shared SQL (store/postgres.py)."""
    return sql.replace("?", "%s")


def to_numbered(sql: str) -> str:
    """``%s`` placeholders as ``$1, $2, ...`` (for PREPARE)."""
    parts = sql.split("%s")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


def build(url: str, settings: Settings, compiler: SearchCompiler,
          conn: psycopg.Connection[Any] | None) -> list[Statement]:
    """The statements one search runs (the include queries need ``conn``, to find the
    page's matches as the server would)."""
    from fhirhub.search.parse import parse_search

    types, params = split_url(url)
    query, issues = parse_search(types, params, strict=False,
                                 default_count=settings.default_page_size,
                                 max_count=settings.max_page_size)
    errors = [i.diagnostics for i in issues if i.severity in ("error", "fatal")]
    if errors:
        raise ValueError(f"the server would refuse this search: {errors[0]}")
    compiled = compiler.compile(query)
    page = Statement("page", to_psycopg(compiled.sql), list(compiled.params))
    out = [page]
    if query.total == "accurate":
        count_sql, count_params = compiler.count(query)
        out.append(Statement("count (_total=accurate)", to_psycopg(count_sql), list(count_params)))
    if query.includes and conn is not None:
        rows = conn.execute(page.sql, page.params).fetchall()[: query.count]
        frontier = [(str(r[0]), str(r[1])) for r in rows]
        for inc in query.includes:
            if not frontier:
                break
            inc_sql, inc_params = compiler.include(inc, frontier)
            kind = "_revinclude" if inc.reverse else "_include"
            target = f":{inc.target_type}" if inc.target_type else ""
            out.append(Statement(f"{kind}={inc.source_type}:{inc.param}{target}",
                                 to_psycopg(inc_sql), list(inc_params)))
    return out


def explain(conn: psycopg.Connection[Any], st: Statement, generic: bool) -> None:
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + st.sql,
                                st.params).fetchall()
        st.plan = "\n".join(str(r[0]) for r in rows)
        if generic:
            st.generic_plan = generic_plan(conn, st)
    except psycopg.Error as exc:
        st.error = f"{type(exc).__name__}: {exc}".strip()


def generic_plan(conn: psycopg.Connection[Any], st: Statement) -> str:
    with conn.transaction():
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE fhirhub_explain AS {to_numbered(st.sql)}")
        try:
            args = pgsql.SQL(", ").join(pgsql.Literal(v) for v in st.params)
            stmt = pgsql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) EXECUTE fhirhub_explain ({})")
            rows = conn.execute(stmt.format(args)).fetchall()
        finally:
            conn.execute("DEALLOCATE fhirhub_explain")
    return "\n".join(str(r[0]) for r in rows)


def index_definitions(conn: psycopg.Connection[Any], names: Sequence[str]) -> dict[str, str]:
    if not names:
        return {}
    rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)",
                        (list(names),)).fetchall()
    return {str(n): str(d) for n, d in rows}


def pick_urls(urls_dir: Path, which: str, only: Sequence[str]) -> list[tuple[str, str]]:
    """(scenario, URL) for each scenario of ``urls_dir``."""
    info_path = urls_dir / "info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    picked = []
    for path in sorted(urls_dir.glob("*.urls")):
        name = path.stem
        if only and name not in only:
            continue
        meta = (info.get("scenarios") or {}).get(name) or {}
        url = meta.get(f"{which}_url") if which != "first" else None
        if not url:
            url = next(line.split("\t", 1)[0].strip() for line in path.read_text().splitlines()
                       if line.strip() and not line.startswith("#"))
        picked.append((name, url))
    return picked


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def _sql_block(sql: str) -> str:
    return _SQL_BREAKS.sub("\n  ", sql)


def render(scenarios: Sequence[Scenario], defs: dict[str, str], title: str) -> str:
    out = [f"# {title}", "",
           "Each statement ran under `EXPLAIN (ANALYZE, BUFFERS)` with its values; slowest "
           "first.", "",
           "| scenario | statement | execution ms | planning ms | indexes | seq scans |",
           "|---|---|---:|---:|---|---|"]
    flat = [(sc, st) for sc in scenarios for st in sc.statements]
    for sc, st in sorted(flat, key=lambda p: -(p[1].execution_ms or 0.0)):
        out.append(f"| {sc.name} | {st.role} | {_ms(st.execution_ms)} | {_ms(st.planning_ms)} "
                   f"| {', '.join(st.indexes()) or '-'} | {', '.join(st.seq_scans()) or '-'} |")
    for sc in scenarios:
        out += ["", f"## {sc.name}", "", f"`GET {sc.url}`"]
        if sc.error:
            out += ["", f"**Could not build the SQL:** {sc.error}"]
        for st in sc.statements:
            out += ["", f"### {st.role}", "", "```sql", _sql_block(st.sql), "```", "",
                    f"Values: `{json.dumps(st.params)[:1500]}`", ""]
            if st.error:
                out += [f"**EXPLAIN failed:** {st.error}"]
                continue
            out += ["```", st.plan, "```"]
            if st.generic_plan:
                out += ["", "Generic plan (as a prepared statement may run it):", "", "```",
                        st.generic_plan, "```"]
            used = st.indexes()
            if used:
                out += ["", "| index | definition |", "|---|---|"]
                out += [f"| {n} | `{defs.get(n, '?')}` |" for n in used]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True, help="postgresql:// URL of the benchmark database")
    ap.add_argument("--urls-dir", required=True, type=Path,
                    help="the folder of NAME.urls files (and info.json) from search_urls.py")
    ap.add_argument("--which", choices=("median", "slowest", "first"), default="median",
                    help="the request explained per scenario (default median)")
    ap.add_argument("--scenario", action="append", default=[], metavar="NAME",
                    help="only this scenario (repeatable)")
    ap.add_argument("--generic", action="store_true", help="also show the generic plans")
    ap.add_argument("--title", default="PostgreSQL plans of the search benchmark")
    ap.add_argument("--out", type=Path, help="write the markdown here instead of stdout")
    args = ap.parse_args(argv)
    if not args.db.startswith(("postgresql://", "postgres://")):
        ap.error("--db: a postgresql:// URL (the plans are PostgreSQL's)")
    picked = pick_urls(args.urls_dir, args.which, args.scenario)
    if not picked:
        ap.error(f"no *.urls files in {args.urls_dir}")
    # fhirhub is imported here, not at the top: the helpers above need none of it.
    from fhirhub.config import Settings
    from fhirhub.errors import FhirError
    from fhirhub.store.search_sql import SearchCompiler

    settings = Settings.from_env()
    compiler = SearchCompiler()
    scenarios = []
    with psycopg.connect(args.db, autocommit=True) as conn:
        for name, url in picked:
            sc = Scenario(name, url)
            try:
                sc.statements = build(url, settings, compiler, conn)
            except (ValueError, FhirError, psycopg.Error) as exc:
                sc.error = f"{type(exc).__name__}: {exc}"
            for st in sc.statements:
                explain(conn, st, args.generic)
            scenarios.append(sc)
            print(f"explained {name}", file=sys.stderr)
        defs = index_definitions(conn, sorted({n for sc in scenarios for st in sc.statements
                                               for n in st.indexes()}))
    text = render(scenarios, defs, args.title)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 1 if any(sc.error or any(st.error for st in sc.statements) for sc in scenarios) else 0


if __name__ == "__main__":
    sys.exit(main())
