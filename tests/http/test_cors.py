"""CORS: any origin may call the API; preflights are answered on every path, errors and
unknown paths included."""

from __future__ import annotations

import pytest

from leifdb.errors import NotLeaderError
from tests.http.client import Client

PREFLIGHT_VARY = ["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"]


@pytest.mark.parametrize("path", ["/db/k", "/db", "/health", "/", "/no/such/path", "/db/%zz"])
def test_preflight_gets_200_empty_body_and_echoes_method_and_headers(path):
    client = Client()
    reply = client.raw(b"OPTIONS", path.encode(), headers={
        b"Origin": [b"http://ui.example"],
        b"Access-Control-Request-Method": [b"PUT"],
        b"Access-Control-Request-Headers": [b"content-type, if-match"],
    })
    assert reply.code == 200
    assert reply.body == b""
    assert reply.header("Access-Control-Allow-Origin") == "*"
    assert reply.header("Access-Control-Allow-Methods") == "PUT"
    assert reply.header("Access-Control-Allow-Headers") == "content-type, if-match"
    assert reply.all("Vary") == PREFLIGHT_VARY
    assert reply.header("Content-Type") is None
    assert client.service.writes == []


def test_preflight_without_requested_headers_allows_none():
    reply = Client().raw(b"OPTIONS", b"/db/k", headers={
        b"Origin": [b"http://ui.example"], b"Access-Control-Request-Method": [b"DELETE"]})
    assert reply.code == 200
    assert reply.header("Access-Control-Allow-Methods") == "DELETE"
    assert reply.header("Access-Control-Allow-Headers") is None


def test_preflight_joins_repeated_request_headers_lines():
    reply = Client().raw(b"OPTIONS", b"/db/k", headers={
        b"Access-Control-Request-Method": [b"PUT"],
        b"Access-Control-Request-Headers": [b"content-type", b"if-match"]})
    assert reply.header("Access-Control-Allow-Headers") == "content-type, if-match"


@pytest.mark.parametrize("method,path,code", [
    ("GET", "/health", 200), ("PUT", "/db/k?value=v", 200), ("GET", "/db/absent", 404),
    ("GET", "/no/such/path", 404), ("POST", "/db/k", 405), ("GET", "/db?limit=0", 400),
    ("GET", "/", 200), ("GET", "/swagger/", 200),
])
def test_requests_with_an_origin_are_allowed_and_expose_etag(method, path, code):
    reply = Client().request(method, path, headers={"Origin": "http://ui.example"})
    assert reply.code == code
    assert reply.header("Access-Control-Allow-Origin") == "*"
    exposed = [h.strip() for h in reply.header("Access-Control-Expose-Headers").split(",")]
    assert "ETag" in exposed and "Location" in exposed and "Retry-After" in exposed


def test_redirects_carry_cors_headers():
    client = Client()
    client.service.write_error = NotLeaderError("127.0.0.1:8081")
    reply = client.put("/db/k?value=v", headers={"Origin": "http://ui.example"})
    assert reply.code == 307
    assert reply.header("Access-Control-Allow-Origin") == "*"


def test_bad_encoding_errors_carry_cors_headers():
    reply = Client().raw(b"GET", b"/db/%ff", headers={b"Origin": [b"http://ui.example"]})
    assert reply.code == 400
    assert reply.header("Access-Control-Allow-Origin") == "*"


def test_no_cors_headers_without_origin():
    reply = Client().get("/health")
    assert reply.header("Access-Control-Allow-Origin") is None
