"""Where client and issuer public keys come from (fhirhub.auth.jwks): a JWK Set held
inline, or one fetched from a URL on the deployment's allow-list and cached.

SMART Backend Services lets a client register a JWKS URL
(https://hl7.org/fhir/smart-app-launch/backend-services.html#registering-a-smart-backend-service-communicating-public-keys);
RFC 7517 §5 defines a JWK Set (https://www.rfc-editor.org/rfc/rfc7517#section-5). Remote
sets are fetched from a real HTTP server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fhirhub.auth.jwks import NoKey, RemoteKeys, allowed_url, find_key, parse_jwks
from tests.auth_support import ec_key, public_jwks, rsa_key


class JwksServer:
    """An HTTP server on 127.0.0.1 serving one JWK Set at ``/jwks.json``, counting the
    requests it answers."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.requests: list[str] = []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests.append(self.path)
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                body = json.dumps(served.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def two_keys() -> dict[str, Any]:
    return {"keys": [*public_jwks(ec_key(), "es")["keys"], *public_jwks(rsa_key(), "rsa")["keys"]]}


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with JwksServer(two_keys()) as s:
        yield s


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- allowed_url ------------------------------------------------------------------------------


def test_url_equal_to_an_entry_is_allowed() -> None:
    assert allowed_url("https://keys.example/app/jwks.json", ("https://keys.example/app/jwks.json",))


def test_url_under_an_entry_ending_in_slash_is_allowed() -> None:
    allow = ("https://keys.example/apps/",)
    assert allowed_url("https://keys.example/apps/one/jwks.json", allow)
    assert allowed_url("https://keys.example/apps/", allow)


def test_entry_without_a_trailing_slash_is_not_a_prefix() -> None:
    allow = ("https://keys.example/app",)
    assert not allowed_url("https://keys.example/app/jwks.json", allow)
    assert not allowed_url("https://keys.example/application", allow)
    assert not allowed_url("https://keys.example.evil.test/", ("https://keys.example",))


def test_url_on_no_entry_is_not_allowed() -> None:
    allow = ("https://keys.example/apps/", "https://other.example/jwks.json")
    assert not allowed_url("https://evil.example/apps/jwks.json", allow)
    assert not allowed_url("http://keys.example/apps/jwks.json", allow)  # other scheme
    assert not allowed_url("https://keys.example/jwks.json", allow)
    assert allowed_url("https://other.example/jwks.json", allow)


def test_empty_allow_list_allows_nothing() -> None:
    assert not allowed_url("https://keys.example/jwks.json", ())


# -- inline sets ------------------------------------------------------------------------------


def test_inline_set_is_parsed_from_text_or_a_dict() -> None:
    for given in (two_keys(), json.dumps(two_keys())):
        keys = parse_jwks(given)
        assert sorted(k.key_id or "" for k in keys.keys) == ["es", "rsa"]


def test_key_is_found_by_kid() -> None:
    keys = parse_jwks(two_keys())
    assert find_key(keys, "rsa").key_type == "RSA"
    assert find_key(keys, "es").key_type == "EC"


def test_unknown_kid_in_an_inline_set_is_refused_by_name() -> None:
    with pytest.raises(NoKey, match="no key with kid 'other'"):
        find_key(parse_jwks(two_keys()), "other")


@pytest.mark.parametrize("text", ["not json", '{"keys": "x"}', '{"keys": []}',
                                  '{"keys": [{"kty": "nonsense"}]}'])
def test_text_that_is_not_a_jwk_set_is_refused(text: str) -> None:
    with pytest.raises(NoKey, match="not a usable JWK Set"):
        parse_jwks(text)


@pytest.mark.parametrize("text", ["[]", '"keys"', "5"])
def test_json_that_is_not_an_object_is_refused_as_no_key(text: str) -> None:
    with pytest.raises(NoKey, match="not a usable JWK Set"):
        parse_jwks(text)


# -- remote sets ------------------------------------------------------------------------------


def test_url_off_the_allow_list_is_refused_without_fetching(server: JwksServer) -> None:
    remote = RemoteKeys(("https://keys.example/",))
    with pytest.raises(NoKey, match="not on this server's allow-list") as info:
        remote.key(server.url, "es")
    assert server.url in str(info.value)
    assert server.requests == []


def test_url_under_an_allowed_prefix_is_fetched(server: JwksServer) -> None:
    prefix = server.url.removesuffix("jwks.json")
    assert RemoteKeys((prefix,)).key(server.url, "es").key_type == "EC"
    assert server.requests == ["/jwks.json"]


def test_remote_set_is_fetched_once_and_cached(server: JwksServer) -> None:
    remote = RemoteKeys((server.url,))
    es = remote.key(server.url, "es")
    rsa = remote.key(server.url, "rsa")
    again = remote.key(server.url, "es")
    assert es.key_type == "EC" and rsa.key_type == "RSA" and again.key_id == "es"
    assert server.requests == ["/jwks.json"]


def test_each_remote_keys_has_its_own_cache(server: JwksServer) -> None:
    RemoteKeys((server.url,)).key(server.url, "es")
    RemoteKeys((server.url,)).key(server.url, "es")
    assert len(server.requests) == 2


def test_unknown_kid_at_a_remote_set_is_refused_naming_the_url(server: JwksServer) -> None:
    remote = RemoteKeys((server.url,))
    remote.key(server.url, "es")
    with pytest.raises(NoKey, match="other") as info:
        remote.key(server.url, "other")
    assert server.url in str(info.value)
    assert 1 <= len(server.requests) <= 2  # at most one refresh for the unknown kid


def test_remote_set_without_signing_keys_is_refused(server: JwksServer) -> None:
    jwk = public_jwks(ec_key(), "enc-only")["keys"][0]
    server.jwks = {"keys": [{**jwk, "use": "enc"}]}
    with pytest.raises(NoKey, match="signing keys"):
        RemoteKeys((server.url,)).key(server.url, "enc-only")


def test_remote_url_answering_404_is_refused(server: JwksServer) -> None:
    url = server.url.replace("jwks.json", "missing.json")
    with pytest.raises(NoKey, match="could not be fetched") as info:
        RemoteKeys((url,)).key(url, "es")
    assert url in str(info.value)


def test_server_that_is_down_gives_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    with pytest.raises(NoKey, match="could not be fetched") as info:
        RemoteKeys((url,)).key(url, "es")
    assert url in str(info.value)
