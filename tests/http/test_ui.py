"""The web UI's routes: its files are served from the package with the right types and
headers, ``/ui`` redirects to ``/ui/``, unknown names are JSON 404s, and the page, script
and style sheet refer only to each other and to elements that exist (the browser test in
``tests/ui`` drives the page itself)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leifdb.http.openapi import openapi_document
from leifdb.http.ui import CONTENT_SECURITY_POLICY, INDEX_NAME, WebUi
from tests.http.client import Client, assert_json_error, raw_http

STATIC = Path(__file__).resolve().parents[2] / "leifdb" / "http" / "static" / "ui"
FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}


@pytest.mark.parametrize("path,kind", [("/ui/", "text/html")] + [
    ("/ui/" + name, kind) for name, kind in FILES.items()])
def test_files_are_served_with_their_content_type(path, kind):
    reply = Client().get(path)
    assert reply.code == 200
    assert reply.header("Content-Type") == kind + "; charset=utf-8"
    name = path.rsplit("/", 1)[1] or INDEX_NAME
    assert reply.body == (STATIC / name).read_bytes()
    assert reply.header("X-Content-Type-Options") == "nosniff"
    assert reply.header("Cache-Control") == "no-cache"
    assert reply.header("Content-Security-Policy") == CONTENT_SECURITY_POLICY.decode()


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_the_length_is_declared_and_head_gets_the_headers_only(method):
    size = len((STATIC / "app.js").read_bytes())
    answer = raw_http(Client().resource, method + b" /ui/app.js HTTP/1.1\r\nHost: n\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nContent-Length: %d\r\n" % size in head + b"\r\n"
    assert len(body) == (size if method == b"GET" else 0)


def test_ui_without_slash_redirects():
    reply = Client().get("/ui")
    assert reply.code == 308
    assert reply.header("Location") == "/ui/"


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/..", "/ui/../setup.py", "/ui/static",
                                  "/ui/app.js/x", "/ui/APP.JS", "/ui/ui.py"])
def test_unknown_files_are_404_json(path):
    assert_json_error(Client().get(path), 404)


def test_query_parameters_are_refused():
    assert assert_json_error(Client().get("/ui/?key=a"), 400)["parameter"] == "key"


def test_other_methods_are_405():
    reply = Client().put("/ui/app.js")
    assert_json_error(reply, 405)
    assert reply.header("Allow") == "GET, HEAD, OPTIONS"


def test_the_package_ships_exactly_the_three_files():
    assert WebUi().names() == set(FILES)
    assert {p.name for p in STATIC.iterdir()} == set(FILES)


def test_a_folder_without_the_page_is_refused_at_start(tmp_path):
    (tmp_path / "app.js").write_text("")
    with pytest.raises(FileNotFoundError, match="index.html"):
        WebUi(tmp_path)
    (tmp_path / "index.html").write_text("<!DOCTYPE html>")
    (tmp_path / "notes.txt").write_text("not served")
    assert WebUi(tmp_path).names() == {"index.html", "app.js"}


def test_nothing_is_loaded_from_elsewhere():
    page = (STATIC / "index.html").read_text()
    referenced = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert referenced == {"app.js", "app.css", "/swagger/", "data:,"}  # data:, no favicon
    for name in FILES:
        text = (STATIC / name).read_text()
        assert "http://" not in text and "https://" not in text, name
        assert "@import" not in text and "url(" not in text, name


def test_every_element_the_script_uses_is_on_the_page():
    page = (STATIC / "index.html").read_text()
    script = (STATIC / "app.js").read_text()
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    used = set(re.findall(r'\$\("([^"]+)"\)', script))
    assert len(used) > 20
    assert used <= ids, used - ids


def test_the_api_document_links_and_documents_the_ui():
    document = openapi_document(version="1")
    assert "[/ui/](/ui/)" in document["info"]["description"]
    assert document["paths"]["/ui/"]["get"]["produces"] == ["text/html"]
    assert set(document["paths"]["/ui/{file}"]["get"]["responses"]) >= {"200", "404"}
