"""One error body for the whole API: {"error": {"code", "message", "fields"}}.

`api_exception_handler` is DRF's EXCEPTION_HANDLER, where the services' domain errors
(tinyforge.errors) become HTTP answers; `json_error_response` serves Django-level
failures under /api/ (unknown URL, CSRF failure outside DRF, body too large, server error) so
that a client never has to parse an HTML page.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

from tinyforge.core.lifecycle import InvalidTransition
from tinyforge.core.storage import MissingFile
from tinyforge.errors import Conflict, InvalidInput, NotAllowed, NotFound, TinyforgeError

logger = logging.getLogger(__name__)


class ConflictResponse(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def json_error_response(status_code: int, code: str, message: str, fields: dict | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, fields), status=status_code)


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error details as {"field": [...], "items.0.name": [...]}."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for sub, messages in _flatten(value, name).items():
                fields.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            fields[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    fields.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        fields[prefix or "non_field_errors"] = [str(detail)]
    return fields


def _validation_body(detail) -> dict:
    fields = _flatten(detail)
    general = fields.pop("non_field_errors", None)
    if general:
        message = " ".join(general)
    else:
        first = next(iter(fields.items()), None)
        message = f"{first[0]}: {first[1][0]}" if first else "Invalid input."
    return error_body("invalid", message, fields)


def _code_of(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.PermissionDenied) and str(exc.detail).startswith("CSRF Failed"):
        return "csrf_failed"
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return exc.default_code


def api_exception_handler(exc, context):
    if isinstance(exc, (InvalidTransition, MissingFile, Conflict)):
        exc = ConflictResponse(str(exc))
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(str(exc) or PayloadTooLarge.default_detail)
    elif isinstance(exc, InvalidInput):
        exc = exceptions.ValidationError(exc.fields)
    elif isinstance(exc, NotAllowed):
        exc = exceptions.PermissionDenied(str(exc))
    elif isinstance(exc, NotFound):
        exc = exceptions.NotFound(str(exc))
    elif isinstance(exc, TinyforgeError):
        exc = exceptions.ValidationError({"non_field_errors": [str(exc)]})
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages})
    elif isinstance(exc, (ObjectDoesNotExist, Http404)):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, (ProtectedError, RestrictedError)):
        blocking = getattr(exc, "protected_objects", None) or getattr(exc, "restricted_objects", ())
        names = sorted({str(o._meta.verbose_name_plural) for o in blocking})
        exc = ConflictResponse(f"Still in use by {', '.join(names)}; delete those first.")
    elif isinstance(exc, IntegrityError):
        logger.info("integrity error answered with 409: %s", exc)
        exc = ConflictResponse("The change conflicts with existing data (a duplicate name, or an object still in use).")
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(str(exc))

    response = exception_handler(exc, context)
    if response is None:
        return None  # a real server error: Django logs it and handler500 answers in JSON
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation_body(exc.detail)
    else:
        detail = exc.detail
        message = str(detail) if not isinstance(detail, (dict, list)) else "; ".join(
            f"{k}: {v}" for k, v in _flatten(detail).items()
        )
        response.data = error_body(_code_of(exc), message)
    return response


# Django-level handlers (urls.py installs them): JSON under /api/, Django's pages elsewhere.

def _is_api(request) -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/v1/")


def handler400(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return json_error_response(413, "request_too_large", str(exception) or "The request body is too large.")
    if _is_api(request):
        return json_error_response(400, "bad_request", str(exception) if exception else "Bad request.")
    from django.views import defaults

    return defaults.bad_request(request, exception)


def handler403(request, exception=None):
    if _is_api(request):
        return json_error_response(403, "permission_denied", "You do not have permission to perform this action.")
    from django.views import defaults

    return defaults.permission_denied(request, exception)


def handler404(request, exception=None):
    if _is_api(request):
        return json_error_response(404, "not_found", f"No API endpoint at {request.path}.")
    from django.views import defaults

    return defaults.page_not_found(request, exception)


def handler500(request):
    if _is_api(request):
        return json_error_response(500, "server_error", "The server failed to answer; the error was logged.")
    from django.views import defaults

    return defaults.server_error(request)


def csrf_failure(request, reason: str = ""):
    if _is_api(request):
        return json_error_response(403, "csrf_failed", f"CSRF check failed: {reason}. Send the csrftoken cookie's value "
                                   "as the X-CSRFToken header (GET /api/v1/auth/csrf/ sets the cookie).")
    from django.views.csrf import csrf_failure as default

    return default(request, reason)
