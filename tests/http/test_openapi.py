"""The Swagger 2.0 document: valid, served at ``/``, and in agreement with the routes; the
Swagger UI is served from the package, pointed at ``/``."""

from __future__ import annotations

import json

from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

from leifdb.http import openapi_document
from leifdb.http.openapi import swagger_path
from leifdb.http.routes import ClientApi
from tests.http.client import Client

UNDOCUMENTED = {"HEAD", "OPTIONS"}


def routed_operations() -> set[tuple[str, str]]:
    return {
        (swagger_path(rule.rule), method.lower())
        for rule in ClientApi.app.url_map.iter_rules()
        for method in rule.methods
        if method not in UNDOCUMENTED
    }


def documented_operations(document: dict) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }


def test_document_is_valid_swagger_2():
    document = openapi_document(version="1.0.0")
    validate(document, cls=OpenAPIV2SpecValidator)
    assert document["swagger"] == "2.0"
    assert document["info"]["title"] == "LeifDb Client API"
    assert document["info"]["version"] == "1.0.0"


def test_get_root_serves_the_document_for_the_nodes_version_and_limits():
    reply = Client(version="2.3.4", max_key_bytes=77).get("/")
    assert reply.code == 200
    assert reply.header("Content-Type") == "application/json"
    served = reply.json()
    assert served == json.loads(json.dumps(
        openapi_document(version="2.3.4", max_key_bytes=77)))
    validate(served, cls=OpenAPIV2SpecValidator)
    assert "at most 77 bytes" in served["info"]["description"]


def test_every_route_is_documented_and_every_documented_operation_is_routed():
    document = openapi_document(version="1")
    assert routed_operations() == documented_operations(document)
    assert {p for p, _ in routed_operations()} == {
        "/", "/health", "/db", "/db/{key}", "/swagger/", "/swagger/{name}"}


def test_every_endpoint_has_its_own_handler():
    rules = list(ClientApi.app.url_map.iter_rules())
    endpoints = [rule.endpoint for rule in rules]
    assert len(set(endpoints)) == len(endpoints)
    assert set(endpoints) == set(ClientApi.app.endpoints)


def test_path_parameters_are_declared():
    document = openapi_document(version="1")
    for path, item in document["paths"].items():
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert declared == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_key_operations_document_their_error_responses():
    paths = openapi_document(version="1")["paths"]
    codes = {method: set(op["responses"]) for method, op in paths["/db/{key}"].items()
             if method != "parameters"}
    assert codes["get"] >= {"200", "307", "400", "404", "413", "500", "503"}
    assert codes["put"] >= {"200", "307", "400", "412", "413", "500", "503", "504"}
    assert codes["delete"] >= {"200", "307", "400", "412", "413", "500", "503", "504"}
    assert set(paths["/db"]["get"]["responses"]) >= {"200", "307", "400", "413", "503"}
    put = paths["/db/{key}"]["put"]
    assert put["responses"]["200"]["headers"]["ETag"]
    names = {p.get("name") or p.get("$ref") for p in put["parameters"]}
    assert {"value", "prev", "body", "#/parameters/IfMatch",
            "#/parameters/IfNoneMatch"} <= names


def test_every_referenced_component_exists():
    document = openapi_document(version="1")
    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    assert len(refs) > 10
    for ref in refs:
        _, kind, name = ref.split("/")
        assert name in document[kind], ref


def test_swagger_ui_is_served_from_the_package_and_loads_the_root_document():
    client = Client()
    for path in ["/swagger/", "/swagger/index.html"]:
        page = client.get(path)
        assert page.code == 200
        assert page.header("Content-Type").startswith("text/html")
        assert b"swagger-ui-bundle.js" in page.body
        assert b"http" not in page.body.replace(b"http-equiv", b"")  # no CDN
    init = client.get("/swagger/swagger-initializer.js")
    assert init.code == 200
    assert b'url: "/"' in init.body
    assert b"validatorUrl: null" in init.body
    for asset, kind in [("swagger-ui-bundle.js", "text/javascript"),
                        ("swagger-ui-standalone-preset.js", "text/javascript"),
                        ("swagger-ui.css", "text/css"), ("favicon-32x32.png", "image/png")]:
        reply = client.get("/swagger/" + asset)
        assert reply.code == 200, asset
        assert reply.header("Content-Type").startswith(kind)
        assert len(reply.body) > 100
