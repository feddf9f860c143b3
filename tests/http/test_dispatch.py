"""``ApiRoot`` dispatches the key routes without Werkzeug (``key_endpoint``): it must pick
the endpoint and key the url map would, for every path and method."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.http.resource import key_endpoint
from leifdb.http.routing import api, match_endpoint
from tests.http.client import Client

METHODS = [b"GET", b"PUT", b"DELETE", b"POST", b"HEAD", b"PATCH"]
PATHS = st.one_of(
    st.builds(lambda rest: "/db/" + rest, st.text()),
    st.sampled_from(["/db", "/db/", "/db//", "/dbx/a", "/watch/a", "/txn", "/", "/db/a/b/"]),
    st.text().map(lambda rest: "/" + rest),
)


@settings(derandomize=True, max_examples=400)
@given(path=PATHS, method=st.sampled_from(METHODS))
def test_key_endpoint_agrees_with_the_url_map(path: str, method: bytes) -> None:
    fast = key_endpoint(path, method)
    if fast is None:
        # Not dispatched directly: Klein routes it, and it is no key route's GET/PUT/DELETE.
        assert method not in (b"GET", b"PUT", b"DELETE") or match_endpoint(path, method) not in (
            "get_key", "put_key", "delete_key")
        return
    assert match_endpoint(path, method) == fast
    _, args = api.url_map.bind("localhost", path_info=path).match(method=method.decode())
    assert args == {"key": path[len("/db/"):]}


def test_key_requests_never_reach_werkzeug(monkeypatch) -> None:
    """The point of the direct dispatch: a key request binds no url map at all."""
    client = Client()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the url map was bound for a key request")

    monkeypatch.setattr(api.url_map, "bind", refuse)
    assert client.put("/db/a/b", params={"value": "v"}).code == 200
    reply = client.get("/db/a/b")
    assert reply.code == 200 and reply.json()["value"] == "v"
    assert client.delete("/db/a/b").code == 200
    assert client.get("/db/a/b").code == 404
