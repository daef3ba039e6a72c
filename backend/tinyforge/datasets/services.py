"""Creating datasets, versions and connections. The ingest job (datasets/jobs.py,
`ingest_version(version_id)`) turns a pending version into a ready one."""

from __future__ import annotations

import itertools
import tempfile
import uuid
from pathlib import Path

from django.db import transaction

from tinyforge.core import storage
from tinyforge.core.audit import audit, save_changes
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.connectors.mapping import FieldMapping, RowMapper
from tinyforge.connectors.records import SourceError
from tinyforge.core.lifecycle import update_if
from tinyforge.core.models import event_links_to
from tinyforge.datasets import analysis, importing
from tinyforge.datasets.models import (
    ConnectionKind,
    DataConnection,
    Dataset,
    DatasetVersion,
    DatasetVersionStatus,
    SourceKind,
)
from tinyforge.errors import Conflict, TinyforgeError
from tinyforge.training import base_models

INGEST_JOB = "tinyforge.datasets.jobs.ingest_version"


def ingest_job_id(version: DatasetVersion) -> str:
    return f"ingest-version-{version.pk}"


def create_dataset(request, *, project, name: str, description: str = "") -> Dataset:
    dataset = Dataset.all_teams.create(project=project, name=name, description=description, created_by=request.user)
    audit(request, "created", dataset)
    return dataset


def update_dataset(request, dataset: Dataset, changes: dict) -> Dataset:
    return save_changes(request, dataset, changes)


def delete_dataset(request, dataset: Dataset) -> None:
    keys = [v.storage_key for v in dataset.versions.all() if v.storage_key]
    audit(request, "deleted", dataset, changes={"name": dataset.name})
    dataset.delete()
    storage.delete_on_commit(keys)


@transaction.atomic
def create_version(request, *, dataset: Dataset, source_kind: str, source_config: dict,
                   connection: DataConnection | None = None, parent: DatasetVersion | None = None,
                   note: str = "") -> DatasetVersion:
    """A pending version with the next number of its dataset, and its ingest job (on commit)."""
    # Lock the dataset row: two imports at once must not both take the same number.
    Dataset.all_teams.select_for_update().filter(pk=dataset.pk).first()
    last = dataset.versions.order_by("-number").values_list("number", flat=True).first() or 0
    version = DatasetVersion.all_teams.create(
        dataset=dataset, number=last + 1, source_kind=source_kind, source_config=source_config,
        connection=connection, parent=parent, note=note, created_by=getattr(request, "user", None),
    )
    version.storage_key = storage.dataset_version_key(dataset.project_id, dataset.pk, version.pk)
    version.job_id = ingest_job_id(version)
    version.save(update_fields=["storage_key", "job_id"])
    record_event(project_id=dataset.project_id, **event_links_to(DatasetVersion, version.pk), source="platform",
                 message=f"version {version.number} of {dataset.name} queued for import ({source_kind})")
    audit(request, "created", version, project_id=dataset.project_id, changes={"source_kind": source_kind})
    enqueue("ingest", INGEST_JOB, version.pk, job_id=version.job_id)
    return version


def save_uploads(project_id: int, files) -> list[dict]:
    """Move uploaded files (already streamed to temporary files by Django) into storage."""
    upload_id = uuid.uuid4().hex
    saved = []
    for index, upload in enumerate(files):
        key = storage.upload_key(project_id, f"{upload_id}/{index}", upload.name)
        with storage.atomic_write(key) as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
        saved.append({"key": key, "name": storage.display_name(upload.name), "size": upload.size,
                      "content_type": upload.content_type or ""})
    return saved


def knowledge_options() -> dict:
    """What the import form offers for the knowledge recipe: allowed teachers (never their keys), defaults."""
    from dataclasses import fields

    from django.conf import settings

    from tinyforge.connectors.knowledge import PROMPTS, KnowledgeOptions

    own = importing.own_inference_url()
    teachers = [own] + [url for url in settings.QA_BASE_URLS if url.rstrip("/") != own]
    knobs = ("facts_per_chunk", "questions_per_fact", "restatements_per_chunk", "gap_fills", "temperature",
             "concurrency")
    return {"teachers": teachers, "own_inference_url": own, "prompts": dict(PROMPTS),
            "defaults": {f.name: f.default for f in fields(KnowledgeOptions) if f.name in knobs}}


def knowledge_preview(dataset: Dataset, files, options: dict, chunks: int) -> dict:
    """The knowledge recipe's estimate for the whole of `files` and its rows for the first `chunks` chunks.
    Raises TinyforgeError (a 400) when a file cannot be read or the teacher cannot be used."""
    from tinyforge.connectors.chunking import chunk_blocks
    from tinyforge.connectors.files import FileSource
    from tinyforge.connectors.knowledge import dry_run, estimate

    ingest = importing.ingest_options(options, dataset.project.team_id)
    with tempfile.TemporaryDirectory(prefix="tinyforge-knowledge-") as workdir:
        sources = []
        for index, upload in enumerate(files):
            name = storage.display_name(upload.name)
            path = Path(workdir) / f"{index}{Path(name).suffix}"  # the extension says the format
            with open(path, "wb") as handle:
                for piece in upload.chunks():
                    handle.write(piece)
            sources.append(FileSource(str(path), format=options.get("format") or None,
                                      name=name, encoding=options.get("encoding") or None))

        def all_chunks():
            for source in sources:
                yield from chunk_blocks(source.records(), ingest.chunk_chars, ingest.overlap_chars)

        guess = estimate(all_chunks(), ingest.knowledge)
        return {"estimate": guess, **dry_run(all_chunks(), ingest.knowledge, first=chunks)}


def create_upload_version(request, *, dataset: Dataset, files, options: dict, note: str = "") -> DatasetVersion:
    saved = save_uploads(dataset.project_id, files)
    try:
        return create_version(request, dataset=dataset, source_kind=SourceKind.UPLOAD,
                              source_config={"files": saved, **options}, note=note)
    except BaseException:
        for item in saved:
            storage.delete(item["key"])
        raise


def delete_version(request, version: DatasetVersion) -> None:
    keys = [version.storage_key] if version.storage_key else []
    keys += [f["key"] for f in version.source_config.get("files", []) if isinstance(f, dict) and f.get("key")]
    audit(request, "deleted", version, project_id=version.dataset.project_id,
          changes={"dataset": version.dataset.name, "number": version.number})
    version.delete()
    storage.delete_on_commit(keys)


def delete_connection(request, connection: DataConnection) -> None:
    audit(request, "deleted", connection)
    connection.delete()


def save_connection(request, connection: DataConnection, credentials: dict | None, *, created: bool) -> DataConnection:
    if credentials is not None:
        connection.set_credentials(credentials)
    if created:
        connection.created_by = request.user
    connection.save()
    audit(request, "created" if created else "updated", connection,
          changes={"name": connection.name, "kind": connection.kind, "credentials_changed": credentials is not None})
    return connection


# -- connections: try before importing --------------------------------------------------------

def test_connection(connection: DataConnection, probe: dict) -> dict:
    """Connect with the saved credentials and run the probe's query (SELECT 1 by default), or read
    the probe's Google documents. Problems are answered, not raised: {"ok": False, "message"}."""
    try:
        if connection.kind == ConnectionKind.SQL:
            source = importing.sql_source(connection, {**_sql_probe(probe)}, row_limit=1)
            check = source.test_connection()
            return {"ok": True, "message": f"connected to {check.server_version}", "dialect": check.dialect,
                    "server_version": check.server_version, "columns": check.columns}
        blocks, name = _google_blocks(connection, probe, limit=1)
        return {"ok": True, "message": f"read {name}", "dialect": None, "server_version": None, "columns": []}
    except TinyforgeError as exc:
        return {"ok": False, "message": str(exc), "dialect": None, "server_version": None, "columns": []}


def preview_connection(connection: DataConnection, probe: dict) -> dict:
    """The first rows (SQL) or blocks (Google Docs) a probe reads, and the rows mapped to examples.
    Raises TinyforgeError (a 400) naming the source when it cannot be read."""
    limit = probe.get("limit", 20)
    if connection.kind == ConnectionKind.SQL:
        rows = importing.sql_source(connection, _sql_probe(probe), row_limit=limit).preview(limit)
        columns = list(rows[0].fields) if rows else []
        mapper = RowMapper(FieldMapping.parse(probe["mapping"]) if probe.get("mapping") else None)
        examples, mapping_error = [], None
        try:
            examples = [mapper(row) for row in rows]
        except SourceError as exc:
            mapping_error = str(exc)
        return {"columns": columns, "rows": [row.fields for row in rows], "shape": mapper.shape,
                "examples": examples, "mapping_error": mapping_error}
    blocks, _ = _google_blocks(connection, probe, limit=limit)
    return {"columns": ["location", "kind", "heading_path", "text"],
            "rows": [{"location": b.source + ", " + b.location, "kind": b.kind, "heading_path": list(b.heading_path),
                      "text": b.text} for b in blocks], "shape": "document", "examples": [], "mapping_error": None}


def _sql_probe(probe: dict) -> dict:
    if not probe.get("query") and not probe.get("table"):
        return {"query": "SELECT 1"}
    return {k: probe[k] for k in ("query", "table", "columns", "statement_timeout_s") if probe.get(k)}


def _google_blocks(connection: DataConnection, probe: dict, limit: int):
    if not probe.get("document_ids") and not probe.get("folder_id"):
        raise TinyforgeError("give document_ids or a folder_id to read with this Google connection")
    with tempfile.TemporaryDirectory(prefix="tinyforge-google-") as workdir:
        source = importing.google_source(connection, probe, Path(workdir))
        blocks = list(itertools.islice(source.records(), limit))
    return blocks, source.name


# -- versions: reports, previews, diffs --------------------------------------------------------

def ready_file(version: DatasetVersion) -> Path:
    """The version's JSONL file; Conflict (409) until it is ready, MissingFile (409) if it is gone."""
    if version.status != DatasetVersionStatus.READY:
        raise Conflict(f"Version {version.number} is {version.status}; only ready versions have rows.")
    storage.open_for_download(version.storage_key).close()
    return storage.path(version.storage_key)


def version_report(version: DatasetVersion, base_model: str = "", max_seq_length: int | None = None) -> dict:
    """The stored validation report, or (for another base model or context) one computed now and
    kept with the version's reports, so the next request for it is free."""
    if version.status != DatasetVersionStatus.READY:
        raise Conflict(f"Version {version.number} is {version.status}; only ready versions have a report."
                       + (f" Its import failed: {version.error}" if version.error else ""))
    stored = version.validation_report or {}
    same_model = base_model in ("", stored.get("base_model")) and max_seq_length in (None, stored.get("max_seq_length"))
    if stored and same_model:
        return stored
    key = f"{base_model}@{max_seq_length or ''}"
    cached = (version.stats or {}).get("token_reports", {}).get(key)
    if cached:
        return cached
    report = analysis.validation_report(ready_file(version), base_model or None, max_seq_length,
                                        model_folder=_model_folder(version, base_model),
                                        rejected=analysis.rejected_rows(version.stats))
    stats = dict(version.stats or {})
    stats["token_reports"] = {**stats.get("token_reports", {}), key: report}
    # Derived data only (the rows never change): written while the version is still ready.
    update_if(DatasetVersion, version.pk, statuses=[DatasetVersionStatus.READY], stats=stats)
    return report


def version_preview(version: DatasetVersion, *, page: int, page_size: int, base_model: str = "",
                    max_seq_length: int | None = None, source: str = "", fact: str = "") -> dict:
    path = ready_file(version)
    folder = _model_folder(version, base_model)
    rows, matched = analysis.preview_rows(path, offset=(page - 1) * page_size, limit=page_size, model_folder=folder,
                                          max_seq_length=max_seq_length, source=source, fact=fact)
    if folder and max_seq_length is None:
        max_seq_length = analysis.base_model_tokenizer(folder)[1]
    count = matched if matched is not None else version.row_count or 0
    return {"count": count, "page": page, "page_size": page_size, "results": rows,
            "base_model": base_model or None, "max_seq_length": max_seq_length}


def _model_folder(version: DatasetVersion, base_model: str) -> str | None:
    """The folder of a checked base model reference, for the version's team (None: no model)."""
    return str(base_models.folder(base_model, version.dataset.project.team_id)) if base_model else None


def version_diff(version: DatasetVersion, against: DatasetVersion, limit: int) -> dict:
    diff = analysis.diff_files(ready_file(against), ready_file(version), limit)
    return {"version": version.pk, "against": against.pk, **diff}
