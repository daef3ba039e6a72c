"""The dataset versions' reconciler, called directly: lost imports fail, lost jobs are queued again."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from dataset_files import GOOD_JSONL
from tinyforge.core import storage
from tinyforge.core.models import Event
from tinyforge.datasets.models import DatasetVersion
from tinyforge.core.reconcile import reconcile


def test_an_import_whose_worker_went_silent_fails_and_a_live_one_is_left_alone(upload, acme, settings):
    lost, live = (DatasetVersion.all_teams.get(pk=upload(acme.dataset, [("a.jsonl", GOOD_JSONL)]).json()["id"])
                  for _ in range(2))
    long_ago = timezone.now() - timedelta(seconds=settings.RUN_STALE_SECONDS + 5)
    DatasetVersion.all_teams.filter(pk=lost.pk).update(status="ingesting", heartbeat_at=long_ago,
                                                       progress_message="reading: 10 records read")
    DatasetVersion.all_teams.filter(pk=live.pk).update(status="validating", heartbeat_at=timezone.now())
    with storage.atomic_write(lost.storage_key) as handle:
        handle.write(b"half a file")
    assert reconcile("versions")["failed_lost"] == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == "failed" and "stopped responding (no heartbeat for" in lost.error
    assert "reading: 10 records read" in lost.error and not storage.exists(lost.storage_key)
    assert Event.all_teams.get(dataset_version=lost, source="reconciler", level="error")
    assert DatasetVersion.all_teams.get(pk=live.pk).status == "validating"
    assert reconcile("versions")["failed_lost"] == []  # once only


def test_a_pending_version_whose_job_vanished_is_queued_again(upload, acme, ingest_queue,
                                                              django_capture_on_commit_callbacks):
    version_id = upload(acme.dataset, [("a.jsonl", GOOD_JSONL)]).json()["id"]
    ingest_queue.empty()  # Redis lost the job
    DatasetVersion.all_teams.filter(pk=version_id).update(updated_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        done = reconcile("versions")
    assert done["requeued"] == [version_id]
    assert ingest_queue.job_ids == [f"ingest-version-{version_id}"]
    assert Event.all_teams.filter(dataset_version=version_id, source="reconciler", level="warning").exists()
    assert reconcile("versions")["requeued"] == []  # the job is there now
