"""Eval set rows and their files.

A row: {"input": "a prompt" | [chat messages], "reference": "an answer" (optional),
"must_include": ["key fact", ...] (optional), "tags": ["tag", ...] (optional), "id": "..." (optional)}.

Files are JSONL (one row per line; a training row in instruction or chat form is read as its prompt
and expected answer) or CSV (columns input, reference, must_include, tags; lists separated by "|").
Every problem is reported with its line and field, and a file with any problem or no rows is refused:
an evaluation over half a set would be compared with one over the whole of it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tinyforge.errors import TinyforgeError
from tinyforge.ml.formatting import expected_reply, prompt_messages
from tinyforge.ml.schema import Message, RowProblem, _decode_line, describe_errors, parse_row

MAX_LISTED_PROBLEMS = 50
CSV_COLUMNS = ("input", "reference", "must_include", "tags", "id")


class EvalRow(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    input: str | list[Message]
    reference: str | None = None
    must_include: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    id: str | None = None

    @field_validator("input")
    @classmethod
    def input_not_blank(cls, value):
        if isinstance(value, str) and not value.strip():
            raise ValueError("input is blank")
        if isinstance(value, list):
            if not value:
                raise ValueError("input has no messages")
            if value[-1].role != "user":
                raise ValueError("the last message of input must be the user's")
        return value

    @field_validator("must_include")
    @classmethod
    def facts_not_blank(cls, value):
        if any(not fact.strip() for fact in value):
            raise ValueError("must_include holds a blank string")
        return value

    def messages(self) -> list[dict[str, str]]:
        """The conversation sent to a target."""
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        return [{"role": m.role, "content": m.content} for m in self.input]

    def prompt_text(self) -> str:
        """The last user message: what a person reads as the question."""
        return self.messages()[-1]["content"]

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return {key: value for key, value in data.items() if key == "input" or value not in (None, [])}


class EvalSetError(TinyforgeError):
    """The file is not a usable eval set; `problems` lists each one with its line and field."""

    def __init__(self, source: str, problems: list[RowProblem], total: int):
        self.problems = problems
        listed = "; ".join(f"line {p.line} {p.field}: {p.reason}" for p in problems[:5])
        more = f" (and {total - 5} more)" if total > 5 else ""
        super().__init__(f"{source}: {total} problem{'s' if total != 1 else ''}: {listed}{more}" if problems
                         else f"{source}: the eval set has no rows")


def row_from_data(data: Any) -> EvalRow:
    """An eval row from a decoded JSON value: the eval form, or a training row's prompt and answer."""
    if isinstance(data, dict) and ("instruction" in data or "messages" in data):
        row = parse_row(data)
        return EvalRow(input=[Message(**m) for m in prompt_messages(row)], reference=expected_reply(row) or None)
    return EvalRow.model_validate(data)


def _rows(numbered: Iterable[tuple[int, Any, RowProblem | None]], source: str) -> list[EvalRow]:
    rows: list[EvalRow] = []
    problems: list[RowProblem] = []
    total = 0
    for number, data, problem in numbered:
        if problem is None:
            try:
                rows.append(row_from_data(data))
                continue
            except ValidationError as exc:
                found = [RowProblem(number, f, m.removeprefix("Value error, ")) for f, m in describe_errors(exc)]
            except ValueError as exc:
                found = [RowProblem(number, "row", str(exc))]
        else:
            found = [problem]
        total += len(found)
        problems.extend(found[: max(0, MAX_LISTED_PROBLEMS - len(problems))])
    if total or not rows:
        raise EvalSetError(source, problems, total)
    return rows


def _jsonl(raw: bytes) -> Iterator[tuple[int, Any, RowProblem | None]]:
    for number, line in enumerate(raw.splitlines(), start=1):
        if line.strip():
            data, problem = _decode_line(number, line)
            yield number, data, problem


def _csv(raw: bytes) -> Iterator[tuple[int, Any, RowProblem | None]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield 1, None, RowProblem(1, "file", f"not valid UTF-8 (byte {exc.start})")
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    unknown = [c for c in reader.fieldnames or [] if c not in CSV_COLUMNS]
    if "input" not in (reader.fieldnames or []) or unknown:
        what = f"unknown columns {unknown}" if unknown else "no input column"
        yield 1, None, RowProblem(1, "header", f"{what}; the columns are {', '.join(CSV_COLUMNS)}")
        return
    for record in reader:
        data: dict[str, Any] = {}
        for column, value in record.items():
            value = (value or "").strip()
            if column in ("must_include", "tags"):
                data[column] = [part.strip() for part in value.split("|") if part.strip()]
            elif value or column == "input":
                data[column] = value
        yield reader.line_num, data, None


def parse_eval_file(raw: bytes, filename: str) -> list[EvalRow]:
    """Rows of an uploaded eval set (.jsonl or .csv, by name); EvalSetError lists what is wrong."""
    suffix = Path(filename).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _rows(_jsonl(raw), filename)
    if suffix == ".csv":
        return _rows(_csv(raw), filename)
    raise TinyforgeError(f"{filename}: an eval set is a .jsonl or .csv file")


def read_eval_file(path: str | Path) -> list[EvalRow]:
    path = Path(path)
    if not path.is_file():
        raise TinyforgeError(f"{path}: no such file")
    return parse_eval_file(path.read_bytes(), str(path))


def parse_rows(items: Iterable[Any], source: str = "rows") -> list[EvalRow]:
    """Rows given as decoded JSON values (an API request); problems are numbered from 1."""
    return _rows(((i, data, None) for i, data in enumerate(items, start=1)), source)


def to_jsonl(rows: Iterable[EvalRow]) -> bytes:
    """The canonical file of an eval set version: its sha256 names its content."""
    return b"".join(json.dumps(row.to_dict(), ensure_ascii=False, sort_keys=True).encode() + b"\n" for row in rows)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


GENERAL_SET = Path(__file__).with_name("general.jsonl")


def general_rows() -> list[EvalRow]:
    """The shipped general eval set: short knowledge and instruction-following prompts, for
    seeing what a fine-tune cost in general ability (the forgetting check)."""
    return read_eval_file(GENERAL_SET)
