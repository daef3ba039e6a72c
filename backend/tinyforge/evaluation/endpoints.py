"""Models behind an OpenAI-compatible API (a deployment, an allow-listed server, `tinyforge serve`),
called from a bounded pool of concurrent requests.

Judges and remote targets both go through `ChatEndpoint`. At most `concurrency` requests are in
flight: enough to fill the server's batches, few enough not to meet its 429s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tinyforge.errors import TinyforgeError
from tinyforge.serving.batch import Answer


class EndpointUnavailable(TinyforgeError):
    """The endpoint cannot be used at all (unreachable, refused the key, no such model, the model
    went away): nothing later would work either, so the evaluation stops and says why."""


# Requests in flight per endpoint: the inference service batches 16 rows per model by default
# (`tinyforge serve --max-batch`), and a judge pool of 8 left half of each batch empty (SmolLM2
# judge, bench/eval_throughput.py: 2.9x a sequential loop with 8, 3.4x with 16).
DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str = "none"  # keyless servers ignore it; the client needs a value
    concurrency: int = DEFAULT_CONCURRENCY
    timeout_s: float = 300.0
    max_retries: int = 2
    # Short-lived keys (the platform's key for one deployment): a fresh one for every request.
    key_factory: Callable[[], str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise TinyforgeError(f"{self.base_url!r} is not an http(s) URL of an OpenAI-compatible API")
        if not self.model:
            raise TinyforgeError(f"name the model to use at {self.base_url}")
        if self.concurrency < 1:
            raise TinyforgeError("concurrency must be at least 1")


class ChatEndpoint:
    """Chat completions at one endpoint; create it inside the event loop that uses it."""

    def __init__(self, endpoint: Endpoint):
        import openai

        self.endpoint = endpoint
        self._client = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key,
                                          timeout=endpoint.timeout_s, max_retries=endpoint.max_retries)
        self._pool = asyncio.Semaphore(endpoint.concurrency)

    def describe(self) -> str:
        return f"model {self.endpoint.model!r} at {self.endpoint.base_url}"

    async def close(self) -> None:
        await self._client.close()

    async def check(self) -> None:
        """One tiny request, so that an endpoint that cannot be used fails before any row is answered."""
        await self.chat([{"role": "user", "content": "Say OK."}], max_tokens=1)

    async def chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0) -> Answer:
        """The reply; an Answer with `error` when the server refused this one request (too long a
        prompt, a server error after retries); EndpointUnavailable when it cannot be used at all."""
        import openai

        async with self._pool:
            started = time.monotonic()
            client = self._client
            if self.endpoint.key_factory is not None:
                client = client.with_options(api_key=self.endpoint.key_factory())
            try:
                reply = await client.chat.completions.create(
                    model=self.endpoint.model, messages=messages, max_tokens=max_tokens, temperature=temperature)
            except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError,
                    openai.NotFoundError) as exc:
                raise EndpointUnavailable(f"{self.describe()} cannot be used: {_reason(exc)}") from None
            except openai.APIStatusError as exc:
                if exc.status_code == 503:  # the model is unloading or failed: it will not come back mid-run
                    raise EndpointUnavailable(f"{self.describe()} is unavailable: {_reason(exc)}") from None
                return Answer("", error=f"HTTP {exc.status_code}: {_reason(exc)}", latency_s=time.monotonic() - started)
            except openai.APIError as exc:
                return Answer("", error=_reason(exc), latency_s=time.monotonic() - started)
        text = (reply.choices[0].message.content or "") if reply.choices else ""
        usage = reply.usage
        return Answer(text.strip(), usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                      time.monotonic() - started)


def _reason(exc) -> str:
    import openai

    if isinstance(exc, openai.APIConnectionError) and exc.__cause__ is not None:
        return f"{exc.message} ({type(exc.__cause__).__name__}: {exc.__cause__})"
    return exc.message
