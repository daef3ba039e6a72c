"""Dataset rows and their validation.

A dataset is a JSONL file, one row per line, in one of two forms:

- instruction form: {"instruction": str, "input": str (optional), "output": str, "metadata": {...} (optional)}
- chat form: {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...], "metadata": {...}}

or, for preference training, in one of TRL's preference forms:

- pairs (DPO, ORPO): {"prompt": str | [messages], "chosen": str | [assistant message],
  "rejected": str | [assistant message]}; "messages" may stand for a conversational prompt
- unpaired (KTO): {"prompt": str | [messages], "completion": str | [assistant message], "label": bool}

One file holds one kind of row (supervised, pairs or unpaired): a row of another kind than the
file's first valid row is reported as invalid.

`validate_file` reads the file as a stream (a large file never sits in memory) and reports every
problem with its line number and field instead of stopping at the first one. Training uses
`read_rows`, which yields only the rows that validate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from tinyforge import bounded_json
from tinyforge.errors import TinyforgeError

# A row this large is almost always a whole document pasted into one field; tokenizing it would
# take seconds and it could never fit a small model's context, so it is refused up front.
MAX_ROW_BYTES = 1_000_000
# The report lists at most this many rows per kind of problem; the counts are always complete.
MAX_LISTED = 1000


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "user", "assistant"]
    content: str


class InstructionRow(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    instruction: str = Field(min_length=1)
    input: str | None = None
    output: str
    metadata: dict[str, Any] | None = None

    @field_validator("instruction")
    @classmethod
    def instruction_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("instruction is blank")
        return value

    def to_messages(self) -> list[dict[str, str]]:
        prompt = self.instruction if not self.input else f"{self.instruction}\n\n{self.input}"
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": self.output}]

    def output_text(self) -> str:
        return self.output


class ChatRow(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    messages: list[Message] = Field(min_length=1)
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def has_an_answer(self) -> ChatRow:
        if not any(m.role == "assistant" for m in self.messages):
            raise ValueError("messages has no assistant message, so there is nothing to learn")
        if self.messages[0].role == "assistant":
            raise ValueError("messages starts with an assistant message; start with a system or user message")
        return self

    def to_messages(self) -> list[dict[str, str]]:
        return [m.model_dump() for m in self.messages]

    def output_text(self) -> str:
        return "".join(m.content for m in self.messages if m.role == "assistant")


def _prompt(prompt: str | list[Message] | None, messages: list[Message] | None) -> list[dict[str, str]]:
    given = [name for name, value in (("prompt", prompt), ("messages", messages)) if value is not None]
    if len(given) != 1:
        raise ValueError("give the prompt as exactly one of prompt (text or messages) or messages, not "
                         + (" and ".join(given) if given else "neither"))
    value = prompt if prompt is not None else messages
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{given[0]} is blank")
        return [{"role": "user", "content": value}]
    if not value:
        raise ValueError(f"{given[0]} has no messages")
    if value[-1].role == "assistant":
        raise ValueError(f"{given[0]} ends with an assistant message; the answer to prefer goes in "
                         "chosen/rejected (or completion), the prompt ends with the user's turn")
    return [m.model_dump() for m in value]


def _answer(name: str, value: str | list[Message]) -> str:
    """The text of one answer: a string, or a list of exactly one assistant message (TRL's
    conversational form)."""
    if isinstance(value, list):
        if len(value) != 1 or value[0].role != "assistant":
            raise ValueError(f"{name} must be text or a list of one assistant message")
        return value[0].content
    return value


class _PromptedRow(BaseModel):
    """A prompt (text, or a conversation ending with the user's turn) and answers to it."""

    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str | list[Message] | None = None
    messages: list[Message] | None = None
    metadata: dict[str, Any] | None = None

    def prompt_messages(self) -> list[dict[str, str]]:
        return _prompt(self.prompt, self.messages)

    def to_messages(self) -> list[dict[str, str]]:
        """The conversation with the answer to imitate: what generations are scored against."""
        return self.prompt_messages() + [{"role": "assistant", "content": self.output_text()}]


class PreferenceRow(_PromptedRow):
    """A prompt with a preferred and a dispreferred answer (DPO, ORPO)."""

    chosen: str | list[Message]
    rejected: str | list[Message]

    @model_validator(mode="after")
    def answers_differ(self) -> PreferenceRow:
        self.prompt_messages()
        chosen, rejected = _answer("chosen", self.chosen), _answer("rejected", self.rejected)
        if not chosen.strip():
            raise ValueError("chosen is blank")
        if chosen == rejected:
            raise ValueError("chosen and rejected are the same text, so there is no preference to learn")
        return self

    def chosen_text(self) -> str:
        return _answer("chosen", self.chosen)

    def rejected_text(self) -> str:
        return _answer("rejected", self.rejected)

    def output_text(self) -> str:
        return self.chosen_text()

    def canonical(self) -> Any:
        return [self.prompt_messages(), self.chosen_text(), self.rejected_text()]


class UnpairedRow(_PromptedRow):
    """A prompt with one answer labelled desirable (true) or undesirable (false) (KTO)."""

    completion: str | list[Message]
    label: bool

    @model_validator(mode="after")
    def has_prompt_and_completion(self) -> UnpairedRow:
        self.prompt_messages()
        if not _answer("completion", self.completion).strip():
            raise ValueError("completion is blank")
        return self

    def completion_text(self) -> str:
        return _answer("completion", self.completion)

    def output_text(self) -> str:
        return self.completion_text()

    def canonical(self) -> Any:
        return [self.prompt_messages(), self.completion_text(), self.label]


Row = Union[InstructionRow, ChatRow, PreferenceRow, UnpairedRow]
_row_adapter: TypeAdapter[Row] = TypeAdapter(Row)

ROW_KINDS = {InstructionRow: "supervised", ChatRow: "supervised", PreferenceRow: "pairs", UnpairedRow: "unpaired"}


def row_kind(row: Row) -> str:
    """"supervised", "pairs" (chosen/rejected) or "unpaired" (completion/label)."""
    return ROW_KINDS[type(row)]


def parse_row(data: Any) -> Row:
    """Validate one decoded JSON value as a row; raises pydantic's ValidationError."""
    if not isinstance(data, dict):
        raise ValueError(f"a row must be a JSON object, got {type(data).__name__}")
    if "chosen" in data or "rejected" in data:
        return PreferenceRow.model_validate(data)
    if "completion" in data or "label" in data:
        return UnpairedRow.model_validate(data)
    if "messages" in data:
        return ChatRow.model_validate(data)
    return InstructionRow.model_validate(data)


@dataclass
class RowProblem:
    """Why a row is invalid. A row of the file has its line there; a row refused before it reached
    the file (a bad record of an import) names the source and where in it (`location`, "line 3"),
    with `line` its line there when it has one."""

    line: int | None
    field: str
    reason: str
    source: str | None = None
    location: str | None = None


@dataclass
class ValidationReport:
    """What `validate_file` found. Counts are complete; the lists hold the first MAX_LISTED of each."""

    path: str
    total_rows: int = 0
    valid_rows: int = 0
    invalid_count: int = 0
    invalid: list[RowProblem] = field(default_factory=list)
    duplicate_count: int = 0
    duplicates: list[dict[str, int]] = field(default_factory=list)  # {"line", "duplicate_of"}
    empty_output_count: int = 0
    empty_outputs: list[int] = field(default_factory=list)
    over_context_count: int = 0
    over_context: list[dict[str, int]] = field(default_factory=list)  # {"line", "tokens"}
    max_seq_length: int | None = None
    token_lengths: list[int] = field(default_factory=list)  # of valid rows, when tokens were counted

    @property
    def ok(self) -> bool:
        """True when training can use this file: at least one valid row that fits the context."""
        return self.usable_rows > 0

    @property
    def usable_rows(self) -> int:
        return self.valid_rows - self.over_context_count

    def summary(self) -> str:
        parts = [f"{self.valid_rows} valid of {self.total_rows} rows"]
        if self.invalid_count:
            parts.append(f"{self.invalid_count} invalid")
        if self.duplicate_count:
            parts.append(f"{self.duplicate_count} exact duplicates")
        if self.empty_output_count:
            parts.append(f"{self.empty_output_count} with an empty output")
        if self.over_context_count:
            parts.append(f"{self.over_context_count} longer than {self.max_seq_length} tokens")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # source and location only for the rows an import refused, which have them
        data["invalid"] = [{k: v for k, v in p.items() if v is not None or k not in ("source", "location")}
                           for p in data["invalid"]]
        data["ok"] = self.ok
        data["usable_rows"] = self.usable_rows
        data["summary"] = self.summary()
        return data


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, raw


def describe_errors(error: ValidationError) -> list[tuple[str, str]]:
    """(field, what is wrong) for each problem pydantic found in a row, worded for people."""
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after")) or "row"
        message = item["msg"]
        if item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"].endswith("_type"):
            message = f"{message} (got {type(item.get('input')).__name__})"
        problems.append((where, message))
    return problems


def _decode_line(number: int, raw: bytes) -> tuple[Any, RowProblem | None]:
    """Return (decoded JSON value, None) or (None, the problem)."""
    if len(raw) > MAX_ROW_BYTES:
        return None, RowProblem(
            number, "row",
            f"row is {len(raw) / 1e6:.1f} MB; rows over {MAX_ROW_BYTES / 1e6:.0f} MB are refused "
            "(split long documents into several examples)",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, RowProblem(number, "row", f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
    try:
        return bounded_json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, RowProblem(number, "row", f"not valid JSON: {exc.msg} at column {exc.colno}")


def iter_parsed(path: str | Path) -> Iterator[tuple[int, Row | None, list[RowProblem]]]:
    """Yield (line number, row or None, problems) for each non-blank line of a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise TinyforgeError(f"{path}: no such file")
    for number, raw in _iter_lines(path):
        if not raw.strip():
            continue
        data, problem = _decode_line(number, raw)
        if problem:
            yield number, None, [problem]
            continue
        try:
            yield number, parse_row(data), []
        except ValidationError as exc:
            yield number, None, [RowProblem(number, f, r) for f, r in describe_errors(exc)]
        except ValueError as exc:
            yield number, None, [RowProblem(number, "row", str(exc))]


def _fingerprint(row: Row) -> bytes:
    # Metadata is not part of what the model sees, so two rows differing only there are duplicates.
    seen = row.canonical() if isinstance(row, (PreferenceRow, UnpairedRow)) else row.to_messages()
    canonical = json.dumps(seen, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


_KIND_WORDS = {"supervised": "a supervised row (instruction/output or messages)",
               "pairs": "a preference pair (chosen/rejected)", "unpaired": "an unpaired preference (completion/label)"}


class ReportBuilder:
    """Builds a ValidationReport row by row.

    `validate_file` feeds it the rows it reads back from a file; a writer that has just parsed
    each row itself (the ingest pipeline) feeds it those, so that a file is validated once and
    its report is the same as `validate_file` would give.
    """

    def __init__(self, path: str | Path, count_tokens: Callable[[Row], int] | None = None,
                 max_seq_length: int | None = None):
        self.report = ValidationReport(path=str(path), max_seq_length=max_seq_length)
        self._count_tokens = count_tokens
        self._seen: dict[bytes, int] = {}  # only a 16-byte fingerprint per row, to find duplicates
        self._kind: tuple[str, int] | None = None  # the file's kind of row and the line that set it

    def add_rejected(self, problems: list[RowProblem], count: int) -> None:
        """Count `count` rows refused before they reached the file (an import's bad records, of
        which `problems` lists the first ones) as invalid rows, so that the report accounts for
        every row of the source."""
        report = self.report
        report.total_rows += count
        report.invalid_count += count
        report.invalid.extend(problems[: MAX_LISTED - len(report.invalid)])

    def add(self, number: int, row: Row | None, problems: list[RowProblem] = ()) -> None:
        """Count line `number`: a valid `row`, or None and the problems that made it invalid."""
        report = self.report
        if row is not None:
            if self._kind is None:
                self._kind = (row_kind(row), number)
            elif row_kind(row) != self._kind[0]:
                problems = [RowProblem(number, "row", f"this row is {_KIND_WORDS[row_kind(row)]} but line "
                                       f"{self._kind[1]} is {_KIND_WORDS[self._kind[0]]}; a dataset holds one "
                                       "kind of row, put the others in a file of their own")]
                row = None
        report.total_rows += 1
        if row is None:
            report.invalid_count += 1
            if len(report.invalid) < MAX_LISTED:
                report.invalid.extend(problems[: MAX_LISTED - len(report.invalid)])
            return
        report.valid_rows += 1
        key = _fingerprint(row)
        if key in self._seen:
            report.duplicate_count += 1
            if len(report.duplicates) < MAX_LISTED:
                report.duplicates.append({"line": number, "duplicate_of": self._seen[key]})
        else:
            self._seen[key] = number
        if not row.output_text().strip():
            report.empty_output_count += 1
            if len(report.empty_outputs) < MAX_LISTED:
                report.empty_outputs.append(number)
        if self._count_tokens is not None:
            length = self._count_tokens(row)
            report.token_lengths.append(length)
            if report.max_seq_length is not None and length > report.max_seq_length:
                report.over_context_count += 1
                if len(report.over_context) < MAX_LISTED:
                    report.over_context.append({"line": number, "tokens": length})


def validate_file(path: str | Path, count_tokens: Callable[[Row], int] | None = None,
                  max_seq_length: int | None = None,
                  rejected: tuple[list[RowProblem], int] = ([], 0)) -> ValidationReport:
    """Check every row of a JSONL dataset; with `count_tokens` (a row's length as the model sees
    it: `functools.partial(tinyforge.ml.formatting.count_tokens, tokenizer)`), also measure token
    lengths. `rejected`: the rows its import refused (listed problems, count), counted as invalid rows.

    Memory stays small whatever the file size: lines are read one at a time and only a 16-byte
    fingerprint per row is kept to find duplicates.
    """
    builder = ReportBuilder(path, count_tokens, max_seq_length)
    builder.add_rejected(*rejected)
    for number, row, problems in iter_parsed(path):
        builder.add(number, row, problems)
    return builder.report


def read_rows(path: str | Path) -> list[tuple[int, Row]]:
    """The valid rows of a dataset with their line numbers; raises when there are none.

    Invalid rows are skipped here: `validate_file` is where they are reported.
    """
    rows = [(number, row) for number, row, _ in iter_parsed(path) if row is not None]
    if not rows:
        report = validate_file(path)
        if report.total_rows == 0:
            raise TinyforgeError(f"{path}: the file is empty; it needs JSONL rows with instruction/output or messages")
        first = report.invalid[0]
        raise TinyforgeError(
            f"{path}: no valid rows ({report.invalid_count} invalid); first problem: "
            f"line {first.line}, {first.field}: {first.reason}"
        )
    return rows


def format_problems(report: ValidationReport, limit: int = 20) -> str:
    """Human-readable lines for the CLI."""
    lines = [f"{report.path}: {report.summary()}"]
    for p in report.invalid[:limit]:
        lines.append(f"  {f'{p.source}, {p.location}' if p.source else f'line {p.line}'}: {p.field}: {p.reason}")
    if report.invalid_count > limit:
        lines.append(f"  ... and {report.invalid_count - limit} more invalid rows")
    for d in report.duplicates[:limit]:
        lines.append(f"  line {d['line']}: duplicate of line {d['duplicate_of']}")
    for n in report.empty_outputs[:limit]:
        lines.append(f"  line {n}: output is empty")
    for o in report.over_context[:limit]:
        lines.append(f"  line {o['line']}: {o['tokens']} tokens, over max_seq_length {report.max_seq_length}")
    return "\n".join(lines)
