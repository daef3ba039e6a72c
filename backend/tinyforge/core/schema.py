"""Shared OpenAPI response descriptions, so every endpoint documents its error answers."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorBody = inline_serializer(
    "ErrorBody",
    {
        "error": inline_serializer(
            "ErrorDetail",
            {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(child=serializers.ListField(child=serializers.CharField())),
            },
        )
    },
)

# A text/event-stream answer is described one event at a time: OpenAPI 3.0 and 3.1 tools (and
# schemathesis, which checks each event of a stream) read a sequential media type's `schema` as
# the schema of one item (3.2 names it itemSchema). `data` holds the event's JSON, as text.
ServerSentEvent = inline_serializer(
    "ServerSentEvent",
    {
        "event": serializers.CharField(required=False, help_text="the kind of event; `message` when absent"),
        "id": serializers.CharField(required=False, help_text="where a reconnecting client resumes (Last-Event-ID)"),
        "data": serializers.CharField(help_text="the event's JSON document"),
    },
)

ERROR_TEXT = {
    400: "Invalid input (a bad id, an unknown or invalid field, filter or query parameter, a parameter given "
         "twice, malformed JSON); `fields` names each bad one",
    401: "Not signed in, or the token is invalid, expired or revoked",
    403: "Signed in, but your role or the token's scopes do not allow this",
    404: "No such object in your teams, or a page past the end",
    409: "Not possible in the object's current state",
    413: "Request body too large",
}


def errors(*codes: int) -> dict:
    return {code: OpenApiResponse(ErrorBody, description=ERROR_TEXT[code]) for code in codes}


def document_error_answers(result, generator, request, public):
    """drf-spectacular postprocessing hook: the error answers every operation can give, added
    where its own @extend_schema did not list them, so the schema says what the API answers:
    400 wherever a parameter or a body is read (ids, filters, page numbers, JSON), 404 for
    objects by id and pages past the end, 413 wherever a body is sent, 401 wherever a caller must
    be signed in and 403 everywhere (a role, a token's scopes, a CSRF check)."""
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            parameters = operation.get("parameters", [])
            codes = {403}
            if operation.get("security") != [{}] and operation.get("security") != []:
                codes.add(401)
            if parameters or "requestBody" in operation:
                codes.add(400)
            if any(p.get("in") == "path" for p in parameters) or any(p.get("name") == "page" for p in parameters):
                codes.add(404)
            if "requestBody" in operation:
                codes.add(413)
            responses = operation.setdefault("responses", {})
            for code in sorted(codes):
                responses.setdefault(str(code), {
                    "description": ERROR_TEXT[code],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                })
    return result


READ_ERRORS = errors(401, 403)
OBJECT_ERRORS = errors(401, 403, 404)
WRITE_ERRORS = errors(400, 401, 403, 404)
