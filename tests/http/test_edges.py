"""Input edges: unknown query parameters on every endpoint, bodies refused before they are
read, over-long request lines and header blocks, and X-LeifDB-Revision on every key-API
answer. The channel-level cases are driven byte by byte over a StringTransport."""

from __future__ import annotations

import json

import pytest
from twisted.internet.testing import MemoryReactorClock

from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.http import make_site
from leifdb.http.routes import ClientApi
from leifdb.http.routing import declared_query
from tests.http.client import Client, assert_json_error, raw_http

EVERY_ENDPOINT = [
    ("GET", "/"), ("GET", "/swagger/"), ("GET", "/swagger/index.html"), ("GET", "/health"),
    ("GET", "/db"), ("GET", "/db/k"), ("PUT", "/db/k?value=v"), ("DELETE", "/db/k"),
    ("POST", "/txn"), ("GET", "/watch/k"), ("HEAD", "/db/k"),
    ("POST", "/lease"), ("GET", "/lease"), ("GET", "/lease/1"), ("DELETE", "/lease/1"),
    ("POST", "/lease/1/keepalive"), ("POST", "/lock/l"), ("GET", "/lock/l"),
    ("POST", "/election/e/campaign"), ("GET", "/election/e"),
    ("POST", "/election/e/proclaim"), ("POST", "/election/e/resign"),
    ("GET", "/election/e/observe"), ("GET", "/cluster/members"), ("POST", "/cluster/members"),
    ("POST", "/cluster/members/n2/promote"), ("DELETE", "/cluster/members/n2"),
    ("POST", "/cluster/leader"), ("GET", "/metrics"), ("GET", "/snapshot"),
    ("GET", "/ui/"), ("GET", "/ui/app.js"),
]


def test_the_list_covers_every_endpoint():
    assert {rule.endpoint for rule in ClientApi.app.url_map.iter_rules()} == {
        "openapi", "swagger_index", "swagger_asset", "health", "list_keys", "get_key",
        "put_key", "delete_key", "txn", "watch", "grant_lease", "list_leases", "get_lease",
        "keepalive", "revoke_lease", "lock", "lock_holder", "campaign", "election_leader",
        "proclaim", "resign", "observe", "list_members", "add_member", "promote_member",
        "remove_member", "transfer_leader", "prometheus_metrics", "snapshot", "ui_index",
        "ui_asset"}
    assert {ClientApi.app.url_map.bind("node").match(path, method)[0]
            for method, path in EVERY_ENDPOINT if method != "HEAD"} == {
        rule.endpoint for rule in ClientApi.app.url_map.iter_rules()}


@pytest.mark.parametrize("method,path", EVERY_ENDPOINT)
def test_an_unknown_query_parameter_is_400_naming_it_on_every_endpoint(method, path):
    client = Client()
    sep = "&" if "?" in path else "?"
    reply = client.request(method, path + sep + "expires=5")
    assert reply.code == 400
    if method != "HEAD":
        assert reply.json() == {"error": "unknown query parameter 'expires'",
                                "parameter": "expires"}
    assert client.service.writes == [] and client.service.barriers == 0
    assert client.service.watchers == [] and client.service.acquired == []
    assert client.service.changes == []


def test_declared_parameters_are_accepted_and_others_refused_by_name():
    client = Client()
    assert declared_query("get_key") >= {"consistency", "wait_revision"}
    assert client.get("/db?prefix=a&start_after=a&limit=5&consistency=stale").code == 200
    assert assert_json_error(client.get("/db?Prefix=a"), 400)["parameter"] == "Prefix"
    assert assert_json_error(client.put("/db/k?value=v&consistency=stale"), 400)[
        "parameter"] == "consistency"
    assert assert_json_error(client.delete("/db/k?value=v"), 400)["parameter"] == "value"
    assert client.service.writes == []


def test_unknown_parameters_on_unknown_paths_are_still_404_and_405():
    client = Client()
    assert_json_error(client.get("/nope?ttl=1"), 404)
    assert_json_error(client.post("/db/k?ttl=1"), 405)


# -- bodies refused before they are read --------------------------------------------------

def site_for(client: Client):
    return make_site(client.resource, reactor=MemoryReactorClock())


def answer(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status, headers, body


def test_declared_content_length_over_the_limit_is_413_at_once():
    client = Client(max_body_bytes=1000)
    # Only the head arrives: the answer comes without waiting for (or reading) the body.
    raw = raw_http(None, b"PUT /db/k HTTP/1.1\r\nHost: node\r\nContent-Length: 5000\r\n"
                         b"Origin: http://ui.example\r\n\r\n", site=site_for(client))
    status, headers, body = answer(raw)
    assert status == "HTTP/1.1 413 Content Too Large"
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["X-LeifDB-Revision"] == "0"
    assert json.loads(body) == {"error": "the request body is larger than 1000 bytes",
                                "limit": 1000}
    assert client.service.writes == []


def test_expect_100_continue_gets_413_instead_of_continue():
    client = Client(max_body_bytes=1000)
    raw = raw_http(None, b"PUT /db/k HTTP/1.1\r\nHost: node\r\nContent-Length: 5000\r\n"
                         b"Expect: 100-continue\r\n\r\n", site=site_for(client))
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in raw
    ok = raw_http(None, b"PUT /db/k HTTP/1.1\r\nHost: node\r\nContent-Length: 10\r\n"
                        b"Expect: 100-continue\r\n\r\n", site=site_for(client))
    assert ok == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_the_rest_of_a_refused_body_is_ignored():
    client = Client(max_body_bytes=10)
    raw = raw_http(None, b"PUT /db/k HTTP/1.1\r\nHost: node\r\nContent-Length: 11\r\n\r\n"
                         b'{"value":"x"}GET /health HTTP/1.1\r\n\r\n', site=site_for(client))
    assert raw.count(b"HTTP/1.1 ") == 1 and raw.startswith(b"HTTP/1.1 413 ")


def test_the_txn_route_has_its_own_body_limit_at_the_channel():
    client = Client(max_body_bytes=1000, max_txn_bytes=5000)
    site = site_for(client)
    head = b"POST %s HTTP/1.1\r\nHost: node\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
    assert raw_http(None, head % (b"/txn", 4000), site=site).startswith(b"HTTP/1.1 100 ")
    assert raw_http(None, head % (b"/txn?consistency=stale", 4000), site=site).startswith(
        b"HTTP/1.1 100 ")
    assert raw_http(None, head % (b"http://node/txn", 4000), site=site).startswith(
        b"HTTP/1.1 100 ")
    refused = raw_http(None, head % (b"/txn", 5001), site=site)
    assert json.loads(answer(refused)[2])["limit"] == 5000
    assert raw_http(None, head % (b"/db/k", 4000), site=site).startswith(b"HTTP/1.1 413 ")


def test_a_chunked_body_over_the_limit_is_413_after_storing_none_of_it():
    client = Client(max_body_bytes=100)
    chunk = b"x" * 150
    raw = raw_http(None, b"PUT /db/k HTTP/1.1\r\nHost: node\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"96\r\n" + chunk + b"\r\n0\r\n\r\n", site=site_for(client))
    status, _, body = answer(raw)
    assert status.startswith("HTTP/1.1 413 ")
    assert client.service.writes == []


def test_without_the_api_site_the_resource_still_refuses_large_bodies():
    client = Client(max_body_bytes=1000, max_txn_bytes=3000, plain_site=True)
    body = b'{"value": "' + b"v" * 2000 + b'"}'
    assert_json_error(client.raw(b"PUT", b"/db/k", body=body), 413)
    assert_json_error(client.raw(b"PUT", b"/db/k", body=body, chunked=True), 413)
    txn = json.dumps({"success": [{"op": "put", "key": "k", "value": "v" * 2000}]}).encode()
    assert client.raw(b"POST", b"/txn", body=txn).code == 200
    reply = client.raw(b"POST", b"/txn", body=txn + b" " * 2000)
    assert assert_json_error(reply, 413)["limit"] == 3000


# -- request line and header block ------------------------------------------------------

def test_a_request_line_over_its_limit_is_414_json():
    client = Client()
    limit = client.limits.max_request_line_bytes
    line = b"GET /db/" + b"k" * limit + b" HTTP/1.1"
    raw = raw_http(None, line + b"\r\nHost: node\r\n\r\n", site=site_for(client))
    status, headers, body = answer(raw)
    assert status == "HTTP/1.1 414 URI Too Long"
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert json.loads(body)["limit"] == limit


def test_a_request_line_without_its_end_is_414_once_past_the_limit():
    client = Client()
    partial = b"GET /db/" + b"k" * (client.limits.max_request_line_bytes * 2 + 10)
    assert raw_http(None, partial, site=site_for(client)).startswith(b"HTTP/1.1 414 ")


def test_a_request_line_at_the_limit_is_served():
    client = Client(max_key_bytes=20000)
    limit = client.limits.max_request_line_bytes
    target = b"/db/" + b"k" * (limit - len(b"GET  HTTP/1.1") - 4)
    line = b"GET " + target + b" HTTP/1.1"
    assert len(line) == limit
    raw = raw_http(None, line + b"\r\nHost: node\r\n\r\n", site=site_for(client))
    assert raw.startswith(b"HTTP/1.1 404 ")  # served: the key does not exist


def test_a_header_block_over_its_limit_is_431_json():
    client = Client()
    limit = client.limits.max_header_bytes
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 1000) for i in range(limit // 1000 + 1))
    raw = raw_http(None, b"GET /health HTTP/1.1\r\nHost: node\r\n" + headers + b"\r\n",
                   site=site_for(client))
    status, headers_seen, body = answer(raw)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert json.loads(body) == {
        "error": f"the request's header fields are larger than {limit} bytes", "limit": limit}
    assert headers_seen["Connection"] == "close"


def test_one_header_line_longer_than_any_limit_is_431():
    client = Client()
    huge = b"X-Huge: " + b"v" * (client.limits.max_header_bytes * 2)
    raw = raw_http(None, b"GET /health HTTP/1.1\r\nHost: node\r\n" + huge, site=site_for(client))
    assert raw.startswith(b"HTTP/1.1 431 ")


def test_too_many_header_fields_is_431():
    client = Client(max_headers=10)
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(11))
    raw = raw_http(None, b"GET /health HTTP/1.1\r\n" + headers + b"\r\n", site=site_for(client))
    assert raw.startswith(b"HTTP/1.1 431 ")
    assert json.loads(answer(raw)[2])["limit"] == 10
    fine = raw_http(None, b"GET /health HTTP/1.1\r\n" + headers[: -len(b"X-H10: v\r\n")]
                    + b"\r\n", site=site_for(client))
    assert fine.startswith(b"HTTP/1.1 200 ")


def test_limits_reset_between_pipelined_requests():
    client = Client()
    padding = b"X-Pad: " + b"v" * (client.limits.max_header_bytes - 100) + b"\r\n"
    one = b"GET /health HTTP/1.1\r\nHost: node\r\n" + padding + b"\r\n"
    raw = raw_http(None, one + one, site=site_for(client))
    assert raw.count(b"HTTP/1.1 200 OK") == 2


def test_over_the_in_memory_client_too():
    client = Client()
    reply = client.get("/db/" + "k" * 20000)
    assert_json_error(reply, 414)
    reply = client.get("/health", headers={"X-Big": "v" * 20000})
    assert_json_error(reply, 431)


def test_other_malformed_requests_keep_twisteds_bare_400():
    raw = raw_http(None, b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
                   site=site_for(Client()))
    assert raw == b"HTTP/1.1 400 Bad Request\r\n\r\n"


# -- X-LeifDB-Revision ------------------------------------------------------------------------

def _revision(reply) -> str | None:
    return reply.header("X-LeifDB-Revision")


def test_every_key_api_answer_carries_the_revision():
    client = Client()
    client.service.set("k", "v")
    client.service.set("j", "w")
    answers = {
        "get 200": client.get("/db/k"), "get 404": client.get("/db/nope"),
        "get 400": client.get("/db/k?consistency=x"), "get 413": Client(
            max_key_bytes=1).get("/db/kk"),
        "list 200": client.get("/db?prefix=k"), "list 400": client.get("/db?limit=0"),
        "put 200": client.put("/db/x?value=1"), "put 412": client.put("/db/k?value=v&prev=no"),
        "delete 200": client.delete("/db/x"), "head": client.request("HEAD", "/db/k"),
        "405": client.post("/db/k"), "txn 200": client.post("/txn", json={}),
        "txn 400": client.raw(b"POST", b"/txn", body=b"{"),
        "bad encoding": client.raw(b"GET", b"/db/%ff"),
        "unknown parameter": client.get("/db/k?ttl=1"),
        "long poll": client.get("/db/k?wait_revision=1"),
    }
    for name, reply in answers.items():
        assert _revision(reply) is not None, name
    assert _revision(answers["get 200"]) == "2"
    assert _revision(answers["put 200"]) == "3"
    assert _revision(answers["put 412"]) == "4"  # a failed condition is a log entry too
    assert _revision(answers["delete 200"]) == "5"
    assert _revision(answers["txn 200"]) == "5"
    assert _revision(client.stream("/watch/k")) == "5"


def test_lease_lock_and_election_answers_carry_it_too():
    client = Client()
    lease = client.service.make_lease()
    answers = {
        "grant": client.post("/lease", json={"ttl": 30}), "list": client.get("/lease"),
        "lease": client.get(f"/lease/{lease}"), "lease 400": client.get("/lease/x"),
        "keepalive": client.post(f"/lease/{lease}/keepalive"),
        "lock": client.post("/lock/l", json={"lease": lease}), "holder": client.get("/lock/l"),
        "lock 400": client.post("/lock/l"),
        "campaign": client.post("/election/e/campaign", json={"lease": lease}),
        "leader": client.get("/election/e"),
        "proclaim": client.post("/election/e/proclaim", json={"token": 5, "value": "v"}),
        "resign": client.post("/election/e/resign", json={"token": 5}),
        "resign 412": client.post("/election/e/resign", json={"token": 5}),
        "revoke": client.delete(f"/lease/{lease}"), "405": client.put("/lease"),
        "observe": client.stream("/election/e/observe"),
    }
    for name, reply in answers.items():
        assert _revision(reply) is not None, name
    assert _revision(answers["grant"]) == "2"
    assert _revision(answers["revoke"]) == "8"


def test_failures_from_the_service_carry_it_too():
    client = Client()
    client.service.set("k", "v")
    client.service.write_error = NotLeaderError("10.0.0.2:8081")
    assert _revision(client.put("/db/k?value=1")) == "1"
    client.service.write_error = OutcomeUnknown()
    assert _revision(client.delete("/db/k")) == "1"
    client.service.read_error = Unavailable()
    assert _revision(client.get("/db")) == "1"
    client.service.write_error = KeyError("bug")
    assert _revision(client.put("/db/k?value=1")) == "1"


def test_the_revision_is_the_one_when_the_answer_is_made():
    client = Client()
    client.service.hold = True
    pending = client.start("PUT", "/db/k?value=v")
    client.service.hold = False
    client.service.set("other", "x")
    client.service.pending.pop().callback(None)
    assert _revision(client.finish(pending)) == "2"


def test_other_routes_do_not_carry_it():
    client = Client()
    for path in ["/health", "/", "/swagger/", "/nope"]:
        assert _revision(client.get(path)) is None, path


def test_it_is_exposed_to_browsers():
    reply = Client().get("/db/k", headers={"Origin": "http://ui.example"})
    exposed = [h.strip() for h in reply.header("Access-Control-Expose-Headers").split(",")]
    assert "X-LeifDB-Revision" in exposed
