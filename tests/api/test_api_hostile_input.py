"""A hostile-input corpus for the JSON APIs, sent to every write operation of the schema: nesting
depth, size, NUL characters, lone surrogates, huge numbers, duplicate keys. Every answer is a
refusal in the error body (400, 403, 404, 409, 413, 415), never a 5xx; what the corpus broke before
(issue 15): RecursionError on deep JSON."""

from __future__ import annotations

import json

import pytest
from drf_spectacular.generators import SchemaGenerator

from personas import assert_error

METHODS = ("post", "put", "patch")


def write_operations():
    """(path, method, property names of its JSON body) for every write operation under /api/."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if not operation or not path.startswith("/api/"):
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "").rsplit("/", 1)[-1]
            yield path, method, sorted(components.get(ref, body).get("properties", {}))


def hostile_bodies(fields: list[str]) -> dict[str, str]:
    """Raw JSON texts by name; each names the operation's own fields, so a body gets past "unknown
    field" to the field's own parsing."""
    def every(value) -> str:
        return json.dumps({name: value for name in fields or ["x"]})

    name = (fields or ["x"])[0]
    return {
        "nested 1000 deep": '{"%s": %s}' % (name, "[" * 1000 + "]" * 1000),
        "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
        "NUL in values": every("a\x00b"),
        "NUL in a key": json.dumps({f"{name}\x00": "x"}),
        "lone surrogate": '{"%s": "\\ud800x"}' % name,
        "lone surrogate in a key": '{"\\udc00": 1}',
        "huge integer": every(10**30),
        "integer of 5000 digits": '{"%s": %s}' % (name, "9" * 5000),
        "huge float": '{"%s": 1e400}' % name,
        "negative zero and NaN": '{"%s": -0.0, "x": NaN}' % name,
        "duplicate keys": '{"%s": 1, "%s": "two"}' % (name, name),
        "1 MB string": every("x" * 2**20),
        "object of 10,000 keys": json.dumps({f"k{i}": i for i in range(10_000)}),
        "not an object": json.dumps([fields]),
    }


@pytest.mark.parametrize("path, method, fields", list(write_operations()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_write_operation_refuses_hostile_json_in_the_error_body(path, method, fields, client_for, alice, acme,
                                                                      globex):
    client = client_for(alice)
    for case, text in hostile_bodies(fields).items():
        # Ids of both worlds exist in each table; alice owns Acme's, so her requests reach the parsing.
        response = getattr(client, method)(path.replace("{id}", str(acme.project.pk)), text,
                                           content_type="application/json")
        # Some operations read no body (sign out, stop) or take the text as it is: a 2xx is fine.
        assert response.status_code < 500, (case, method, path, response.status_code, response.content[:300])
        if response.status_code >= 400:
            assert_error(response, response.status_code)
