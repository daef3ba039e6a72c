"""Structured records -> dataset rows: a user's field mapping, or a detected common shape.

Shapes recognised without a mapping: alpaca (instruction / input / output), messages (OpenAI
chat), sharegpt (conversations of from / value), prompt / completion, question / answer
(with an optional context), TRL's preference shapes: pairs (prompt or messages / chosen /
rejected) and unpaired answers (prompt or messages / completion / label), kept as they are, and
OpenAI's DPO shape (input.messages / preferred_output / non_preferred_output), read as a pair.
Fields that the shape does not use go to the row's metadata, so nothing read from the source is
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tinyforge.connectors.records import Row, SourceError

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "model": "assistant", "bard": "assistant", "bing": "assistant",
                   "system": "system"}


@dataclass(frozen=True)
class FieldMapping:
    """Which source field fills which part of an instruction row.

    `metadata=None` keeps every field not mapped elsewhere; a list keeps only those fields.
    """

    instruction: str
    output: str
    input: str | None = None
    metadata: list[str] | None = None
    shape: str = "mapping"

    @classmethod
    def parse(cls, pairs: dict[str, Any]) -> FieldMapping:
        """From {"instruction": "question", "output": "answer", "input": ..., "metadata": [...]}."""
        unknown = set(pairs) - {"instruction", "input", "output", "metadata"}
        if unknown:
            raise SourceError("mapping", f"unknown target field(s) {sorted(unknown)}; "
                                         "map to instruction, input, output or metadata")
        missing = [k for k in ("instruction", "output") if not pairs.get(k)]
        if missing:
            raise SourceError("mapping", f"the mapping needs a source field for {' and '.join(missing)}")
        metadata = pairs.get("metadata")
        if isinstance(metadata, str):
            metadata = [m.strip() for m in metadata.split(",") if m.strip()]
        return cls(pairs["instruction"], pairs["output"], pairs.get("input") or None, metadata)


@dataclass
class RowMapper:
    """Turns Rows into dataset rows; without a mapping, detects the shape of each row.

    Per row, not from the first one: our own dataset format allows instruction rows and chat rows
    in one file (examples/data/demo_dataset.jsonl mixes them), and so do exported chat logs.
    `shapes` counts the shapes seen, for the import report.
    """

    mapping: FieldMapping | None = None
    shapes: dict[str, int] = field(default_factory=dict, init=False)

    @property
    def shape(self) -> str | None:
        """The shape of the rows mapped so far: one name, "mixed: a, b" or None before any row."""
        if len(self.shapes) > 1:
            return "mixed: " + ", ".join(sorted(self.shapes))
        return next(iter(self.shapes), None)

    def __call__(self, row: Row) -> dict[str, Any]:
        fields = row.fields
        shape = self.mapping.shape if self.mapping else detect_shape(fields)
        if shape is None:
            raise SourceError(row.source, f"cannot tell which fields hold the prompt and the answer "
                                          f"(fields: {', '.join(sorted(fields)) or 'none'}); give a mapping "
                                          "such as instruction=question output=answer", row.location)
        self.shapes[shape] = self.shapes.get(shape, 0) + 1
        if shape in _PREFERENCE_FIELDS:
            # TRL's preference shapes are already dataset rows; the engine's schema validates them.
            used = {name for name in ("prompt", "messages", *_PREFERENCE_FIELDS[shape]) if name in fields}
            example = {name: fields[name] for name in used}
        elif shape == "openai_preference":
            example = _openai_pair(fields, row)
            used = {"input", "preferred_output", "non_preferred_output"}
        elif shape == "messages":
            example = {"messages": [_message(m, row, "messages") for m in _list(fields, "messages", row)]}
            used = {"messages"}
        elif shape == "sharegpt":
            example = {"messages": [_sharegpt_message(m, row) for m in _list(fields, "conversations", row)]}
            used = {"conversations"}
        else:
            mapping = self.mapping or _SHAPE_MAPPINGS[shape]
            example = {"instruction": _text(fields, mapping.instruction, row, required=True)}
            used = {mapping.instruction, mapping.output}
            if mapping.input and _text(fields, mapping.input, row, required=False):
                example["input"] = _text(fields, mapping.input, row, required=False)
            if mapping.input:
                used.add(mapping.input)
            example["output"] = _text(fields, mapping.output, row, required=True)
            if mapping.metadata is not None:
                missing = [m for m in mapping.metadata if m not in fields]
                if missing:
                    raise SourceError(row.source, f"metadata field {missing[0]!r} is missing", row.location,
                                      field=missing[0])
                used |= set(fields) - set(mapping.metadata)
        metadata = dict(fields.get("metadata") or {}) if isinstance(fields.get("metadata"), dict) else {}
        metadata.update({k: v for k, v in fields.items() if k not in used and k != "metadata"})
        metadata.update(source=row.source, location=row.location)
        example["metadata"] = metadata
        return example


_SHAPE_MAPPINGS = {
    "alpaca": FieldMapping("instruction", "output", "input", shape="alpaca"),
    "prompt_completion": FieldMapping("prompt", "completion", shape="prompt_completion"),
    "question_answer": FieldMapping("question", "answer", "context", shape="question_answer"),
}


# Preference rows in TRL's shapes (pairs for DPO/ORPO, unpaired answers for KTO): the fields each keeps.
_PREFERENCE_FIELDS = {"preference_pairs": ("chosen", "rejected"), "unpaired_preference": ("completion", "label")}


def detect_shape(fields: dict[str, Any]) -> str | None:
    """The common dataset shape these fields follow, or None."""
    if "preferred_output" in fields or "non_preferred_output" in fields:
        return "openai_preference"
    if "chosen" in fields or "rejected" in fields:
        return "preference_pairs"
    if "completion" in fields and "label" in fields:
        return "unpaired_preference"
    if isinstance(fields.get("messages"), list):
        return "messages"
    if isinstance(fields.get("conversations"), list):
        return "sharegpt"
    for shape, mapping in _SHAPE_MAPPINGS.items():
        if mapping.instruction in fields and mapping.output in fields:
            return shape
    return None


def _text(fields: dict[str, Any], name: str, row: Row, required: bool) -> str:
    if name not in fields:
        if required:
            raise SourceError(row.source, f"field {name!r} is missing (fields: {', '.join(sorted(fields))})",
                              row.location, field=name)
        return ""
    value = fields[name]
    if value is None:
        value = ""
    elif isinstance(value, (dict, list)):
        raise SourceError(row.source, f"field {name!r} holds a {type(value).__name__}, expected text", row.location,
                          field=name)
    value = str(value)
    if "\x00" in value:
        raise SourceError(row.source, f"field {name!r} contains a NUL character", row.location, field=name)
    return value


def _list(fields: dict[str, Any], name: str, row: Row) -> list:
    value = fields.get(name)
    if not isinstance(value, list) or not value:
        raise SourceError(row.source, f"field {name!r} must be a non-empty list of messages", row.location, field=name)
    return value


def _message(message: Any, row: Row, name: str) -> dict[str, str]:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise SourceError(row.source, f"each item of {name!r} needs a role and a content", row.location, field=name)
    content = message["content"]
    if not isinstance(content, str):
        raise SourceError(row.source, f"a message content in {name!r} is a {type(content).__name__}, "
                                      "expected text", row.location, field=name)
    if "\x00" in content:
        raise SourceError(row.source, f"a message in {name!r} contains a NUL character", row.location, field=name)
    return {"role": message["role"], "content": content}


def _sharegpt_message(message: Any, row: Row) -> dict[str, str]:
    if not isinstance(message, dict) or "from" not in message or "value" not in message:
        raise SourceError(row.source, "each item of 'conversations' needs 'from' and 'value'", row.location,
                          field="conversations")
    role = _SHAREGPT_ROLES.get(str(message["from"]).lower())
    if role is None:
        raise SourceError(row.source, f"unknown speaker {message['from']!r} in 'conversations' "
                                      f"(known: {', '.join(sorted(_SHAREGPT_ROLES))})", row.location,
                          field="conversations")
    return _message({"role": role, "content": message["value"]}, row, "conversations")


def _openai_pair(fields: dict[str, Any], row: Row) -> dict[str, Any]:
    """OpenAI's DPO row {"input": {"messages": [...]}, "preferred_output": [assistant message],
    "non_preferred_output": [assistant message]} as TRL's pair {messages, chosen, rejected}."""
    given = fields.get("input")
    if not isinstance(given, dict):
        raise SourceError(row.source, "field 'input' must be an object holding 'messages' (OpenAI's DPO format)",
                          row.location, field="input")
    unknown = sorted(set(given) - {"messages", "tools", "parallel_tool_calls"})
    if unknown:
        raise SourceError(row.source, f"unknown field(s) {unknown} in 'input'", row.location, field="input")
    if given.get("tools"):
        raise SourceError(row.source, "tools are not supported: give input.messages only", row.location,
                          field="input.tools")
    if not isinstance(given.get("messages"), list) or not given["messages"]:
        raise SourceError(row.source, "field 'input.messages' must be a non-empty list of messages", row.location,
                          field="input.messages")
    messages = [_message(m, row, "input.messages") for m in given["messages"]]
    example: dict[str, Any] = {"messages": messages}
    for name, target in (("preferred_output", "chosen"), ("non_preferred_output", "rejected")):
        value = fields.get(name)
        if not isinstance(value, list) or len(value) != 1:
            raise SourceError(row.source, f"field {name!r} must be a list of one assistant message", row.location,
                              field=name)
        message = _message(value[0], row, name)
        if message["role"] != "assistant":
            raise SourceError(row.source, f"the message in {name!r} has role {message['role']!r}; it must be "
                                          "'assistant'", row.location, field=name)
        example[target] = [message]
    return example
