"""Bad input gets a JSON 400, 404, 405 or 413, and nothing a client sends escapes a handler;
an unexpected exception is a logged JSON 500."""

from __future__ import annotations

import json

import pytest
from twisted.logger import globalLogPublisher

from tests.http.client import Client, assert_json_error, raw_http


@pytest.mark.parametrize("body", [
    b"{", b"[1, 2]", b'"just a string"', b"null", b"{'value': 'x'}", b'{"value": 1}',
    b'{"value": null}', b'{"value": ["a"]}', b'{"value": "a", "value": "b"}',
    b'{"value": "a", "extra": "b"}', b'{"value": NaN}', b'{"prev": 3, "value": "a"}',
    b"[" * 100000, b'{"value": "\xff"}', b'\xef\xbb\xbf{"value": "bom"}',
])
def test_bad_json_body_is_400(body):
    client = Client()
    assert_json_error(client.raw(b"PUT", b"/db/k", body=body), 400)
    assert client.service.writes == []


def test_lone_surrogate_in_json_is_400():
    client = Client()
    assert_json_error(client.raw(b"PUT", b"/db/k", body=b'{"value": "\\ud800"}'), 400)


def test_missing_value_is_400():
    client = Client()
    assert "missing value" in assert_json_error(client.put("/db/k"), 400)["error"]
    assert_json_error(client.put("/db/k", json={"prev": "x"}), 400)
    assert_json_error(client.raw(b"PUT", b"/db/k?prev=x&valu=y"), 400)


def test_value_in_both_query_and_body_is_400():
    assert_json_error(Client().put("/db/k?value=a", json={"value": "b"}), 400)


def test_repeated_query_parameter_is_400():
    assert_json_error(Client().put("/db/k?value=a&value=b"), 400)


def test_delete_body_accepts_only_prev():
    assert_json_error(Client().delete("/db/k", json={"value": "x"}), 400)


def test_empty_key_is_400():
    client = Client()
    assert "empty" in assert_json_error(client.put("/db/?value=x"), 400)["error"]
    assert_json_error(client.get("/db/"), 400)


@pytest.mark.parametrize("target", [b"/db/%zz", b"/db/a%2", b"/db/%ff%fe", b"/db/k?value=%zz",
                                    b"/db/k?value=%c3", b"/nowhere/%ff", b"/db?prefix=%e2%82"])
def test_invalid_percent_encoding_or_utf8_is_400(target):
    client = Client()
    assert_json_error(client.raw(b"PUT" if b"value" in target else b"GET", target), 400)
    assert client.service.writes == []


@pytest.mark.parametrize("headers", [
    {"If-Match": "W/\"1\""}, {"If-Match": "*"}, {"If-Match": '"1", "2"'}, {"If-Match": '"0"'},
    {"If-Match": '"abc"'}, {"If-None-Match": '"1"'},
    {"If-Match": '"1"', "If-None-Match": "*"},
])
def test_bad_or_conflicting_conditions_are_400(headers):
    client = Client()
    assert_json_error(client.put("/db/k?value=v", headers=headers), 400)
    assert client.service.writes == []


def test_prev_together_with_if_match_is_400():
    assert_json_error(Client().put("/db/k?value=v&prev=a", headers={"If-Match": '"1"'}), 400)


def test_prev_in_query_and_body_is_400():
    assert_json_error(Client().put("/db/k?prev=a", json={"value": "v", "prev": "b"}), 400)


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "1.5", "", " 5", "+5"])
def test_bad_limit_is_400(limit):
    assert_json_error(Client().get("/db?limit=" + limit.replace("+", "%2B")), 400)


def test_limit_bounds_are_accepted():
    client = Client()
    assert client.get("/db?limit=1").code == 200
    assert client.get("/db?limit=1000").code == 200


# -- sizes ------------------------------------------------------------------------------

def test_key_at_limit_is_fine_one_byte_more_is_413():
    client = Client(max_key_bytes=8)
    assert client.put("/db/" + "k" * 8 + "?value=v").code == 200
    body = assert_json_error(client.put("/db/" + "k" * 9 + "?value=v"), 413)
    assert body["limit"] == 8
    assert_json_error(client.get("/db/" + "k" * 9), 413)


def test_key_limit_counts_utf8_bytes():
    client = Client(max_key_bytes=4)
    assert client.put("/db/%C3%A9%C3%A9?value=v").code == 200  # 2 characters, 4 bytes
    assert_json_error(client.put("/db/%C3%A9%C3%A9a?value=v"), 413)


def test_value_over_limit_is_413_from_query_or_body():
    client = Client(max_value_bytes=10)
    assert client.put("/db/k?value=" + "v" * 10).code == 200
    assert_json_error(client.put("/db/k?value=" + "v" * 11), 413)
    assert_json_error(client.put("/db/k", json={"value": "é" * 6}), 413)
    assert_json_error(client.put("/db/k", json={"value": "v", "prev": "p" * 11}), 413)
    assert len(client.service.writes) == 1


def test_range_prefix_over_key_limit_is_413():
    assert_json_error(Client(max_key_bytes=4).get("/db?prefix=abcde"), 413)


def test_default_limits_are_1_kib_keys_and_1_mib_values():
    client = Client()
    assert client.put("/db/" + "k" * 1024, json={"value": "v" * (1 << 20)}).code == 200
    assert_json_error(client.put("/db/" + "k" * 1025, json={"value": "v"}), 413)
    assert_json_error(client.put("/db/k", json={"value": "v" * ((1 << 20) + 1)}), 413)


def test_large_body_is_413():
    client = Client(max_body_bytes=1000)
    body = b'{"value": "' + b"v" * 2000 + b'"}'
    assert_json_error(client.raw(b"PUT", b"/db/k", body=body), 413)
    assert client.service.writes == []


def test_large_chunked_body_is_413_from_a_bounded_read():
    client = Client(max_body_bytes=1000)
    body = b'{"value": "' + b"v" * 2000 + b'"}'
    reply = client.raw(b"PUT", b"/db/k", body=body, chunked=True)
    assert_json_error(reply, 413)
    assert client.service.writes == []


def test_large_body_on_any_route_is_413():
    client = Client(max_body_bytes=10)
    assert_json_error(client.raw(b"GET", b"/health", body=b"x" * 11), 413)


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        Client(max_key_bytes=0)
    with pytest.raises(ValueError):
        Client(max_body_bytes=-1)


# -- routing ----------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,allowed", [
    ("POST", "/db/k", "DELETE, GET, HEAD, OPTIONS, PUT"),
    ("PATCH", "/db/a/b", "DELETE, GET, HEAD, OPTIONS, PUT"),
    ("PUT", "/db", "GET, HEAD, OPTIONS"),
    ("DELETE", "/health", "GET, HEAD, OPTIONS"),
    ("POST", "/", "GET, HEAD, OPTIONS"),
])
def test_wrong_method_is_405_with_allow(method, path, allowed):
    reply = Client().request(method, path)
    body = assert_json_error(reply, 405)
    assert reply.header("Allow") == allowed
    assert body["allowed"] == allowed.split(", ")


@pytest.mark.parametrize("path", ["/nope", "/db2", "/health/", "/swagger/nope.js",
                                  "/swagger/../setup.py", "/swagger/index.j2"])
def test_unknown_path_is_404_json(path):
    assert_json_error(Client().get(path), 404)


def test_plain_options_lists_allowed_methods():
    client = Client()
    reply = client.request("OPTIONS", "/db/k")
    assert reply.code == 200 and reply.body == b""
    assert reply.header("Allow") == "DELETE, GET, HEAD, OPTIONS, PUT"
    assert_json_error(client.request("OPTIONS", "/nope"), 404)


def test_swagger_without_slash_redirects():
    reply = Client().get("/swagger")
    assert reply.code == 308
    assert reply.header("Location") == "/swagger/"


@pytest.mark.parametrize("request_bytes", [
    b"GET /health HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
    b"GET /db/k?value=%zz HTTP/1.1\r\nHost: node\r\n\r\n",
    b"M-SEARCH /db/%C3 HTTP/1.1\r\nHost: node\r\n\r\n",
])
def test_requests_no_client_would_send_get_a_json_400(request_bytes):
    answer = raw_http(Client().resource, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"]


@pytest.mark.parametrize("request_bytes", [
    b"G\xffT /health HTTP/1.1\r\nHost: node\r\n\r\n",
    b"GET /db/\xff HTTP/1.1\r\nHost: node\r\n\r\n",
])
def test_twisted_refuses_raw_non_ascii_request_lines_before_the_api_without_html(
        request_bytes):
    answer = raw_http(Client().resource, request_bytes)
    assert answer == b"HTTP/1.1 400 Bad Request\r\n\r\n"


# -- unexpected failures ----------------------------------------------------------------

@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


class _BrokenStore:
    applied_index = 0

    def get(self, key):
        raise RuntimeError("disk on fire")

    def range(self, prefix="", start_after=None, limit=None):
        raise RuntimeError("disk on fire")


def test_unexpected_exception_in_a_handler_is_logged_json_500(logged):
    client = Client()
    client.service.store = _BrokenStore()
    for path in ["/db/k", "/db", "/db/k?consistency=stale"]:
        assert assert_json_error(client.get(path), 500) == {"error": "internal server error"}
    failures = [e for e in logged if "log_failure" in e]
    assert len(failures) == 3
    assert all(e["log_failure"].check(RuntimeError) for e in failures)


def test_unexpected_exception_from_the_service_is_500(logged):
    client = Client()
    client.service.write_error = KeyError("boom")
    assert_json_error(client.put("/db/k?value=v"), 500)
    client.service.status = lambda: 1 / 0
    assert_json_error(client.get("/health"), 500)
    assert len([e for e in logged if "log_failure" in e]) == 2
