"""Reading, writing, deleting and listing keys: the happy paths and conditional writes."""

from __future__ import annotations

import string
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.kv.commands import Condition, Delete, Put
from leifdb.kv.store import KVStore
from tests.http.client import Client, assert_json_error


def test_put_with_query_value_then_get_returns_value_revision_and_etag():
    client = Client()
    put = client.put("/db/greeting?value=hello")
    assert put.code == 200
    assert put.json() == {"status": "Ok", "revision": 1, "lease": 0}
    assert put.header("ETag") == '"1"'
    assert client.service.writes == [Put("greeting", "hello")]

    got = client.get("/db/greeting")
    assert got.code == 200
    assert got.json() == {"key": "greeting", "value": "hello", "revision": 1,
                          "create_revision": 1, "lease": 0}
    assert got.header("ETag") == '"1"'
    assert got.header("Content-Type") == "application/json"


def test_put_with_json_body():
    client = Client()
    reply = client.put("/db/k", json={"value": "from body"})
    assert reply.code == 200
    assert client.service.writes == [Put("k", "from body")]


def test_put_body_without_content_type_is_json_too():
    client = Client()
    reply = client.raw(b"PUT", b"/db/k", body=b'{"value": "v"}')
    assert reply.code == 200
    assert client.service.store.get("k").value == "v"


def test_empty_value_is_a_value():
    client = Client()
    assert client.put("/db/k?value=").code == 200
    assert client.get("/db/k").json()["value"] == ""


def test_query_value_is_form_encoded_plus_is_space():
    client = Client()
    client.raw(b"PUT", b"/db/k?value=a+b%2Bc%20d")
    assert client.service.store.get("k").value == "a b+c d"


def test_unicode_key_and_value_round_trip():
    client = Client()
    reply = client.put("/db/" + quote("å/日本"), json={"value": "ünïcødé ✓"})
    assert reply.code == 200
    got = client.get("/db/" + quote("å/日本"))
    assert got.json()["key"] == "å/日本"
    assert got.json()["value"] == "ünïcødé ✓"


def test_get_absent_key_is_404_json():
    body = assert_json_error(Client().get("/db/nope"), 404)
    assert body["key"] == "nope"


def test_keys_may_contain_slashes_and_percent_2f_is_the_same_slash():
    client = Client()
    client.put("/db/config/db/url?value=postgres")
    assert client.get("/db/config%2Fdb%2Furl").json()["value"] == "postgres"
    assert client.service.store.get("config/db/url").value == "postgres"


def test_raw_path_keys_keep_empty_segments_and_trailing_slashes():
    client = Client()
    for target, key in [(b"/db/a//b", "a//b"), (b"/db/a/", "a/"), (b"/db//x", "/x"),
                        (b"/db/%2Fy", "/y"), (b"/db/%25", "%"), (b"/db/a%3Fb", "a?b")]:
        assert client.raw(b"PUT", target + b"?value=1").code == 200, target
        assert client.service.writes[-1].key == key


def test_delete_then_get_is_404_and_delete_absent_is_ok():
    client = Client()
    client.put("/db/k?value=v")
    reply = client.delete("/db/k")
    assert reply.code == 200
    assert reply.json() == {"status": "Ok", "revision": 2}
    assert client.get("/db/k").code == 404
    again = client.delete("/db/k")
    assert again.code == 200 and again.json()["status"] == "Ok"


def test_health_reports_node_status_and_version():
    client = Client(version="1.2.3")
    client.put("/db/k?value=v")
    reply = client.get("/health")
    assert reply.code == 200
    assert reply.json() == {
        "status": "OK", "version": "1.2.3", "node": "127.0.0.1:16990", "role": "leader",
        "term": 3, "leader": "127.0.0.1:16990", "leader_http": "127.0.0.1:8080",
        "commit_index": 1, "applied_index": 1, "cluster_id": "c-test", "healthy": True,
        "reason": None, "leader_contact_seconds": 0.0,
    }


def test_head_is_served_like_get_without_body():
    client = Client()
    client.put("/db/k?value=v")
    reply = client.request("HEAD", "/db/k")
    assert reply.code == 200 and reply.body == b""
    assert reply.header("ETag") == '"1"'


# -- conditional writes ---------------------------------------------------------------

def test_prev_in_query_applies_when_value_matches():
    client = Client()
    client.put("/db/k?value=old")
    reply = client.put("/db/k?value=new&prev=old")
    assert reply.code == 200
    assert client.service.writes[-1] == Put("k", "new", Condition(prev_value="old"))


def test_prev_in_body_failing_is_412_with_current_value_and_revision():
    client = Client()
    client.put("/db/k?value=current")
    reply = client.put("/db/k", json={"value": "new", "prev": "other"})
    body = assert_json_error(reply, 412)
    assert body["key"] == "k"
    assert body["value"] == "current" and body["revision"] == 1
    assert reply.header("ETag") == '"1"'
    assert client.service.store.get("k").value == "current"


def test_failed_condition_on_absent_key_reports_nulls():
    client = Client()
    body = assert_json_error(client.put("/db/k?value=v&prev=x"), 412)
    assert body["value"] is None and body["revision"] is None


def test_if_match_revision():
    client = Client()
    client.put("/db/k?value=a")
    stale = client.put("/db/k?value=b", headers={"If-Match": '"7"'})
    assert_json_error(stale, 412)
    fresh = client.put("/db/k?value=b", headers={"If-Match": '"1"'})
    assert fresh.code == 200
    assert client.service.writes[-1].condition == Condition(prev_revision=1)


def test_if_none_match_star_creates_only_if_absent():
    client = Client()
    first = client.put("/db/k?value=a", headers={"If-None-Match": "*"})
    assert first.code == 200
    second = client.put("/db/k?value=b", headers={"If-None-Match": "*"})
    assert assert_json_error(second, 412)["value"] == "a"


def test_conditional_delete_with_prev_and_if_match():
    client = Client()
    client.put("/db/k?value=a")
    assert_json_error(client.delete("/db/k?prev=zzz"), 412)
    assert client.delete("/db/k", json={"prev": "a"}).code == 200
    assert client.service.writes[-1] == Delete("k", Condition(prev_value="a"))
    client.put("/db/k?value=b")
    assert client.delete("/db/k", headers={"If-Match": '"4"'}).code == 200


def test_get_ignores_conditional_headers():
    client = Client()
    client.put("/db/k?value=a")
    assert client.get("/db/k", headers={"If-None-Match": '"1"', "If-Match": "x"}).code == 200


# -- ranges -----------------------------------------------------------------------------

def _fill(client: Client, keys: list[str]) -> None:
    for key in keys:
        client.service.set(key, "v-" + key)


def test_range_lists_keys_under_prefix_in_order_with_values_and_revisions():
    client = Client()
    _fill(client, ["app/b", "app/a", "apple", "b", "app/c"])
    reply = client.get("/db?prefix=app/")
    assert reply.code == 200
    assert reply.json() == {
        "prefix": "app/",
        "items": [
            {"key": "app/a", "value": "v-app/a", "revision": 2, "create_revision": 2,
             "lease": 0},
            {"key": "app/b", "value": "v-app/b", "revision": 1, "create_revision": 1,
             "lease": 0},
            {"key": "app/c", "value": "v-app/c", "revision": 5, "create_revision": 5,
             "lease": 0},
        ],
        "more": False,
        "next_start_after": None,
    }


def test_range_paginates_with_limit_and_start_after():
    client = Client()
    keys = [f"k{i:02}" for i in range(7)]
    _fill(client, keys)
    seen, start_after, pages = [], None, 0
    while True:
        query = "limit=3" + (f"&start_after={start_after}" if start_after else "")
        page = client.get("/db?" + query).json()
        pages += 1
        seen += [item["key"] for item in page["items"]]
        if not page["more"]:
            assert page["next_start_after"] is None
            break
        start_after = page["next_start_after"]
        assert start_after == seen[-1]
    assert seen == keys and pages == 3


def test_range_default_limit_is_100():
    client = Client()
    _fill(client, [f"k{i:03}" for i in range(150)])
    page = client.get("/db").json()
    assert len(page["items"]) == 100 and page["more"] is True


def test_range_page_stops_early_when_too_many_bytes():
    client = Client(max_value_bytes=3 << 20)
    for i in range(3):
        client.service.set(f"big{i}", "x" * (3 << 20))
    page = client.get("/db?prefix=big").json()
    assert [item["key"] for item in page["items"]] == ["big0"]
    assert page["more"] is True and page["next_start_after"] == "big0"


def test_range_of_nothing_is_empty():
    page = Client().get("/db?prefix=none").json()
    assert page == {"prefix": "none", "items": [], "more": False, "next_start_after": None}


@settings(derandomize=True, max_examples=60, deadline=None)
@given(key=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40),
       value=st.text(st.characters(blacklist_categories=["Cs"]), max_size=40))
def test_any_key_and_value_round_trip_through_percent_encoding(key, value):
    client = Client()
    path = "/db/" + quote(key, safe="")
    assert client.put(path, json={"value": value}).code == 200
    assert client.get(path).json() == {"key": key, "value": value, "revision": 1,
                                       "create_revision": 1, "lease": 0}
    listed = client.get("/db?prefix=" + quote(key, safe="")).json()["items"]
    assert listed[0]["key"] == key


@settings(derandomize=True, max_examples=100, deadline=None)
@given(target=st.text(string.ascii_letters + string.digits + "%/?&=+;:@!$'()*,-._~[]", max_size=30),
       method=st.sampled_from([b"GET", b"PUT", b"DELETE", b"POST", b"OPTIONS", b"PATCH"]))
def test_arbitrary_targets_get_json_or_empty_answers_never_500(target, method):
    client = Client()
    reply = client.raw(method, b"/db/" + target.encode())
    assert reply.code in {200, 400, 404, 405, 412, 413}, (reply.code, reply.body)
    if reply.body:
        assert reply.header("Content-Type") == "application/json"
        reply.json()


def test_reads_and_ranges_come_from_the_services_store():
    client = Client()
    store = KVStore()
    for index, key in enumerate(["a/2", "a/1", "b"], start=1):
        store.apply(index, Put(key, key.upper()))
    client.service.store = store
    a1 = {"key": "a/1", "value": "A/1", "revision": 2, "create_revision": 2, "lease": 0}
    assert client.get("/db/a/1").json() == a1
    page = client.get("/db?prefix=a/&limit=1").json()
    assert page["items"] == [a1]
    assert page["more"] is True
    rest = client.get("/db?prefix=a/&start_after=a/1").json()
    assert [item["key"] for item in rest["items"]] == ["a/2"] and rest["more"] is False
