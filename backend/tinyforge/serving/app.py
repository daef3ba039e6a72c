"""The inference service: an ASGI app (Starlette) speaking the OpenAI API over the model pool.

Routes: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions, POST /v1/completions,
POST /predict, GET /health, GET /readyz, GET /metrics (only to the metrics token: ServerSettings).
Errors always have OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tinyforge import bounded_json
from tinyforge.serving import structured
from tinyforge.serving.answers import Answer, AnswerLog
from tinyforge.serving.api import (
    APIError, ChatCompletionRequest, CompletionRequest, PredictRequest, parse,
)
from tinyforge.serving.auth import APIKeyAuthenticator, Authenticator, Caller
from tinyforge.serving.batch import chat_prompt_ids
from tinyforge.serving.engine import Engine, Failed, Finished, QueueFull, SamplingParams, TextDelta
from tinyforge.serving.metrics import ServingMetrics, split_memory
from tinyforge.serving.pool import ModelPool, RuntimeOptions, ServedModel
from tinyforge.serving.registry import ModelRegistry

log = logging.getLogger(__name__)

# engine_unavailable: an external runtime's process (llama-server) is down and restarting.
FAILURE_STATUS = {"timeout": 504, "model_unloaded": 503, "engine_unavailable": 503, "engine_error": 500}


@dataclass(frozen=True)
class ServerSettings:
    runtime: RuntimeOptions = RuntimeOptions()
    max_body_bytes: int = 4 * 2**20  # a larger body is refused before it is read
    # GET /metrics on the service's own port answers only "Authorization: Bearer <metrics_token>";
    # None: not on this port at all (an internal listener may serve them: run_server's metrics_address).
    # The models' API keys do not open it: metrics name every deployment and their traffic.
    metrics_token: str | None = None


def create_app(registry: ModelRegistry, authenticator: Authenticator,
               settings: ServerSettings = ServerSettings(), answer_log: AnswerLog | None = None) -> Starlette:
    """`answer_log`, when given, receives every finished completion under its id (serving/answers.py)."""
    service = InferenceService(registry, authenticator, settings, answer_log)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.stop)

    routes = [
        Route("/health", service.health, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_page, methods=["GET"]),
        Route("/v1/models", service.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", service.get_model, methods=["GET"]),
        Route("/v1/chat/completions", service.chat_completions, methods=["POST"]),
        Route("/v1/completions", service.completions, methods=["POST"]),
        Route("/predict", service.predict, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        APIError: _api_error_response,
        HTTPException: _http_error_response,
        Exception: _internal_error_response,
    })
    app.state.service = service
    return app


def _bearer_key(request: Request) -> str | None:
    """The key of an "Authorization: Bearer <key>" header, or None."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _api_error_response(request: Request, exc: APIError) -> JSONResponse:
    return _error_response(exc)


async def _http_error_response(request: Request, exc: HTTPException) -> JSONResponse:
    kind = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else "http_error"
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return _error_response(APIError(exc.status_code, message, code=kind))


async def _internal_error_response(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error_response(APIError(500, f"internal error: {type(exc).__name__}", type="server_error", code="internal_error"))


class InferenceService:
    def __init__(self, registry: ModelRegistry, authenticator: Authenticator, settings: ServerSettings,
                 answer_log: AnswerLog | None = None):
        self.registry = registry
        self.authenticator = authenticator
        self.settings = settings
        self.answer_log = answer_log
        self.metrics = ServingMetrics()
        self.pool = ModelPool(registry, settings.runtime, self.metrics)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self.registry_error = ""  # why the last read of the registry failed, for /readyz

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._refresher = threading.Thread(target=self._refresh_loop, name="model-registry", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._refresher:
            self._refresher.join(timeout=120)
        self.pool.close()

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            try:
                specs = self.registry.list_models()
            except Exception as exc:
                log.exception("reading the model registry failed; keeping the current models")
                self.registry_error = f"the model registry cannot be read: {type(exc).__name__}: {exc}"
            else:
                self.registry_error = ""
                try:
                    self.pool.sync(specs)
                except Exception:
                    log.exception("loading the registry's models failed; retrying at the next refresh")
                    self.pool.synced_once.set()  # the registry answered; what did load serves
            self._stop.wait(self.registry.refresh_seconds)

    # --- plain endpoints --------------------------------------------------------------------

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "alive", "uptime_seconds": round(time.monotonic() - self.started, 3)})

    async def readyz(self, request: Request) -> JSONResponse:
        """Ready once the registry answered and the models it named then are loaded or failed.

        No models is ready: an empty platform is a healthy one. A model that failed does not hold
        the others back (it answers 503 with its reason) unless the registry requires every model
        (a fixed set of folders: `tinyforge serve`, a bundle). A model added later loads while the
        service stays ready: every replica polls the same registry, so holding readiness for it
        would take them all out of rotation at once and stop the models that already serve.
        """
        served = list(self.pool.models.items())
        models = {name: {"state": m.state, **({"error": m.error} if m.error else {})} for name, m in served}
        loading = sorted(name for name, m in served if m.state == "loading")
        failed = sorted(name for name, m in served if m.state == "failed")
        reasons = []
        if not self.pool.synced_once.is_set():
            reasons.append(self.registry_error
                           or f"loading the models it must serve ({', '.join(loading) or 'none yet'})")
        if failed and self.registry.every_model_required:
            reasons.append(f"every model listed must serve, and {', '.join(failed)} failed to")
        body = {"ready": not reasons, "loading": loading, "failed": failed, "models": models}
        if reasons:
            body["why_not_ready"] = reasons
        if self.registry_error:
            body["registry_error"] = self.registry_error
        return JSONResponse(body, status_code=503 if reasons else 200)

    async def metrics_page(self, request: Request) -> Response:
        token = self.settings.metrics_token
        if token is None:
            raise APIError(404, "metrics are not served on this port: set TINYFORGE_METRICS_TOKEN to serve them here "
                                "to that bearer token, or TINYFORGE_METRICS_ADDRESS to serve them on an internal "
                                "address", code="not_found")
        if APIKeyAuthenticator(token).authenticate(_bearer_key(request)) is None:
            raise APIError(401, "GET /metrics needs the metrics token (TINYFORGE_METRICS_TOKEN) as "
                                "'Authorization: Bearer <token>'", type="authentication_error",
                           code="invalid_metrics_token", headers={"WWW-Authenticate": "Bearer"})
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def list_models(self, request: Request) -> JSONResponse:
        caller = await self._authenticate(request)
        data = []
        for served in list(self.pool.models.values()):
            model_id = caller.model_id(served.spec.name)
            if served.state == "ready" and model_id is not None:
                data.append(self._model_object(served, model_id))
        return JSONResponse({"object": "list", "data": data})

    async def get_model(self, request: Request) -> JSONResponse:
        caller = await self._authenticate(request)
        model_id = request.path_params["model"]
        return JSONResponse(self._model_object(self._served(model_id, caller), model_id))

    def _model_object(self, served: ServedModel, model_id: str) -> dict:
        info = served.engine.runtime.info if served.engine else None
        own, shared = split_memory(served.memory)
        return {
            "id": model_id, "object": "model", "created": served.created, "owned_by": served.spec.owned_by,
            "tinyforge": {
                "runtime": info.name if info else None, "device": info.device if info else None,
                "dtype": info.dtype if info else None, "max_context": info.max_context if info else None,
                # Which precision serves it and why (serving.precision), where the runtime chose one.
                "precision": choice.to_dict() if (choice := served.engine.runtime.precision_choice
                                                  if served.engine else None) else None,
                "adapter_on_shared_base": bool(served.shared_base), "own_memory_bytes": own,
                "shared_memory_bytes": shared, "memory_bytes_by_part": served.memory,
            },
        }

    # --- generation endpoints ---------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        return await self._generate(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completion")

    async def predict(self, request: Request) -> Response:
        return await self._generate(request, "predict")

    async def _generate(self, request: Request, kind: str) -> Response:
        started = time.monotonic()
        endpoint = request.url.path
        model_label = "unknown"
        try:
            caller = await self._authenticate(request)
            body = await self._read_json(request)
            schema = {"chat": ChatCompletionRequest, "completion": CompletionRequest, "predict": PredictRequest}[kind]
            params = parse(schema, body)
            model_id = self._model_name(params, caller)
            served = self._served(model_id, caller)
            model_label = served.spec.name
            prompt_ids = await anyio.to_thread.run_sync(self._prompt_ids, served, params, kind)
            sampling = self._sampling(served, params, len(prompt_ids))
            if sampling.grammar is not None and isinstance(served.engine, Engine):
                await anyio.to_thread.run_sync(structured.prepare, served.tokenizer, served.stop_token_ids)
            try:
                generation = served.engine.submit(
                    model=served.spec.name, adapter_id=served.adapter_id, tokenizer=served.tokenizer,
                    prompt_ids=prompt_ids, params=sampling, stop_token_ids=served.stop_token_ids,
                    loop=asyncio.get_running_loop())
            except structured.SchemaError as exc:
                raise APIError(400, f"response_format: model {model_label!r} cannot follow this schema: {exc}",
                               param="response_format", code="invalid_schema") from None
            except QueueFull as exc:
                self.metrics.rejected.labels(model_label, "queue_full").inc()
                raise APIError(429, f"model {model_label!r} is at capacity ({served.engine.max_waiting} requests "
                               f"waiting); retry after {exc.retry_after} s", type="rate_limit_error",
                               code="rate_limit_exceeded", headers={"Retry-After": str(exc.retry_after)}) from None
        except APIError as error:
            self._count(model_label, endpoint, error.status, started)
            return _error_response(error)
        request_id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
        keep = self._keeper(request_id, kind, served, model_id, params, caller)
        if kind != "predict" and params.stream:
            include_usage = bool(params.stream_options and params.stream_options.include_usage)
            stream = self._stream(request_id, kind, served, model_id, generation, include_usage, started, endpoint,
                                  keep)
            return StreamingResponse(stream, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await self._complete(request, request_id, kind, served, model_id, generation, started, endpoint, keep)

    def _keeper(self, request_id, kind, served, model_id, params, caller: Caller):
        """What hands the finished answer to the answer log: an async function of (text, Finished),
        or None when there is no log, the endpoint gives no id (/predict) or the caller sent store: false."""
        if self.answer_log is None or kind == "predict" or params.store is False:
            return None
        prompt = [m.as_template_message() for m in params.messages] if kind == "chat" else params.prompt

        async def keep(text: str, finished: Finished) -> None:
            answer = Answer(id=request_id, served_name=served.spec.name, model_id=model_id, kind=kind, prompt=prompt,
                            text=text, finish_reason=finished.reason, prompt_tokens=finished.prompt_tokens,
                            completion_tokens=finished.completion_tokens, caller=caller.name)
            try:
                await anyio.to_thread.run_sync(self.answer_log.record, answer)
            except Exception:
                # The client still gets its answer; feedback on this id will be refused as unknown.
                log.exception("keeping answer %s of %s failed", request_id, served.spec.name)

        return keep

    async def _authenticate(self, request: Request) -> Caller:
        api_key = _bearer_key(request)
        caller = await anyio.to_thread.run_sync(self.authenticator.authenticate, api_key)
        if caller is None:
            message = "missing API key: send Authorization: Bearer <key>" if api_key is None else "incorrect API key provided"
            raise APIError(401, message, code="invalid_api_key")
        return caller

    async def _read_json(self, request: Request):
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise APIError(413, f"the request body is {int(declared)} bytes; the limit is {limit}", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(413, f"the request body is over the limit of {limit} bytes", code="request_too_large")
            chunks.append(chunk)
        try:
            text = b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise APIError(400, f"the request body is not UTF-8 text (byte {exc.start})", code="invalid_json") from None
        try:
            return bounded_json.loads(text)
        except json.JSONDecodeError as exc:
            raise APIError(400, f"malformed JSON in the request body: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           code="invalid_json") from None

    def _model_name(self, params, caller: Caller) -> str:
        if getattr(params, "model", None):
            return params.model
        ready = [model_id for model_id in (caller.model_id(name) for name, m in list(self.pool.models.items())
                                           if m.state == "ready") if model_id is not None]
        if len(ready) == 1:
            return ready[0]
        raise APIError(400, f"say which model: \"model\" is one of {sorted(ready)}", param="model", code="missing_model")

    def _served(self, name: str, caller: Caller) -> ServedModel:
        served_name = caller.served_name(name)
        served = self.pool.get(served_name) if served_name is not None else None
        if served is None:
            raise APIError(404, f"The model `{name}` does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        if served.state == "loading":
            raise APIError(503, f"model {name!r} is still loading; retry in a few seconds", type="server_error",
                           code="model_loading", headers={"Retry-After": "5"})
        if served.state != "ready" or served.engine is None:
            raise APIError(503, f"model {name!r} is unavailable: {served.error}", type="server_error", code="model_failed")
        return served

    def _prompt_ids(self, served: ServedModel, params, kind: str) -> list[int]:
        tokenizer = served.tokenizer
        if kind == "completion":
            return tokenizer(params.prompt, add_special_tokens=False)["input_ids"]
        if not tokenizer.chat_template:
            raise APIError(400, f"model {served.spec.name!r} has no chat template; use /v1/completions", param="messages")
        messages = ([m.as_template_message() for m in params.messages] if kind == "chat"
                    else [{"role": "user", "content": params.input}])
        return chat_prompt_ids(tokenizer, messages)

    def _sampling(self, served: ServedModel, params, prompt_tokens: int) -> SamplingParams:
        context = served.engine.runtime.info.max_context
        where = "messages" if isinstance(params, ChatCompletionRequest) else "prompt" if isinstance(params, CompletionRequest) else "input"
        if prompt_tokens == 0:
            raise APIError(400, f"{where} is empty after tokenization", param=where)
        limit = params.completion_limit if hasattr(params, "completion_limit") else params.max_tokens
        if prompt_tokens >= context:
            raise APIError(400, f"This model's maximum context length is {context} tokens. However, your {where} "
                           f"is {prompt_tokens} tokens. Shorten it.", param=where, code="context_length_exceeded")
        if limit is not None and prompt_tokens + limit > context:
            raise APIError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                           f"{prompt_tokens + limit} tokens ({prompt_tokens} in the {where}, {limit} in the completion). "
                           f"Reduce the {where} or max_tokens.", param="max_tokens", code="context_length_exceeded")
        response_format = getattr(params, "response_format", None)
        schema = response_format.answer_schema() if response_format is not None else None
        grammar = None
        if schema is not None:
            try:
                grammar = structured.grammar(schema)
            except structured.SchemaError as exc:
                where_schema = "response_format.json_schema.schema" if response_format.type == "json_schema" else "response_format"
                raise APIError(400, f"{where_schema}: this schema cannot constrain an answer: {exc}",
                               param="response_format", code="invalid_schema") from None
        return SamplingParams(
            max_tokens=limit if limit is not None else context - prompt_tokens,
            temperature=params.temperature, top_p=getattr(params, "top_p", 1.0),
            seed=getattr(params, "seed", None), stop=tuple(getattr(params, "stop", None) or ()),
            ignore_eos=getattr(params, "ignore_eos", False),
            grammar=grammar, json_schema=json.dumps(schema) if schema is not None else None,
        )

    def _count(self, model: str, endpoint: str, status: int, started: float) -> None:
        self.metrics.requests.labels(model, endpoint, str(status)).inc()
        self.metrics.latency.labels(model, endpoint).observe(time.monotonic() - started)

    async def _complete(self, request, request_id, kind, served, model_id, generation, started, endpoint,
                        keep=None) -> Response:
        """Collect the whole answer, stopping the generation if the client goes away meanwhile."""
        model = served.spec.name  # metrics are labelled by the served name, answers carry the caller's id
        parts: list[str] = []

        async def collect():
            async for event in generation:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                else:
                    return event

        collector = asyncio.ensure_future(collect())
        watcher = asyncio.ensure_future(_wait_for_disconnect(request))
        try:
            await asyncio.wait({collector, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not collector.done():
                collector.cancel()
                generation.cancel()
        if not collector.done() or collector.cancelled():
            self._count(model, endpoint, 499, started)
            return Response(status_code=499)
        event = collector.result()
        if isinstance(event, Failed):
            error = APIError(FAILURE_STATUS.get(event.code, 500), event.message, type="server_error", code=event.code)
            self._count(model, endpoint, error.status, started)
            return _error_response(error)
        text = "".join(parts)
        if keep is not None:
            await keep(text, event)
        self._count(model, endpoint, 200, started)
        if kind == "predict":
            return JSONResponse({"output": text, "model": model_id})
        usage = _usage(event)
        if kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": event.reason,
                      "logprobs": None}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": event.reason, "logprobs": None}
            obj = "text_completion"
        return JSONResponse({"id": request_id, "object": obj, "created": int(time.time()), "model": model_id,
                             "choices": [choice], "usage": usage})

    async def _stream(self, request_id, kind, served, model_id, generation, include_usage, started, endpoint,
                      keep=None):
        model = served.spec.name
        created = int(time.time())
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(delta_text: str | None, finish_reason: str | None, role: bool = False) -> str:
            if kind == "chat":
                delta = {"role": "assistant", "content": ""} if role else ({"content": delta_text} if delta_text else {})
                choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            else:
                choice = {"index": 0, "text": delta_text or "", "finish_reason": finish_reason, "logprobs": None}
            payload = {"id": request_id, "object": obj, "created": created, "model": model_id, "choices": [choice]}
            if include_usage:
                payload["usage"] = None
            return f"data: {json.dumps(payload)}\n\n"

        status = 499
        parts: list[str] = []
        try:
            if kind == "chat":
                yield chunk(None, None, role=True)
            async for event in generation:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                    yield chunk(event.text, None)
                elif isinstance(event, Finished):
                    if keep is not None:
                        await keep("".join(parts), event)
                    yield chunk(None, event.reason)
                    if include_usage:
                        usage = _usage(event)
                        yield f"data: {json.dumps({'id': request_id, 'object': obj, 'created': created, 'model': model_id, 'choices': [], 'usage': usage})}\n\n"
                    yield "data: [DONE]\n\n"
                    status = 200
                else:
                    status = FAILURE_STATUS.get(event.code, 500)
                    error = APIError(status, event.message, type="server_error", code=event.code)
                    yield f"data: {json.dumps(error.body())}\n\n"
        finally:
            # Reached on a normal end, and when Starlette cancels the stream because the client
            # disconnected: either way the engine must stop spending steps on it.
            if not generation.done:
                generation.cancel()
            self._count(model, endpoint, status, started)


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _usage(event: Finished) -> dict:
    """OpenAI's usage object; prompt_tokens_details.cached_tokens, as OpenAI's own prompt caching
    reports it, counts the prompt tokens the prefix cache spared (they are in prompt_tokens too)."""
    return {"prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens,
            "total_tokens": event.prompt_tokens + event.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": event.cached_tokens}}
