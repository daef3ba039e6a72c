"""Every status change of a training run (see tinyforge.core.lifecycle for why conditional).

queued -> running -> succeeded | failed | cancelled; queued -> failed | cancelled;
failed | cancelled -> queued again as the next attempt (resume); running -> queued as the next
attempt when the reconciler retries a run whose worker died.

Functions that a worker calls take the `attempt` it is working on: once a run has moved on to
its next attempt, a late writer from the previous one (a worker thought dead that wakes up)
changes nothing.
"""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from tinyforge.core.lifecycle import InvalidTransition, transition, update_if
from tinyforge.training.models import RunStatus, TrainingRun

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
# What `request_cancel` returns when an earlier request already did the work.
ALREADY_REQUESTED = "already requested"

__all__ = [
    "ACTIVE", "ALREADY_REQUESTED", "FINISHED", "InvalidTransition", "claim_attempt", "mark_running", "mark_succeeded",
    "mark_failed", "mark_cancelled", "request_cancel", "requeue_for_resume", "retry_lost_attempt", "record_progress",
    "record_heartbeat", "fail_lost_attempt",
]


def _move(run_id: int, attempt: int | None, *, to: str, allowed_from, **changes) -> None:
    if attempt is None:
        transition(TrainingRun, run_id, to=to, allowed_from=allowed_from, **changes)
        return
    changes.setdefault("updated_at", timezone.now())
    updated = TrainingRun.all_teams.filter(pk=run_id, attempt=attempt, status__in=list(allowed_from)).update(
        status=to, **changes)
    if updated == 1:
        return
    current = TrainingRun.all_teams.filter(pk=run_id).values("status", "attempt").first()
    if current is None:
        raise TrainingRun.DoesNotExist(f"training run {run_id} does not exist")
    label = current["status"] if current["attempt"] == attempt else f"on attempt {current['attempt']}"
    raise InvalidTransition(TrainingRun, run_id, label, to)


def claim_attempt(run_id: int, attempt: int, *, job_id: str = "") -> bool:
    """The worker's first write: queued -> running for exactly this attempt. False when the
    attempt was already claimed (a duplicate delivery), cancelled while queued, or superseded."""
    now = timezone.now()
    changes = {"started_at": now, "heartbeat_at": now, "finished_at": None, "error": "", "updated_at": now}
    if job_id:
        changes["job_id"] = job_id
    return TrainingRun.all_teams.filter(pk=run_id, attempt=attempt, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, **changes) == 1


def mark_running(run_id: int, *, job_id: str = "") -> None:
    now = timezone.now()
    transition(
        TrainingRun, run_id, to=RunStatus.RUNNING, allowed_from=[RunStatus.QUEUED],
        started_at=now, heartbeat_at=now, finished_at=None, error="", **({"job_id": job_id} if job_id else {}),
    )


def mark_succeeded(run_id: int, *, attempt: int | None = None, output_key: str = "",
                   summary_metrics: dict | None = None, eval_results: dict | None = None,
                   progress_step: int | None = None) -> None:
    changes = {"finished_at": timezone.now(), "eta_seconds": 0.0}
    if output_key:
        changes["output_key"] = output_key
    if summary_metrics is not None:
        changes["summary_metrics"] = summary_metrics
    if eval_results is not None:
        changes["eval_results"] = eval_results
    if progress_step is not None:
        changes["progress_step"] = progress_step
    _move(run_id, attempt, to=RunStatus.SUCCEEDED, allowed_from=[RunStatus.RUNNING], **changes)


def mark_failed(run_id: int, error: str, *, attempt: int | None = None) -> None:
    _move(run_id, attempt, to=RunStatus.FAILED, allowed_from=ACTIVE,
          error=error, finished_at=timezone.now(), eta_seconds=None)


def mark_cancelled(run_id: int, *, attempt: int | None = None, progress_step: int | None = None) -> None:
    """The worker stopped the run on request (after saving a checkpoint)."""
    changes = {"finished_at": timezone.now(), "eta_seconds": None}
    if progress_step is not None:
        changes["progress_step"] = progress_step
    _move(run_id, attempt, to=RunStatus.CANCELLED, allowed_from=ACTIVE, **changes)


def request_cancel(run_id: int) -> str:
    """Ask a run to stop. A queued run is cancelled at once ("cancelled"); a running one is
    flagged for its worker ("running"). ALREADY_REQUESTED when an earlier request did that (the
    run is cancelled, or running with its cancel flagged): cancelling twice is a no-op, and the
    caller records nothing. Cancelling a succeeded or failed run raises InvalidTransition."""
    if update_if(TrainingRun, run_id, statuses=[RunStatus.QUEUED], status=RunStatus.CANCELLED,
                 cancel_requested=True, finished_at=timezone.now(), updated_at=timezone.now()):
        return RunStatus.CANCELLED
    if TrainingRun.all_teams.filter(pk=run_id, status=RunStatus.RUNNING, cancel_requested=False).update(
            cancel_requested=True, updated_at=timezone.now()):
        return RunStatus.RUNNING
    current = TrainingRun.all_teams.filter(pk=run_id).values_list("status", flat=True).first()
    if current is None:
        raise TrainingRun.DoesNotExist(f"training run {run_id} does not exist")
    if current in (RunStatus.CANCELLED, RunStatus.RUNNING):
        return ALREADY_REQUESTED
    raise InvalidTransition(TrainingRun, run_id, current, RunStatus.CANCELLED)


def requeue_for_resume(run_id: int, *, checkpoint_id: int | None) -> None:
    """Start the next attempt of a failed or cancelled run (from `checkpoint_id` if given)."""
    transition(
        TrainingRun, run_id, to=RunStatus.QUEUED, allowed_from=[RunStatus.FAILED, RunStatus.CANCELLED],
        attempt=F("attempt") + 1, resumed_from_id=checkpoint_id, cancel_requested=False,
        error="", finished_at=None, job_id="", heartbeat_at=None, eta_seconds=None,
    )


def retry_lost_attempt(run_id: int, attempt: int, *, checkpoint_id: int | None, seen_heartbeat) -> bool:
    """running -> queued as attempt + 1, only if the run is still on `attempt` with the stale
    heartbeat the reconciler saw; False when anything moved meanwhile (so a run is never both
    failed and retried, nor retried twice)."""
    return TrainingRun.all_teams.filter(
        pk=run_id, attempt=attempt, status=RunStatus.RUNNING, heartbeat_at=seen_heartbeat, cancel_requested=False,
    ).update(
        status=RunStatus.QUEUED, attempt=F("attempt") + 1, resumed_from_id=checkpoint_id, error="",
        finished_at=None, job_id="", heartbeat_at=None, eta_seconds=None, updated_at=timezone.now(),
    ) == 1


def fail_lost_attempt(run_id: int, attempt: int, error: str, *, seen_heartbeat) -> bool:
    """running -> failed for a run whose worker is gone, on the same conditions as
    `retry_lost_attempt`."""
    return TrainingRun.all_teams.filter(
        pk=run_id, attempt=attempt, status=RunStatus.RUNNING, heartbeat_at=seen_heartbeat,
    ).update(status=RunStatus.FAILED, error=error, finished_at=timezone.now(), eta_seconds=None,
             updated_at=timezone.now()) == 1


def record_progress(run_id: int, *, step: int, total: int | None = None, eta_seconds: float | None = None,
                    tokens_per_second: float | None = None, attempt: int | None = None) -> bool:
    """Heartbeat plus progress. False when the run is no longer running this attempt, or its
    cancel was requested: either tells the worker to stop."""
    changes = {"progress_step": step, "heartbeat_at": timezone.now(), "eta_seconds": eta_seconds}
    if total is not None:
        changes["progress_total"] = total
    if tokens_per_second is not None:
        changes["tokens_per_second"] = tokens_per_second
    rows = TrainingRun.all_teams.filter(pk=run_id, status=RunStatus.RUNNING, cancel_requested=False)
    if attempt is not None:
        rows = rows.filter(attempt=attempt)
    return rows.update(**changes) == 1


def record_heartbeat(run_id: int, attempt: int) -> bool:
    return TrainingRun.all_teams.filter(pk=run_id, attempt=attempt, status=RunStatus.RUNNING).update(
        heartbeat_at=timezone.now()) == 1
