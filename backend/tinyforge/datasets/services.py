"""Creating datasets, versions and connections. The ingest job (datasets/jobs.py,
`ingest_version(version_id)`) turns a pending version into a ready one."""

from __future__ import annotations

import uuid

from django.db import transaction

from tinyforge.core import storage
from tinyforge.core.audit import audit
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.datasets.models import DataConnection, Dataset, DatasetVersion, SourceKind

INGEST_JOB = "tinyforge.datasets.jobs.ingest_version"


def create_dataset(request, *, project, name: str, description: str = "") -> Dataset:
    dataset = Dataset.all_teams.create(project=project, name=name, description=description, created_by=request.user)
    audit(request, "created", dataset)
    return dataset


def delete_dataset(request, dataset: Dataset) -> None:
    keys = [v.storage_key for v in dataset.versions.all() if v.storage_key]
    audit(request, "deleted", dataset, changes={"name": dataset.name})
    dataset.delete()
    _delete_files_on_commit(keys)


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
    version.job_id = f"ingest-version-{version.pk}"
    version.save(update_fields=["storage_key", "job_id"])
    record_event(project_id=dataset.project_id, dataset_version_id=version.pk, source="platform",
                 message=f"version {version.number} of {dataset.name} queued for import ({source_kind})")
    audit(request, "created", version, project_id=dataset.project_id, changes={"source_kind": source_kind})
    enqueue("ingest", INGEST_JOB, version.pk, job_id=version.job_id)
    return version


def save_uploads(project_id: int, files) -> list[dict]:
    """Move uploaded files (already streamed to temporary files by Django) into storage."""
    upload_id = uuid.uuid4().hex
    saved = []
    for upload in files:
        key = storage.upload_key(project_id, upload_id, upload.name)
        with storage.atomic_write(key) as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
        saved.append({"key": key, "name": upload.name, "size": upload.size, "content_type": upload.content_type or ""})
    return saved


def create_upload_version(request, *, dataset: Dataset, files, options: dict, note: str = "") -> DatasetVersion:
    saved = save_uploads(dataset.project_id, files)
    try:
        return create_version(request, dataset=dataset, source_kind=SourceKind.UPLOAD,
                              source_config={"files": saved, "options": options}, note=note)
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
    _delete_files_on_commit(keys)


def _delete_files_on_commit(keys: list[str]) -> None:
    def remove():
        for key in keys:
            storage.delete(key)

    transaction.on_commit(remove)


def save_connection(request, connection: DataConnection, credentials: dict | None, *, created: bool) -> DataConnection:
    if credentials is not None:
        connection.set_credentials(credentials)
    if created:
        connection.created_by = request.user
    connection.save()
    audit(request, "created" if created else "updated", connection,
          changes={"name": connection.name, "kind": connection.kind, "credentials_changed": credentials is not None})
    return connection
