"""The ingest pipeline: a source -> a validated JSONL dataset file, with a report.

    report = ingest(FileSource("manual.pdf"), IngestOptions(recipe="sections"), "out.jsonl", progress)

Documents are chunked and turned into rows by a recipe; structured records are mapped field by
field. Then, for every row: scrubbing (optional), validation against the row schema
(tinyforge.ml.schema, once: the rows parsed here feed the schema's own report builder, so the
report is what `validate_file` would say of the file without reading it back), duplicate
removal (in batches: see cleaning.py), and a write. The file appears at `out_path` only when
the whole source was read: it is written beside it and renamed at the end, so a failed import
never leaves a half file where a dataset version is expected. `progress` is called a few times a
second with an IngestProgress; the CLI draws a bar with it, a worker stores it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tinyforge.connectors.chunking import chunk_blocks
from tinyforge.connectors.cleaning import Deduplicator, Scrubber, example_text
from tinyforge.connectors.mapping import FieldMapping, RowMapper
from tinyforge.connectors.knowledge import KnowledgeOptions
from tinyforge.connectors.recipes import QAOptions, Recipe
from tinyforge.connectors.records import BadRecord, Block, Row, Source, SourceError
from tinyforge.errors import TinyforgeError
from tinyforge.ml.schema import MAX_LISTED, MAX_ROW_BYTES, ReportBuilder, describe_errors, parse_row

# Rows wait in a batch for the duplicate check, which costs about the same for one row as for a
# batch; the byte bound keeps a batch of huge rows from holding much memory.
BATCH_ROWS, BATCH_BYTES = 64, 1 << 18
# One encoder for every row: json.dumps with options builds a new one per call.
_encode_json = json.JSONEncoder(ensure_ascii=False, default=str).encode


@dataclass
class IngestOptions:
    """How records become rows. Each field says what it does; defaults suit most imports."""

    mapping: dict[str, Any] | None = None  # structured: {"instruction": field, "output": field, ...}; None = detect
    recipe: str = "text"  # documents: "text", "sections", "qa" or "knowledge"
    chunk_chars: int = 2000  # documents: largest chunk, in characters
    overlap_chars: int = 200  # documents: characters of context repeated from the previous chunk
    qa: QAOptions | None = None  # the model for the "qa" recipe
    knowledge: KnowledgeOptions | None = None  # the teacher and knobs of the "knowledge" recipe
    eval_out: str | None = None  # knowledge: where to write the held-out fact check (JSONL); None: beside the output
    dedup: bool = True  # drop exact duplicates (case and whitespace folded)
    near_dedup: bool | None = None  # drop near duplicates; None = on for documents (but knowledge), off for structured
    near_threshold: float = 0.85  # estimated Jaccard similarity of word 3-grams above which rows are near duplicates
    scrub_emails: bool = False  # replace e-mail addresses with [EMAIL]
    scrub_phones: bool = False  # replace phone numbers with [PHONE]
    skip_bad_records: bool = False  # False: the first bad record stops the import; True: skip it, list it, go on

    def __post_init__(self) -> None:
        if not 0.5 <= self.near_threshold <= 1.0:
            raise TinyforgeError("the near-duplicate threshold must be between 0.5 and 1.0")


@dataclass
class IngestProgress:
    stage: str  # "reading" | "done"
    records_read: int
    examples_written: int
    fraction: float | None  # of the source read, when the source can tell
    chunks: int = 0  # documents: chunks done
    rows_dropped: int = 0  # knowledge: rows the grounding check dropped
    teacher_tokens: int = 0  # qa and knowledge: tokens the teacher was billed for


@dataclass
class IngestReport:
    """What an import did, with counts a user can check against the source."""

    source: str
    kind: str
    output: str = ""
    sha256: str = ""
    shape: str | None = None  # structured: the detected or given shape
    recipe: str | None = None  # documents: the recipe used
    records_read: int = 0
    chunks: int = 0
    examples_written: int = 0
    skipped_count: int = 0
    # The first MAX_LISTED of them: {"source", "location", "field" (or "row"), "reason"}. Every record of a
    # structured source is written, skipped or a duplicate: records_read = examples_written + skipped_count +
    # the duplicates.
    skipped: list[dict[str, str]] = field(default_factory=list)
    exact_duplicates: int = 0
    near_duplicates: int = 0
    near_dedup: bool = False
    emails_scrubbed: int = 0
    phones_scrubbed: int = 0
    chunks_without_heading: int = 0
    qa_failed_chunks: int = 0
    qa_failures: list[dict[str, str]] = field(default_factory=list)
    knowledge: dict[str, Any] | None = None  # the knowledge recipe's counts (KnowledgeStats)
    truncated_at_row_limit: bool = False
    seconds: float = 0.0
    validation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.examples_written} examples from {self.records_read} records of {self.source}"]
        for label, count in (("skipped", self.skipped_count), ("exact duplicates", self.exact_duplicates),
                             ("near duplicates", self.near_duplicates), ("e-mails scrubbed", self.emails_scrubbed),
                             ("phones scrubbed", self.phones_scrubbed), ("chunks without heading", self.chunks_without_heading),
                             ("chunks the model failed on", self.qa_failed_chunks)):
            if count:
                parts.append(f"{count} {label}")
        if self.knowledge:
            k = self.knowledge
            parts.append(f"{k['facts']} facts ({k['facts_from_chunk']} of them sentences the teacher's facts left "
                         f"out), {k['rows_dropped']} teacher replies dropped by the grounding check "
                         f"({k['answers_from_fact']} answered by their fact instead), "
                         f"{k['gap_fills']} gap-fill rows, "
                         f"{k['chunks_failed']} chunks failed, {k['teacher_tokens']} teacher tokens, "
                         f"{k['heldout_questions']} held-out fact-check questions")
            if k["budget_exhausted"]:
                parts.append(f"stopped at the teacher token budget after {k['chunks_done']} chunks (the rest of "
                             "the document was not used)")
        if self.truncated_at_row_limit:
            parts.append("stopped at the row limit")
        return ", ".join(parts)


ProgressCallback = Callable[[IngestProgress], None]


def ingest(source: Source, options: IngestOptions, out_path: str | os.PathLike,
           progress: ProgressCallback | None = None) -> IngestReport:
    """Read `source`, write its examples to `out_path` as JSONL, and report what happened.

    Raises TinyforgeError (a SourceError naming the source and record where one is at fault)
    when the source cannot be read, a record is bad and skipping was not asked for, or no
    example came out. Nothing is left at `out_path` then.
    """
    return _Ingestion(source, options, Path(out_path), progress).run()


class _Ingestion:
    """One import: its report filled in as the steps go (examples -> checked rows -> batches
    written), the partial file, the running digest and the progress clock."""

    def __init__(self, source: Source, options: IngestOptions, out: Path, progress: ProgressCallback | None):
        self.source, self.options, self.out, self.progress = source, options, out, progress
        self.started = time.monotonic()
        self.partial = out.with_name(out.name + ".partial")
        self.documents = documents = source.kind == "document"
        self.report = IngestReport(source=source.name, kind=source.kind, output=str(out),
                                   recipe=options.recipe if documents else None)
        journal = out.with_name(out.name + ".journal")  # knowledge: finished chunks, kept until the import succeeds
        self.recipe = Recipe(options.recipe, qa=options.qa, knowledge=options.knowledge, journal=str(journal)) \
            if documents else None
        self.knowledge = self.recipe.knowledge_generator if self.recipe else None
        self.mapper = None if documents else RowMapper(
            FieldMapping.parse(options.mapping) if options.mapping else None)
        # The knowledge recipe's rows share their answer by design (several questions per fact): near-duplicate
        # removal, which compares whole rows, would keep one question per fact.
        self.report.near_dedup = (documents and options.recipe != "knowledge") if options.near_dedup is None \
            else options.near_dedup
        self.dedup = Deduplicator(exact=options.dedup, near=self.report.near_dedup, threshold=options.near_threshold)
        self.scrubber = Scrubber(options.scrub_emails, options.scrub_phones)
        self.digest = hashlib.sha256()
        self.last_report = 0.0
        self.validation = ReportBuilder(out)
        self.pending: list[tuple[bytes, str, Any]] = []  # (JSONL line, text for the duplicate check, parsed row)
        self.pending_bytes = 0

    def run(self) -> IngestReport:
        report = self.report
        try:
            with open(self.partial, "wb") as sink:
                for where_source, location, example in self.examples():
                    if self.scrubber.active:
                        example = self.scrubber.example(example)
                    line, row, problem, fields = self.checked(example)
                    if problem:
                        if not self.options.skip_bad_records:
                            raise SourceError(where_source, f"cannot become a dataset row: {problem}", location, fields)
                        self.skip(where_source, location, problem, fields)
                        continue
                    self.pending.append((line, example_text(example), row))
                    self.pending_bytes += len(line)
                    if len(self.pending) >= BATCH_ROWS or self.pending_bytes >= BATCH_BYTES:
                        self.write_pending(sink)
                self.write_pending(sink)
            self.finish_report()
            if report.examples_written == 0:
                raise TinyforgeError(f"{self.source.name}: no examples came out of {report.records_read} records"
                                     + _why_nothing(report))
            report.validation = self.validation.report.to_dict()
            os.replace(self.partial, self.out)
        except BaseException:
            self.partial.unlink(missing_ok=True)
            raise
        report.sha256 = self.digest.hexdigest()
        report.seconds = round(time.monotonic() - self.started, 3)
        self.tell("done", force=True)
        return report

    def tell(self, stage: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress and (force or now - self.last_report >= 0.25):
            self.last_report = now
            report, stats = self.report, self.knowledge.stats if self.knowledge else None
            self.progress(IngestProgress(stage, report.records_read, report.examples_written, self.source.progress(),
                                         report.chunks, stats.rows_dropped if stats else 0,
                                         stats.teacher_tokens if stats else 0))

    def skip(self, where_source: str, location: str, reason: str, field: str | None = None) -> None:
        self.report.skipped_count += 1
        if len(self.report.skipped) < MAX_LISTED:
            self.report.skipped.append({"source": where_source, "location": location, "field": field or "row",
                                        "reason": reason})

    def examples(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(source, location, row) for every example, before cleaning."""
        options = self.options
        if self.documents:
            chunks = chunk_blocks(self.counted_blocks(), options.chunk_chars, options.overlap_chars)
            for chunk, rows in self.recipe.apply(chunks):
                self.report.chunks += 1
                for example in rows:
                    yield chunk.source, chunk.location, example
                self.tell("reading")
            return
        for row in self.source.records():
            self.report.records_read += 1
            if isinstance(row, BadRecord):
                if not options.skip_bad_records:
                    raise row.error()
                self.skip(row.source, row.location, row.problem)
                continue
            try:
                example = self.mapper(row)
            except SourceError as exc:
                if not options.skip_bad_records:
                    raise
                self.skip(row.source, row.location, exc.problem, exc.field)
                continue
            yield row.source, row.location, example
            self.tell("reading")

    def counted_blocks(self) -> Iterator[Block]:
        for block in self.source.records():
            self.report.records_read += 1
            yield block
            self.tell("reading")

    @staticmethod
    def checked(example: dict[str, Any]) -> tuple[bytes | None, Any, str | None, str | None]:
        """(JSONL line, parsed row, None, None), or what keeps the example from being a dataset
        row and the fields at fault."""
        try:
            line = _encode_json(example).encode() + b"\n"
        except UnicodeEncodeError as exc:
            return None, None, (f"holds a lone surrogate ({exc.object[exc.start:exc.end]!a}), "
                                "which is not text and cannot be written as UTF-8"), None
        if len(line) > MAX_ROW_BYTES:
            return line, None, f"the example is {len(line)} bytes, over the {MAX_ROW_BYTES}-byte row limit", None
        try:
            return line, parse_row(example), None, None
        except ValidationError as exc:
            described = describe_errors(exc)
            fields = ", ".join(dict.fromkeys(name for name, _ in described))
            return line, None, "; ".join(f"{name}: {message}" for name, message in described), fields
        except ValueError as exc:
            return line, None, str(exc), None

    def write_pending(self, sink) -> None:
        duplicates = self.dedup.duplicates([text for _, text, _ in self.pending])
        kept = []
        for (line, _, row), duplicate in zip(self.pending, duplicates):
            if not duplicate:
                kept.append(line)
                self.report.examples_written += 1
                self.validation.add(self.report.examples_written, row)
        written = b"".join(kept)
        sink.write(written)
        self.digest.update(written)
        self.pending.clear()
        self.pending_bytes = 0

    def finish_report(self) -> None:
        """The counts the steps kept for themselves (the knowledge recipe also writes its fact checks)."""
        report, recipe, knowledge = self.report, self.recipe, self.knowledge
        report.shape = self.mapper.shape if self.mapper else None
        report.exact_duplicates, report.near_duplicates = self.dedup.exact_duplicates, self.dedup.near_duplicates
        report.emails_scrubbed, report.phones_scrubbed = self.scrubber.emails_scrubbed, self.scrubber.phones_scrubbed
        report.truncated_at_row_limit = bool(getattr(self.source, "truncated", False))
        if recipe:
            report.chunks_without_heading = recipe.chunks_without_heading
            if recipe.generator:
                report.qa_failed_chunks = recipe.generator.failed_chunks
                report.qa_failures = recipe.generator.failures
            if knowledge:
                knowledge.finish(self.options.eval_out or self.out.with_name(self.out.stem + ".facts.jsonl"))
                report.knowledge = asdict(knowledge.stats)


def _why_nothing(report: IngestReport) -> str:
    if report.skipped_count:
        return f" ({report.skipped_count} skipped; first: {report.skipped[0]['location']}: {report.skipped[0]['reason']})"
    if report.chunks_without_heading:
        return " (the sections recipe needs headings, and the document has none: try the text recipe)"
    if report.qa_failed_chunks:
        return f" (the model failed on every chunk; first: {report.qa_failures[0]['reason']})"
    if report.knowledge:
        k = report.knowledge
        if k["budget_exhausted"]:
            return f" (the teacher token budget was spent after {k['chunks_done']} chunks)"
        if k["failures"]:
            return f" ({k['chunks_failed']} chunks failed; first: {k['failures'][0]['reason']})"
        if k["rows_dropped"]:
            return f" (the grounding check dropped all {k['rows_dropped']} rows; first: {k['dropped'][0]['reason']})"
        if k["chunks_without_facts"]:
            return " (the teacher found no facts in the document)"
    if report.records_read == 0:
        return " (the source is empty)"
    return ""
