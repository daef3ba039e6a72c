from __future__ import annotations

from django.conf import settings

from tinyforge.core.errors import json_error_response


class SecurityHeadersMiddleware:
    """A Content-Security-Policy (the first of settings.CONTENT_SECURITY_POLICIES whose path
    prefix the request's path starts with) and a Permissions-Policy on every response.

    Placed before WhiteNoise, so the dashboard's index page and files get them too: WhiteNoise
    answers static files itself, and the middleware after it never sees those responses.
    Django 5.2 has no CSP of its own, and the policies differ by path (the REST API, the
    dashboard, the staff pages of django-rq with their inline scripts), which per-view decorators
    on views we do not own (admin, django-rq, WhiteNoise) could not express.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = next(policy for prefix, policy in settings.CONTENT_SECURITY_POLICIES
                      if request.path.startswith(prefix))
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response


class ApiBodyLimitMiddleware:
    """Answer 413 for an oversized API body before anything reads it.

    Django enforces DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` is read; DRF's parsers
    read the stream directly, so without this a 1 GB JSON body would be parsed. Multipart
    uploads (dataset files, streamed to disk) are allowed up to TINYFORGE_MAX_UPLOAD_BYTES.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error_response(400, "bad_request", "Content-Length is not a number.")
            multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data")
            limit = settings.MAX_UPLOAD_BYTES if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if length > limit:
                what = "upload" if multipart else "request body"
                setting = "TINYFORGE_MAX_UPLOAD_BYTES" if multipart else "TINYFORGE_MAX_REQUEST_BODY_BYTES"
                return json_error_response(
                    413, "request_too_large", f"The {what} is {length} bytes; the limit is {limit} bytes ({setting})."
                )
        return self.get_response(request)
