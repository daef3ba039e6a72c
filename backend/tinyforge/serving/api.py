"""Request bodies of the OpenAI-compatible API and its error body.

Fields the OpenAI API defines but this server does not implement (tools, logprobs, n > 1, ...)
are refused by name rather than ignored, so a client never silently gets something other than
what it asked for.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class APIError(Exception):
    """An answer in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    # "schema" would shadow a BaseModel attribute. Absent: any JSON object, as OpenAI does.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None  # the schema is always enforced here, strict or not


class ResponseFormat(BaseModel):
    """OpenAI's response_format: free text, any JSON object, or a document of a JSON Schema."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def schema_given(self):
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError('type "json_schema" needs a "json_schema" object: {"name": ..., "schema": {...}}')
        if self.type != "json_schema" and self.json_schema is not None:
            raise ValueError(f'"json_schema" goes with type "json_schema", not {self.type!r}')
        return self

    def answer_schema(self) -> dict[str, Any] | None:
        """The JSON Schema the answer must follow; None for free text."""
        if self.type == "text":
            return None
        if self.type == "json_object" or self.json_schema.schema_ is None:
            return {"type": "object"}
        return self.json_schema.schema_


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="only one choice per request")
    presence_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="penalties are not supported")
    frequency_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="penalties are not supported")
    logprobs: bool | int | None = Field(default=None, description="not supported")
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    response_format: ResponseFormat | None = None
    # Not OpenAI's: vLLM's and llama.cpp's extension, for benchmarks that need answers of a fixed length.
    ignore_eos: bool = False

    @field_validator("stop")
    @classmethod
    def stop_strings(cls, value):
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @field_validator("logprobs")
    @classmethod
    def no_logprobs(cls, value):
        if value:
            raise ValueError("logprobs are not supported by this server")
        return value

    @property
    def completion_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # "developer" is what newer OpenAI clients send for system instructions.
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def text_only(cls, value):
        if isinstance(value, list):
            kinds = {part.get("type") if isinstance(part, dict) else type(part).__name__ for part in value}
            if kinds - {"text"}:
                raise ValueError(f"only text content parts are supported, not {sorted(map(str, kinds - {'text'}))}")
        elif not isinstance(value, str):
            raise ValueError("must be a string or a list of text parts")
        return value

    def as_template_message(self) -> dict[str, str]:
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Common):
    prompt: str | list[str]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    echo: bool = Field(default=False, description="not supported")

    @field_validator("prompt")
    @classmethod
    def one_prompt(cls, value):
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("send one prompt per request (a string)")
            value = value[0]
        if not value:
            raise ValueError("prompt is empty")
        return value

    @field_validator("echo")
    @classmethod
    def no_echo(cls, value):
        if value:
            raise ValueError("echo is not supported by this server")
        return value


class PredictRequest(BaseModel):
    """The simple endpoint: {"input": "..."} -> {"output": "..."}; greedy unless told otherwise."""

    model_config = ConfigDict(extra="forbid")
    input: str = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)


def parse(model_class: type[BaseModel], payload: Any) -> BaseModel:
    """Validate a JSON body; a problem becomes a 400 naming the field, e.g. messages.0.role."""
    if not isinstance(payload, dict):
        raise APIError(400, "the request body must be a JSON object")
    try:
        return model_class.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = f"unrecognized request argument {where!r}"
        elif first["type"] == "literal_error" and where.endswith("role"):
            message = f"unknown role {first['input']!r}; use system, user or assistant"
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[1:4])
        detail = f"{where}: {message}" + (f" (also {errors})" if errors else "")
        raise APIError(400, detail, param=where, code="invalid_value") from None
