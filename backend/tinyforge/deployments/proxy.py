"""The web process's way to the inference service (settings.INFERENCE_URL).

- `openai_proxy`: /v1/models, /v1/chat/completions and /v1/completions on the web origin,
  forwarded as they are (the caller's token included: the inference service checks it), streamed
  both ways without buffering. `make demo` has no nginx, and this keeps one base URL for the
  whole OpenAI surface (/v1/files and /v1/fine_tuning/ are the web app's own). Behind nginx the
  same paths go to the inference service directly and never reach this code.
- `playground_chat`: the dashboard's Playground, one deployment for a signed-in user, through a
  short-lived key that reaches that deployment only.

A client that goes away closes the upstream request, so the service stops generating.
"""

from __future__ import annotations

import json

import httpx
from django.conf import settings
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from tinyforge.core.errors import error_body

# Answers stream for as long as generation takes: no read timeout, the service has its own.
TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=60.0, pool=10.0)
PASSED_RESPONSE_HEADERS = ("content-type", "retry-after", "cache-control")
_client: httpx.Client | None = None


def _http() -> httpx.Client:
    global _client
    if _client is None:  # one pool per process; httpx.Client is thread-safe
        _client = httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(max_connections=200, max_keepalive_connections=20))
    return _client


class InferenceUnavailable(Exception):
    def __init__(self, url: str, exc: Exception):
        super().__init__(f"The inference service at {url} is not answering ({type(exc).__name__}); it may still be "
                         "starting. Start it with `tinyforge serve-platform` (make demo starts it) and retry.")


def send(method: str, path: str, *, headers: dict[str, str], content=None) -> httpx.Response:
    """The upstream response, opened for streaming (the caller closes it)."""
    url = settings.INFERENCE_URL.rstrip("/") + path
    try:
        return _http().send(_http().build_request(method, url, headers=headers, content=content), stream=True)
    except httpx.TransportError as exc:
        raise InferenceUnavailable(settings.INFERENCE_URL, exc) from None


def streamed(upstream: httpx.Response) -> StreamingHttpResponse:
    """The upstream answer passed on chunk by chunk, as it arrives."""

    def chunks():
        try:
            yield from upstream.iter_raw()
        except httpx.TransportError:
            return  # the service went away mid-answer: end the stream, the client sees it cut
        finally:
            upstream.close()

    response = StreamingHttpResponse(chunks(), status=upstream.status_code)
    for name in PASSED_RESPONSE_HEADERS:
        if name in upstream.headers:
            response[name] = upstream.headers[name]
    response["X-Accel-Buffering"] = "no"
    return response


@csrf_exempt  # bearer tokens only: no cookie is ever looked at here
@require_http_methods(["GET", "POST"])
def openai_proxy(request, path: str):
    headers = {"accept": request.headers.get("Accept", "*/*")}
    for name in ("Authorization", "Content-Type", "Content-Length"):
        if request.headers.get(name):
            headers[name.lower()] = request.headers[name]
    body = iter(lambda: request.read(64 * 1024), b"") if request.method == "POST" else None
    try:
        upstream = send(request.method, f"/v1/{path}", headers=headers, content=body)
    except InferenceUnavailable as exc:
        return JsonResponse({"error": {"message": str(exc), "type": "server_error", "param": None,
                                       "code": "service_unavailable"}}, status=503, headers={"Retry-After": "5"})
    return streamed(upstream)


def playground_chat(deployment, body: dict) -> HttpResponse:
    """One chat completion with `deployment` for the dashboard: the body is OpenAI's (messages,
    temperature, max_tokens, stream...), the model is the deployment. Errors use the platform's
    error body; a stream is OpenAI's chat.completion.chunk events ending with `data: [DONE]`."""
    from tinyforge.deployments.inference import playground_key

    payload = {**body, "model": deployment.name}
    payload.setdefault("stream", True)
    headers = {"authorization": f"Bearer {playground_key(deployment)}", "content-type": "application/json",
               "accept": "text/event-stream" if payload["stream"] else "application/json"}
    try:
        upstream = send("POST", "/v1/chat/completions", headers=headers, content=json.dumps(payload).encode())
    except InferenceUnavailable as exc:
        return JsonResponse(error_body("service_unavailable", str(exc)), status=503, headers={"Retry-After": "5"})
    if upstream.status_code < 400 and payload["stream"]:
        return streamed(upstream)
    try:
        upstream.read()
    except httpx.HTTPError as exc:
        upstream.close()
        return JsonResponse(error_body("service_unavailable", f"The inference service stopped answering: {exc}"),
                            status=502)
    upstream.close()
    if upstream.status_code < 400:
        return HttpResponse(upstream.content, status=upstream.status_code, content_type="application/json")
    try:
        error = upstream.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") or f"The inference service answered {upstream.status_code}."
    fields = {error["param"]: [message]} if error.get("param") else {}
    response = JsonResponse(error_body(error.get("code") or "inference_error", message, fields),
                            status=upstream.status_code)
    if "retry-after" in upstream.headers:
        response["Retry-After"] = upstream.headers["retry-after"]
    return response
