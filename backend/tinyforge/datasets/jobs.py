"""The ingest job (RQ queue `ingest`): a pending dataset version -> a ready (or failed) one.

    ingest_version(version_id)

Claims the version (pending -> ingesting, a conditional update, so a duplicate delivery does
nothing), reads each of its sources through the connectors pipeline into a private work folder,
joins the parts into the version's one JSONL file (written atomically through the storage
module, with its sha256), validates it, and marks the version ready with its statistics and
validation report. Progress, a heartbeat and log lines go to the database as it goes.

Any problem with the data fails only this version, with an error naming the source and the
record; earlier versions live in their own files and are never touched. A version that stops
being active under the job (deleted, or failed by the reconciler for a stale heartbeat) makes
the job stop and leave no file behind.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from pathlib import Path, PurePosixPath


from django.conf import settings

from tinyforge.connectors.pipeline import IngestProgress, IngestReport, ingest
from tinyforge.connectors.records import SourceError
from tinyforge.core import storage
from tinyforge.core.heartbeat import Heartbeat
from tinyforge.core.events import record_event
from tinyforge.core.models import EventLevel, event_links_to
from tinyforge.datasets import lifecycle
from tinyforge.datasets.analysis import rejected_rows, validation_report
from tinyforge.datasets.importing import version_sources, ingest_options
from tinyforge.datasets.models import DatasetVersion, DatasetVersionStatus
from tinyforge.training import base_models
from tinyforge.errors import TinyforgeError

logger = logging.getLogger(__name__)

# Reading the sources is this share of the progress bar; validation (and the token report) the rest.
READING_SHARE = 0.85
PROGRESS_INTERVAL_S = 1.0
MAX_SKIP_EVENTS = 20


class IngestAbandoned(Exception):
    """The version is no longer being imported (deleted, or failed by the reconciler)."""


class VersionLog:
    """Log lines of one version's import, written to the event table."""

    def __init__(self, version: DatasetVersion):
        self.project_id = version.dataset.project_id
        self.version_id = version.pk

    def write(self, message: str, level: str = EventLevel.INFO, **data) -> None:
        record_event(project_id=self.project_id, **event_links_to(DatasetVersion, self.version_id), source="ingest",
                     message=message, level=level, data=data)


class ProgressWriter:
    """The pipeline's progress callback: progress, message and heartbeat, at most once a second."""

    def __init__(self, version_id: int, index: int, total: int):
        self.version_id, self.index, self.total = version_id, index, total
        self.last_write = 0.0

    def __call__(self, update: IngestProgress) -> None:
        now = time.monotonic()
        if now - self.last_write < PROGRESS_INTERVAL_S and update.stage != "done":
            return
        self.last_write = now
        within = update.fraction if update.fraction is not None else 0.0
        overall = READING_SHARE * (self.index + min(max(within, 0.0), 1.0)) / self.total
        message = f"{update.stage}: {update.records_read} records read, {update.examples_written} examples"
        if update.teacher_tokens:
            message += (f", {update.chunks} chunks done, {update.rows_dropped} teacher replies dropped by the grounding check, "
                        f"{update.teacher_tokens} teacher tokens")
        if self.total > 1:
            message = f"source {self.index + 1} of {self.total}, {message}"
        self.heartbeat(overall, message)

    def heartbeat(self, fraction: float, message: str) -> None:
        if not lifecycle.record_progress(self.version_id, fraction, message):
            raise IngestAbandoned(self.version_id)


def ingest_version(version_id: int) -> str:
    """Import a pending version; returns its final status (or why nothing was done)."""
    version = (DatasetVersion.all_teams.select_related("dataset", "connection", "parent__dataset")
               .filter(pk=version_id).first())
    if version is None:
        logger.info("ingest job for version %s: the version is gone", version_id)
        return "missing"
    try:
        lifecycle.mark_ingesting(version_id)
    except lifecycle.InvalidTransition as exc:
        # A duplicate delivery, or a version cancelled before the job started.
        logger.info("ingest job for version %s: %s", version_id, exc)
        return f"skipped ({exc.current})"
    log = VersionLog(version)
    log.write(f"import of {version.dataset.name} v{version.number} started ({version.get_source_kind_display()})")
    workdir = storage.folder(_work_key(version))
    with Heartbeat(lambda: lifecycle.record_heartbeat(version_id), f"heartbeat-version-{version_id}"):
        try:
            _import(version, workdir, log)
            return DatasetVersionStatus.READY
        except IngestAbandoned:
            logger.info("ingest job for version %s: the version stopped being active; stopping", version_id)
            _remove_unfinished_file(version)
            return "abandoned"
        except TinyforgeError as exc:
            _fail(version, log, str(exc), exc)
            return DatasetVersionStatus.FAILED
        except Exception as exc:
            logger.exception("ingest job for version %s crashed", version_id)
            _fail(version, log, f"the import failed unexpectedly ({type(exc).__name__}: {exc}); the error was "
                                "logged for the administrator", exc)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _import(version: DatasetVersion, workdir: Path, log: VersionLog) -> None:
    config = version.source_config
    options = ingest_options(config, version.dataset.project.team_id)
    sources = version_sources(version, workdir)
    if not sources:
        raise TinyforgeError("the import has no source (no files, query or documents)")
    parts: list[tuple[Path, IngestReport]] = []
    for index, source in enumerate(sources):
        log.write(f"reading {source.name}")
        part = workdir / f"part-{index:04d}.jsonl"
        report = ingest(source, options, part, ProgressWriter(version.pk, index, len(sources)))
        parts.append((part, report))
        log.write(f"{source.name}: {report.summary()}", report={k: v for k, v in report.to_dict().items()
                                                                       if k not in ("skipped", "validation", "output")})
        for skipped in report.skipped[:MAX_SKIP_EVENTS]:
            log.write(f"skipped {skipped['source']}, {skipped['location']}: {skipped['reason']}", EventLevel.WARNING,
                      **skipped)
    lifecycle.mark_validating(version.pk)
    ProgressWriter(version.pk, 0, 1).heartbeat(READING_SHARE, "joining and validating")
    sha256, size = _write_version_file(version.storage_key, [part for part, _ in parts])
    base_model, max_seq_length = config.get("base_model") or None, config.get("max_seq_length") or None
    if base_model:
        log.write(f"measuring token lengths with the tokenizer of {base_model}")
    folder = str(base_models.folder(base_model, version.dataset.project.team_id)) if base_model else None
    stats = _statistics([r for _, r in parts], size)
    rejected = rejected_rows(stats)
    report = validation_report(storage.path(version.storage_key), base_model, max_seq_length, model_folder=folder,
                               rejected=rejected)
    stats.update(rows=report["total_rows"] - rejected[1], token_histogram=report.get("token_histogram"))
    log.write(f"validation: {report['summary']}",
              EventLevel.WARNING if report["invalid_count"] or report["over_context_count"] else EventLevel.INFO)
    fact_check = [Path(r.knowledge["eval_out"]) for _, r in parts if r.knowledge and r.knowledge["eval_out"]]
    if fact_check:
        stats["fact_check"] = _save_fact_check(version, fact_check)
        log.write(f"held-out fact check: {stats['fact_check']['questions']} questions saved as eval set "
                  f"{stats['fact_check']['eval_set_name']}")
    lifecycle.mark_ready(version.pk, storage_key=version.storage_key, sha256=sha256, size_bytes=size,
                         row_count=stats["rows"], stats=stats, validation_report=report)
    log.write(f"version {version.number} is ready: {stats['rows']} rows, sha256 {sha256[:12]}"
              + (f" ({rejected[1]} bad rows skipped: the report lists them)" if rejected[1] else ""))


def _save_fact_check(version: DatasetVersion, files: list[Path]) -> dict:
    """The knowledge recipe's held-out questions as a version of the eval set "<dataset> fact check", so
    runs trained on this version can be scored on questions they never saw."""
    from tinyforge.evals.models import EvalSet, EvalSource
    from tinyforge.evals.services import add_version
    from tinyforge.evaluation.sets import read_eval_file

    rows = [row for path in files for row in read_eval_file(path)]
    name = f"{version.dataset.name} fact check"[:100]
    eval_set, _ = EvalSet.all_teams.get_or_create(
        project_id=version.dataset.project_id, name=name,
        defaults={"description": f"Held-out questions written with the knowledge recipe from {version.dataset.name}; "
                                 "none of them is a training row.", "created_by": version.created_by})
    eval_version = add_version(None, eval_set, rows, source_kind=EvalSource.DATASET_VERSION,
                               source={"dataset_version": version.pk, "dataset": version.dataset.name,
                                       "number": version.number, "recipe": "knowledge"})
    return {"eval_set": eval_set.pk, "eval_set_name": name, "eval_set_version": eval_version.pk,
            "eval_set_version_number": eval_version.number, "questions": len(rows)}


def _write_version_file(key: str, parts: list[Path]) -> tuple[str, int]:
    """Join the parts into the version's file (atomically: readers see all of it or nothing)."""
    digest, size = hashlib.sha256(), 0
    with storage.atomic_write(key) as sink:
        for part in parts:
            with open(part, "rb") as source:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    sink.write(chunk)
    return digest.hexdigest(), size


def _statistics(reports: list[IngestReport], size: int) -> dict:
    """What the import did, summed over its sources, with one entry per source (its skipped
    records listed as the pipeline lists them: the version's report counts them as invalid rows)."""
    totals = {name: sum(getattr(r, name) for r in reports) for name in (
        "records_read", "chunks", "examples_written", "skipped_count", "exact_duplicates", "near_duplicates",
        "emails_scrubbed", "phones_scrubbed", "chunks_without_heading", "qa_failed_chunks")}
    return {
        **totals,
        "size_bytes": size,
        "seconds": round(sum(r.seconds for r in reports), 3),
        "truncated_at_row_limit": any(r.truncated_at_row_limit for r in reports),
        "sources": [{"source": r.source, "kind": r.kind, "shape": r.shape, "recipe": r.recipe,
                     "records_read": r.records_read, "examples_written": r.examples_written,
                     "skipped_count": r.skipped_count, "skipped": r.skipped,
                     "exact_duplicates": r.exact_duplicates, "near_duplicates": r.near_duplicates,
                     "emails_scrubbed": r.emails_scrubbed, "phones_scrubbed": r.phones_scrubbed,
                     "qa_failures": r.qa_failures[:20], "truncated_at_row_limit": r.truncated_at_row_limit,
                     "knowledge": r.knowledge}
                    for r in reports],
    }


def _fail(version: DatasetVersion, log: VersionLog, message: str, exc: BaseException) -> None:
    where = {"source": exc.source, "location": exc.location, "problem": exc.problem} \
        if isinstance(exc, SourceError) else {}
    _remove_unfinished_file(version)
    try:
        lifecycle.mark_failed(version.pk, message)
    except (lifecycle.InvalidTransition, DatasetVersion.DoesNotExist) as late:
        logger.info("ingest job for version %s could not record its failure: %s", version.pk, late)
        return
    log.write(f"import failed: {message}", EventLevel.ERROR, **where)


def _remove_unfinished_file(version: DatasetVersion) -> None:
    status = DatasetVersion.all_teams.filter(pk=version.pk).values_list("status", flat=True).first()
    if status != DatasetVersionStatus.READY and version.storage_key:
        storage.delete(version.storage_key)


def retry_lost_import(version: DatasetVersion, silent: int) -> str | None:
    """Start a knowledge import whose worker died again as its next attempt, within INGEST_MAX_RETRIES:
    the journal of finished chunks its worker left in the work folder makes it resume where it
    stopped. The event's message, or None when it is not retried (then it fails as any lost import)."""
    if version.source_config.get("recipe") != "knowledge" or not version.storage_key:
        return None
    journals = sorted(storage.path(_work_key(version)).glob("*.journal"))
    if not journals or version.attempt > settings.INGEST_MAX_RETRIES:
        return None
    chunks = sum(path.read_bytes().count(b"\n") for path in journals)
    try:
        lifecycle.retry_lost_attempt(version.pk, version.attempt, seen_heartbeat=version.heartbeat_at)
    except lifecycle.InvalidTransition:
        return None
    return (f"the worker importing attempt {version.attempt} stopped responding (no heartbeat for {silent} s); "
            f"resuming as attempt {version.attempt + 1} after the {chunks} chunks it finished "
            f"(automatic retry {version.attempt} of {settings.INGEST_MAX_RETRIES})")


def _work_key(version: DatasetVersion) -> str:
    return str(PurePosixPath(version.storage_key).parent / "work")
