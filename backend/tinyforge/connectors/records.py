"""What every connector yields: raw records that know where they came from.

A document source (TXT, Markdown, PDF, DOCX, Google Docs) yields `Block`s: headings,
paragraphs and tables in reading order, with the heading path above them and the page they
sit on. A structured source (CSV, JSON, JSONL, SQL) yields `Row`s: one dict of fields per
record, and a `BadRecord` for a record it could not read when the rest of it can still be
read. All carry `source` (a file path, a redacted database URL, a Google Doc id) and
`location` (line, row, page, paragraph), which every error message and every example's
metadata repeats, so a bad example can be traced back to the byte it came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from tinyforge.errors import TinyforgeError


@dataclass(frozen=True, slots=True)
class Block:
    """A piece of a document: a heading, a paragraph or a table, in reading order."""

    source: str
    location: str
    kind: str  # "heading" | "paragraph" | "table"
    text: str
    heading_path: tuple[str, ...] = ()  # headings above this block, outermost first
    level: int = 0  # heading level (1 = top) for headings, 0 otherwise
    page: int | None = None

    def __reduce__(self):
        # Blocks cross a pipe from the parsing child by the thousand; the dataclass default
        # (a field list rebuilt per object) costs several times more than calling the class.
        return Block, (self.source, self.location, self.kind, self.text, self.heading_path, self.level, self.page)


@dataclass(frozen=True, slots=True)
class Row:
    """One record of a structured source: field name -> value."""

    source: str
    location: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record of a structured source that could not be read (a ragged CSV line, a JSONL line
    that is not a JSON object) while the records after it can: the pipeline lists it and goes
    on, or stops at it (IngestOptions.skip_bad_records)."""

    source: str
    location: str
    problem: str

    def error(self) -> SourceError:
        return SourceError(self.source, self.problem, self.location)


RawRecord = Block | Row | BadRecord


class Source(Protocol):
    """A connector: something that yields raw records.

    `kind` is "document" (yields Blocks, turned into examples by chunking and a recipe) or
    "structured" (yields Rows, mapped field by field). `progress()` is the fraction of the
    source read so far, or None when the source cannot tell (a SQL cursor).
    """

    name: str
    kind: str

    def records(self) -> Iterator[RawRecord]: ...

    def progress(self) -> float | None: ...


class SourceError(TinyforgeError):
    """A source could not be read: names the source, the record and what is wrong (and the field
    at fault, where one is)."""

    def __init__(self, source: str, problem: str, location: str | None = None, field: str | None = None):
        self.source = source
        self.location = location
        self.problem = problem
        self.field = field
        where = f"{source}, {location}" if location else source
        super().__init__(f"{where}: {problem}")
