"""Every status change of a dataset version (see tinyforge.core.lifecycle).

pending -> ingesting -> validating -> ready; pending -> validating (a JSONL that needs no
conversion); any of pending / ingesting / validating -> failed. ready and failed are final: a
version never changes once it is ready (a new import makes a new version).
"""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from tinyforge.core.lifecycle import InvalidTransition, transition, update_if
from tinyforge.datasets.models import DatasetVersion, DatasetVersionStatus as S

ACTIVE = (S.PENDING, S.INGESTING, S.VALIDATING)

__all__ = ["ACTIVE", "InvalidTransition", "mark_ingesting", "retry_lost_attempt", "mark_validating", "mark_ready", "mark_failed",
           "record_progress", "record_heartbeat"]


def mark_ingesting(version_id: int, *, job_id: str = "") -> None:
    now = timezone.now()
    transition(DatasetVersion, version_id, to=S.INGESTING, allowed_from=[S.PENDING],
               started_at=now, heartbeat_at=now, **({"job_id": job_id} if job_id else {}))


def retry_lost_attempt(version_id: int, attempt: int, *, seen_heartbeat) -> None:
    """ingesting -> pending as attempt + 1, only if the version is still on `attempt` with the stale
    heartbeat the reconciler saw; InvalidTransition when anything moved meanwhile."""
    transition(DatasetVersion, version_id, to=S.PENDING, allowed_from=[S.INGESTING],
               only_if={"attempt": attempt, "heartbeat_at": seen_heartbeat},
               attempt=F("attempt") + 1, heartbeat_at=None, error="")


def mark_validating(version_id: int) -> None:
    now = timezone.now()
    transition(DatasetVersion, version_id, to=S.VALIDATING, allowed_from=[S.PENDING, S.INGESTING],
               heartbeat_at=now)
    DatasetVersion.all_teams.filter(pk=version_id, started_at__isnull=True).update(started_at=now)


def mark_ready(version_id: int, *, storage_key: str, sha256: str, size_bytes: int, row_count: int,
               stats: dict, validation_report: dict) -> None:
    transition(
        DatasetVersion, version_id, to=S.READY, allowed_from=[S.VALIDATING],
        storage_key=storage_key, sha256=sha256, size_bytes=size_bytes, row_count=row_count, stats=stats,
        validation_report=validation_report, progress=1.0, finished_at=timezone.now(), error="",
    )


def mark_failed(version_id: int, error: str, *, validation_report: dict | None = None,
                only_if: dict | None = None) -> None:
    changes = {"error": error, "finished_at": timezone.now()}
    if validation_report is not None:
        changes["validation_report"] = validation_report
    transition(DatasetVersion, version_id, to=S.FAILED, allowed_from=ACTIVE, only_if=only_if, **changes)


def record_progress(version_id: int, progress: float, message: str = "") -> bool:
    """Heartbeat plus progress (0..1); False once the version is no longer being worked on."""
    return update_if(DatasetVersion, version_id, statuses=[S.INGESTING, S.VALIDATING],
                     progress=max(0.0, min(1.0, progress)), progress_message=message[:200],
                     heartbeat_at=timezone.now())


def record_heartbeat(version_id: int) -> bool:
    """The job is alive; False once the version is no longer being worked on."""
    return update_if(DatasetVersion, version_id, statuses=[S.INGESTING, S.VALIDATING], heartbeat_at=timezone.now())

