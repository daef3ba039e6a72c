"""The dataset versions' reconciler (run with the training runs' one by tinyforge.core.worker).

- A version being imported whose heartbeat is older than RUN_STALE_SECONDS lost its worker
  (killed, out of memory, its machine gone): it is marked failed with an event saying so, and any
  file it left is removed. The ingest job beats every RUN_HEARTBEAT_SECONDS from a thread, so
  one long step (a huge PDF page, token counting) never looks like a dead worker.
- A pending version whose job is missing from Redis (Redis restarted without its data, or was
  unreachable when the import was created) is enqueued again under the same job id; one whose
  job failed before it started is marked failed.

Every change is a conditional update, so reconcilers racing each other or a live job change a
version at most once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import django_rq
import redis
from django.conf import settings
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from tinyforge.core import storage
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.core.models import EventLevel
from tinyforge.datasets import lifecycle
from tinyforge.datasets.models import DatasetVersion, DatasetVersionStatus as S

logger = logging.getLogger(__name__)

# A pending version younger than this may simply not have been enqueued yet (on commit).
ENQUEUE_GRACE = timedelta(seconds=60)


def reconcile_versions() -> dict[str, list[int]]:
    done: dict[str, list[int]] = {"failed_lost": [], "requeued": [], "failed_in_queue": []}
    now = timezone.now()
    _fail_lost_imports(now, done)
    try:
        _recover_pending(django_rq.get_connection("ingest"), now, done)
    except redis.RedisError as exc:
        logger.warning("could not check the ingest jobs in Redis: %s", exc)
    return done


def _fail_lost_imports(now, done) -> None:
    stale_before = now - timedelta(seconds=settings.RUN_STALE_SECONDS)
    lost = DatasetVersion.all_teams.filter(status__in=[S.INGESTING, S.VALIDATING], heartbeat_at__lt=stale_before)
    for version in lost.select_related("dataset"):
        silent = int((now - version.heartbeat_at).total_seconds())
        error = (f"the worker importing this version stopped responding (no heartbeat for {silent} s, last: "
                 f"{version.progress_message or version.status}): it was killed or its machine went away; "
                 "import the data again")
        if lifecycle.fail_lost(version.pk, error, seen_heartbeat=version.heartbeat_at):
            if version.storage_key:
                storage.delete(version.storage_key)
            record_event(project_id=version.dataset.project_id, dataset_version_id=version.pk, source="reconciler",
                         level=EventLevel.ERROR, message=f"import failed: {error}")
            done["failed_lost"].append(version.pk)


def _recover_pending(connection, now, done) -> None:
    from tinyforge.datasets.services import INGEST_JOB

    pending = DatasetVersion.all_teams.filter(status=S.PENDING, created_at__lt=now - ENQUEUE_GRACE)
    for version in pending.select_related("dataset"):
        try:
            job = Job.fetch(version.job_id, connection=connection) if version.job_id else None
        except NoSuchJobError:
            job = None
        where = {"project_id": version.dataset.project_id, "dataset_version_id": version.pk, "source": "reconciler"}
        if job is None:
            version.job_id = version.job_id or f"ingest-version-{version.pk}"
            DatasetVersion.all_teams.filter(pk=version.pk).update(job_id=version.job_id)
            enqueue("ingest", INGEST_JOB, version.pk, job_id=version.job_id)
            record_event(**where, level=EventLevel.WARNING,
                         message="its ingest job was missing from Redis (restarted without its data, or unreachable "
                                 "when the import was created); queued again")
            done["requeued"].append(version.pk)
            continue
        status = job.get_status(refresh=False)
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            result = job.latest_result() if status == JobStatus.FAILED else None
            reason = (result.exc_string.strip().splitlines()[-1] if result and result.exc_string
                      else f"its job is {status}")
            try:
                lifecycle.mark_failed(version.pk, f"the ingest job failed before the import started: {reason}")
            except lifecycle.InvalidTransition:
                continue
            record_event(**where, level=EventLevel.ERROR,
                         message=f"import failed: the ingest job failed before the import started: {reason}")
            done["failed_in_queue"].append(version.pk)
