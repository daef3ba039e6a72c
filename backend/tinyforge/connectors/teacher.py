"""A teacher: a chat model behind any OpenAI-compatible API (a TinyForge deployment, vLLM, Ollama, a
hosted API) that the `qa` and `knowledge` recipes ask to write training data.

Retries are the openai client's own: 408, 409, 429 and 5xx answers and dropped connections are
retried with exponential backoff and jitter, honouring Retry-After (up to a minute), `max_retries`
times. The client is thread-safe, so one teacher serves concurrent chunks.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import zlib
from dataclasses import dataclass
from typing import Any

from tinyforge import bounded_json
from tinyforge.errors import TinyforgeError

log = logging.getLogger(__name__)

_JSON_ARRAY = re.compile(r"\[.*\]", re.DOTALL)


@dataclass
class TeacherOptions:
    """The model that writes training data, reachable over the OpenAI API."""

    base_url: str  # e.g. http://localhost:8000/v1 (a TinyForge deployment) or any compatible server
    model: str
    api_key: str = "none"  # many local servers want no key, but the client needs a value
    temperature: float = 0.2
    timeout_s: float = 120.0
    max_retries: int = 2
    # Longest reply: without it a small model may ramble to its context limit on every call.
    max_tokens: int = 2048
    # Sampling seed: each request's own is drawn from it and the request's text, so the same
    # document, prompts and teacher give the same rows again (a re-run, a resumed import, a
    # benchmark), where the server honours `seed` (TinyForge, vLLM, llama.cpp; OpenAI best-effort) and
    # computes a request as it would alone: concurrent requests batched in floating point move one
    # another's logits a little, and now and then a sampled token (docs/connectors.md, Seeded).
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise TinyforgeError("the teacher's temperature must be between 0 and 2")
        if not 0 <= self.max_retries <= 10:
            raise TinyforgeError("the teacher's retries must be between 0 and 10")
        if not 16 <= self.max_tokens <= 32768:
            raise TinyforgeError("the teacher's reply limit must be between 16 and 32768 tokens")


class TeacherUnusable(TinyforgeError):
    """The teacher cannot be used at all (unreachable, unknown model, refused key): nothing later would work."""


class TeacherFailed(Exception):
    """One request failed for good (after retries): only the chunk it was for is lost."""


class Teacher:
    """One client for one teacher; counts the tokens it was billed for."""

    def __init__(self, options: TeacherOptions):
        self.options = options
        self.tokens = 0
        self.calls = 0
        self._lock = threading.Lock()
        self._client: Any = None
        self.structured = True  # asks for its replies' shape with response_format until the server refuses it

    def chat(self, system: str, user: str, temperature: float | None = None,
             schema: tuple[str, dict] | None = None) -> tuple[str, int]:
        """The teacher's reply to one exchange and the tokens it cost. Raises TeacherUnusable or TeacherFailed.

        `schema` (name, JSON Schema): the reply's shape, asked for as structured output
        (`response_format`), which TinyForge, vLLM, llama.cpp and Ollama enforce while the teacher
        writes: a small teacher then always replies in the shape asked for. A server that refuses
        the field gets every later request without it, and the reply is read as free text."""
        import openai

        with self._lock:
            if self._client is None:
                self._client = openai.OpenAI(base_url=self.options.base_url, api_key=self.options.api_key,
                                             timeout=self.options.timeout_s, max_retries=self.options.max_retries)
        extra = {}
        if schema is not None and self.structured:
            extra["response_format"] = {"type": "json_schema", "json_schema": {"name": schema[0], "schema": schema[1]}}
        try:
            reply = self._client.chat.completions.create(
                model=self.options.model, max_tokens=self.options.max_tokens,
                temperature=self.options.temperature if temperature is None else temperature,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                seed=zlib.crc32(f"{self.options.seed}\0{system}\0{user}".encode()) & 0x7FFFFFFF, **extra)
        except openai.BadRequestError as exc:
            if extra and _about_response_format(exc):
                log.warning("the teacher %r refused structured output (%s); asking in words only", self.options.model,
                            exc)
                self.structured = False
                return self.chat(system, user, temperature, schema)
            raise TeacherFailed(f"the teacher answered with an error: {exc}") from None
        except openai.APITimeoutError:
            # A subclass of APIConnectionError, but the server is there: only this request is lost.
            raise TeacherFailed(f"the teacher did not answer within {self.options.timeout_s:g} s "
                                f"({self.options.max_retries} retries)") from None
        except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError,
                openai.NotFoundError) as exc:
            raise TeacherUnusable(f"the model {self.options.model!r} at {self.options.base_url} cannot be "
                                  f"used: {exc}") from None
        except openai.APIError as exc:
            raise TeacherFailed(f"the teacher answered with an error: {exc}") from None
        tokens = int(getattr(getattr(reply, "usage", None), "total_tokens", 0) or 0)
        with self._lock:
            self.calls += 1
            self.tokens += tokens
        return ((reply.choices[0].message.content or "") if reply.choices else ""), tokens


def text_schema(max_length: int) -> dict:
    return {"type": "string", "minLength": 1, "maxLength": max_length}


def list_schema(item: dict, count: int, fewer: bool = False) -> dict:
    """A JSON Schema array of `count` items (at most `count` when `fewer`)."""
    return {"type": "array", "items": item, "minItems": 0 if fewer else count, "maxItems": count}


def _about_response_format(exc) -> bool:
    """Whether a 400 refuses the structured-output request rather than something else in it."""
    if getattr(exc, "param", None) == "response_format":
        return True
    text = str(exc).lower()
    return any(word in text for word in ("response_format", "json_schema", "schema", "grammar", "guided"))


@dataclass
class ArrayReply:
    """The JSON array a teacher replied with."""

    items: list | None  # None: the reply holds no JSON array
    # When the reply broke off inside the array (cut at its token limit, or not JSON from some item
    # on): what came after the last complete item. Callers count it as dropped.
    unread: str = ""


def json_array(content: str) -> ArrayReply:
    """The first JSON array in a model's reply (models wrap it in prose or code fences).

    A reply that breaks off inside the array keeps the items complete before the break: a small
    teacher often writes two good items and then repeats itself until its token limit, and losing
    the good ones with the loop would lose the chunk. Each item is still checked by the caller."""
    match = _JSON_ARRAY.search(content)
    try:
        items = bounded_json.loads(match.group(0)) if match else None
    except (json.JSONDecodeError, ValueError):
        items = None
    if isinstance(items, list):
        return ArrayReply(items)
    start = content.find("[")
    try:
        bounded_json.check_depth(content)  # before the decoder recurses into it
    except ValueError:
        start = -1
    items, position = [], start + 1
    while start >= 0:
        position = _SEPARATORS.match(content, position).end()
        if content[position:position + 1] == "]":  # complete: prose after it spoiled the greedy match
            return ArrayReply(items)
        try:
            _, end = _DECODER.raw_decode(content, position)
            item = bounded_json.loads(content[position:end])  # its bounds on numbers and strings too
        except (json.JSONDecodeError, ValueError):
            break
        items.append(item)
        position = end
    return ArrayReply(items, unread=content[position:] or "(the reply ends)") if items else ArrayReply(None)


_SEPARATORS = re.compile(r"[\s,]*")
_DECODER = json.JSONDecoder()
