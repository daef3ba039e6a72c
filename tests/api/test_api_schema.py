"""The schema says what the API answers (issue 15 finding 6); schemathesis checks the answers
themselves (test_api_fuzz.py)."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_the_events_tail_is_documented_as_the_page_object_it_answers(schema):
    body = schema["paths"]["/api/v1/events/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/EventPage"}
    assert set(schema["components"]["schemas"]["EventPage"]["properties"]) == {"results", "next_after", "has_more"}


def test_fields_the_api_answers_null_are_nullable(schema):
    audit = schema["components"]["schemas"]["AuditEvent"]["properties"]
    assert audit["actor_token"].get("nullable") and audit["actor"].get("nullable")
    assert schema["components"]["schemas"]["Invitation"]["properties"]["invited_by"].get("nullable")


def test_every_operation_documents_the_errors_it_can_answer(schema):
    missing = []
    for path, method, operation in operations(schema):
        codes = set(operation["responses"])
        parameters = operation.get("parameters", [])
        if (parameters or "requestBody" in operation) and "400" not in codes:
            missing.append((method, path, 400))
        if "{" in path and "404" not in codes:
            missing.append((method, path, 404))
        if any(p["name"] == "page" for p in parameters) and "404" not in codes:
            missing.append((method, path, "404 (page past the end)"))
        if "requestBody" in operation and "413" not in codes:
            missing.append((method, path, 413))
    assert not missing, missing
    assert "429" in schema["paths"]["/api/v1/auth/login/"]["post"]["responses"]
