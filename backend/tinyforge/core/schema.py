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


def errors(*codes: int) -> dict:
    text = {
        400: "Invalid input; `fields` names each bad field",
        401: "Not signed in, or the token is invalid, expired or revoked",
        403: "Signed in, but your role or the token's scopes do not allow this",
        404: "No such object in your teams",
        409: "Not possible in the object's current state",
        413: "Request body too large",
    }
    return {code: OpenApiResponse(ErrorBody, description=text[code]) for code in codes}


READ_ERRORS = errors(401, 403)
OBJECT_ERRORS = errors(401, 403, 404)
WRITE_ERRORS = errors(400, 401, 403, 404)
