"""The Swagger 2.0 document: valid, served at ``/``, and in agreement with the routes; the
Swagger UI is served from the package, pointed at ``/``."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

from leifdb.http import HttpLimits, openapi_document
from leifdb.http.openapi import swagger_path
from leifdb.http.routes import ClientApi
from leifdb.http.routing import declared_query
from leifdb.http.txn import parse_txn
from leifdb.service.api import ServiceLimits
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
    limits = HttpLimits.derive(ServiceLimits(max_key_bytes=77))
    assert served == json.loads(json.dumps(openapi_document(version="2.3.4", limits=limits)))
    validate(served, cls=OpenAPIV2SpecValidator)
    assert "at most 77 bytes" in served["info"]["description"]


def test_every_route_is_documented_and_every_documented_operation_is_routed():
    document = openapi_document(version="1")
    assert routed_operations() == documented_operations(document)
    assert {p for p, _ in routed_operations()} == {
        "/", "/health", "/db", "/db/{key}", "/swagger/", "/swagger/{file}", "/txn",
        "/watch/{key}", "/lease", "/lease/{lease_id}", "/lease/{lease_id}/keepalive",
        "/lock/{name}", "/election/{name}", "/election/{name}/campaign",
        "/election/{name}/proclaim", "/election/{name}/resign", "/election/{name}/observe",
        "/cluster/members", "/cluster/members/{member_id}",
        "/cluster/members/{member_id}/promote", "/cluster/leader", "/metrics", "/snapshot",
        "/ui/", "/ui/{file}"}


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


# -- parameters, examples and the new endpoints ------------------------------------------

def _documented_query(document: dict, operation: dict) -> set[str]:
    names = set()
    for parameter in operation.get("parameters", []):
        if "$ref" in parameter:
            parameter = document["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        if parameter["in"] == "query":
            names.add(parameter["name"])
    return names


def test_documented_query_parameters_are_exactly_the_accepted_ones():
    document = openapi_document(version="1")
    for rule in ClientApi.app.url_map.iter_rules():
        item = document["paths"][swagger_path(rule.rule)]
        for method in rule.methods - UNDOCUMENTED:
            documented = _documented_query(document, item[method.lower()])
            assert documented == declared_query(rule.endpoint), (rule.rule, method)


def test_body_examples_are_what_try_it_out_should_send():
    definitions = openapi_document(version="1")["definitions"]
    assert definitions["PutBody"]["example"] == {"value": "hello"}
    assert definitions["DeleteBody"]["example"] == {}
    assert parse_txn(json.dumps(definitions["TxnBody"]["example"]).encode(),
                     ServiceLimits()).success


def _example(document: dict, parameter: dict):
    if "$ref" in parameter:
        parameter = document["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
    if parameter["in"] == "body":
        schema = parameter["schema"]
        name = schema["$ref"].rsplit("/", 1)[1]
        return parameter, document["definitions"][name].get("example")
    return parameter, parameter.get("x-example", parameter.get("default"))


def _try_it_out(client: Client, document: dict, path: str, method: str) -> int:
    """Send what Swagger UI sends with its defaults: path examples, parameters with an
    example or a default, the body schema's example."""
    item = document["paths"][path]
    operation = item[method]
    query, headers, body = {}, {}, None
    for parameter in item.get("parameters", []):
        path = path.replace(f"{{{parameter['name']}}}", str(parameter["x-example"]))
    for raw in operation.get("parameters", []):
        parameter, value = _example(document, raw)
        if value is None:
            continue
        if isinstance(value, bool):
            value = json.dumps(value)  # as Swagger UI sends a boolean: true / false
        if parameter["in"] == "query":
            query[parameter["name"]] = str(value)
        elif parameter["in"] == "header":
            headers[parameter["name"]] = str(value)
        elif parameter["in"] == "body":
            body = json.dumps(value).encode()
    target = path + ("?" + urlencode(query) if query else "")
    reply = client.raw(method.upper().encode(), target.encode(),
                       {k.encode(): [v.encode()] for k, v in headers.items()}, body)
    return reply.code


def test_try_it_out_with_the_defaults_succeeds_everywhere():
    """On a fresh node, in this order: the examples' lease id and tokens are the ones
    the grant, the lock and the campaign before them produce."""
    client = Client()
    document = client.get("/").json()
    order = [("/lease", "post"), ("/lease", "get"), ("/lease/{lease_id}", "get"),
             ("/lock/{name}", "post"), ("/lock/{name}", "get"),
             ("/election/{name}/campaign", "post"), ("/election/{name}", "get"),
             ("/election/{name}/proclaim", "post"), ("/election/{name}/resign", "post"),
             ("/lease/{lease_id}/keepalive", "post"),
             ("/db/{key}", "put"), ("/db/{key}", "get"), ("/db", "get"), ("/txn", "post"),
             ("/db/{key}", "delete"), ("/lease/{lease_id}", "delete"), ("/health", "get"),
             ("/", "get"), ("/swagger/", "get"), ("/swagger/{file}", "get"),
             ("/cluster/members", "post"), ("/cluster/members/{member_id}/promote", "post"),
             ("/cluster/members", "get"), ("/cluster/members/{member_id}", "delete"),
             ("/cluster/leader", "post"), ("/metrics", "get"), ("/snapshot", "get"),
             ("/ui/", "get"), ("/ui/{file}", "get")]
    streams = {("/watch/{key}", "get"), ("/election/{name}/observe", "get")}
    created = {("/cluster/members", "post")}
    assert set(order) | streams == documented_operations(document)
    for path, method in order:
        expected = 201 if (path, method) in created else 200
        assert _try_it_out(client, document, path, method) == expected, (path, method)
    assert client.service.store.get("greeting") is None  # put, then deleted
    assert client.service.store.leases() == []  # granted, then revoked
    assert client.service.store.range("_")[0] == []  # the lock went with the lease
    assert [c[0] for c in client.service.changes] == ["add", "promote", "remove", "transfer"]
    assert client.service.changes[0][1] == client.service.changes[1][1]  # the same member


def test_the_watch_is_documented_as_an_event_stream():
    operation = openapi_document(version="1")["paths"]["/watch/{key}"]["get"]
    assert operation["produces"][0] == "text/event-stream"
    assert {"200", "400", "410", "503"} <= set(operation["responses"])
    headers = {p["name"] for p in operation["parameters"] if p.get("in") == "header"}
    assert headers == {"Last-Event-ID"}


def test_410_and_the_revision_header_are_documented_on_the_key_api_only():
    paths = openapi_document(version="1")["paths"]
    assert "410" in paths["/db/{key}"]["get"]["responses"]
    for path, item in paths.items():
        key_api = path.startswith(("/db", "/txn", "/watch/", "/lease", "/lock/",
                                   "/election/"))
        for method, operation in item.items():
            if method == "parameters":
                continue
            for code, response in operation["responses"].items():
                has = "X-LeifDB-Revision" in response.get("headers", {})
                assert has == key_api, (path, method, code)


def test_every_operation_documents_400_for_unknown_parameters():
    for path, item in openapi_document(version="1")["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                assert "400" in operation["responses"], (path, method)


LEASE_LOCK_ELECTION_CODES = {
    ("/lease", "post"): {"200", "307", "400", "413", "503", "504"},
    ("/lease", "get"): {"200", "307", "400", "503"},
    ("/lease/{lease_id}", "get"): {"200", "307", "400", "404", "503"},
    ("/lease/{lease_id}", "delete"): {"200", "307", "400", "404", "503", "504"},
    ("/lease/{lease_id}/keepalive", "post"): {"200", "307", "400", "404", "503", "504"},
    ("/lock/{name}", "post"): {"200", "307", "400", "404", "413", "423", "503", "504"},
    ("/lock/{name}", "get"): {"200", "307", "400", "404", "503"},
    ("/election/{name}/campaign", "post"): {"200", "307", "400", "404", "413", "423", "503",
                                            "504"},
    ("/election/{name}", "get"): {"200", "307", "400", "404", "503"},
    ("/election/{name}/proclaim", "post"): {"200", "307", "400", "412", "503", "504"},
    ("/election/{name}/resign", "post"): {"200", "307", "400", "412", "503", "504"},
    ("/election/{name}/observe", "get"): {"200", "307", "400", "410", "503"},
    ("/db/{key}", "put"): {"404", "412"},
    ("/txn", "post"): {"404"},
}


def test_leases_locks_and_elections_document_their_answers():
    paths = openapi_document(version="1")["paths"]
    for (path, method), codes in LEASE_LOCK_ELECTION_CODES.items():
        assert codes <= set(paths[path][method]["responses"]), (path, method)
    assert paths["/lock/{name}"]["post"]["responses"]["423"]["schema"] == {
        "$ref": "#/definitions/LockTimeout"}
    observe = paths["/election/{name}/observe"]["get"]
    assert observe["produces"][0] == "text/event-stream"
    put = {p.get("name") or p.get("$ref") for p in paths["/db/{key}"]["put"]["parameters"]}
    assert {"#/parameters/LeaseQuery", "#/parameters/TtlQuery",
            "#/parameters/FenceQuery"} <= put


def test_items_and_compares_document_the_lease_fields():
    definitions = openapi_document(version="1")["definitions"]
    assert {"create_revision", "lease"} <= set(definitions["Item"]["required"])
    assert {"create_revision", "lease"} <= set(
        definitions["Compare"]["properties"]["target"]["enum"])
    assert "lease" in definitions["TxnOp"]["properties"]
    assert set(definitions["PutBody"]["properties"]) == {"value", "prev", "lease", "ttl"}


def test_name_and_lease_path_parameters_state_their_limits():
    document = openapi_document(version="1", limits=HttpLimits.derive(
        ServiceLimits(max_name_bytes=64)))
    name = next(p for p in document["paths"]["/lock/{name}"]["parameters"]
                if p["name"] == "name")
    assert "at most 64 bytes" in name["description"]
    lease = document["paths"]["/lease/{lease_id}"]["parameters"][0]
    assert lease["type"] == "integer" and lease["minimum"] == 1
