"""Every status change of a training run (see tinyforge.core.lifecycle for why conditional).

queued -> running -> succeeded | failed | cancelled; queued -> failed | cancelled;
failed | cancelled -> queued again as the next attempt (resume).
"""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from tinyforge.core.lifecycle import InvalidTransition, transition, update_if
from tinyforge.training.models import RunStatus, TrainingRun

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)

__all__ = [
    "ACTIVE", "FINISHED", "InvalidTransition", "mark_running", "mark_succeeded", "mark_failed",
    "mark_cancelled", "request_cancel", "requeue_for_resume", "record_progress",
]


def mark_running(run_id: int, *, job_id: str = "") -> None:
    now = timezone.now()
    transition(
        TrainingRun, run_id, to=RunStatus.RUNNING, allowed_from=[RunStatus.QUEUED],
        started_at=now, heartbeat_at=now, finished_at=None, error="", **({"job_id": job_id} if job_id else {}),
    )


def mark_succeeded(run_id: int, *, output_key: str = "", summary_metrics: dict | None = None,
                   eval_results: dict | None = None) -> None:
    changes = {"finished_at": timezone.now(), "eta_seconds": 0.0}
    if output_key:
        changes["output_key"] = output_key
    if summary_metrics is not None:
        changes["summary_metrics"] = summary_metrics
    if eval_results is not None:
        changes["eval_results"] = eval_results
    transition(TrainingRun, run_id, to=RunStatus.SUCCEEDED, allowed_from=[RunStatus.RUNNING], **changes)


def mark_failed(run_id: int, error: str) -> None:
    transition(TrainingRun, run_id, to=RunStatus.FAILED, allowed_from=ACTIVE,
               error=error, finished_at=timezone.now(), eta_seconds=None)


def mark_cancelled(run_id: int) -> None:
    """The worker stopped the run on request (after saving a checkpoint)."""
    transition(TrainingRun, run_id, to=RunStatus.CANCELLED, allowed_from=ACTIVE,
               finished_at=timezone.now(), eta_seconds=None)


def request_cancel(run_id: int) -> str:
    """Ask a run to stop. A queued run is cancelled at once; a running one is flagged for its
    worker. Returns the status afterwards. Cancelling a cancelled run is a no-op; cancelling a
    succeeded or failed run raises InvalidTransition."""
    if update_if(TrainingRun, run_id, statuses=[RunStatus.QUEUED], status=RunStatus.CANCELLED,
                 cancel_requested=True, finished_at=timezone.now(), updated_at=timezone.now()):
        return RunStatus.CANCELLED
    if update_if(TrainingRun, run_id, statuses=[RunStatus.RUNNING], cancel_requested=True,
                 updated_at=timezone.now()):
        return RunStatus.RUNNING
    current = TrainingRun.all_teams.filter(pk=run_id).values_list("status", flat=True).first()
    if current is None:
        raise TrainingRun.DoesNotExist(f"training run {run_id} does not exist")
    if current == RunStatus.CANCELLED:
        return current
    raise InvalidTransition(TrainingRun, run_id, current, RunStatus.CANCELLED)


def requeue_for_resume(run_id: int, *, checkpoint_id: int | None) -> None:
    """Start the next attempt of a failed or cancelled run (from `checkpoint_id` if given)."""
    transition(
        TrainingRun, run_id, to=RunStatus.QUEUED, allowed_from=[RunStatus.FAILED, RunStatus.CANCELLED],
        attempt=F("attempt") + 1, resumed_from_id=checkpoint_id, cancel_requested=False,
        error="", finished_at=None, job_id="", heartbeat_at=None, eta_seconds=None,
    )


def record_progress(run_id: int, *, step: int, total: int | None = None, eta_seconds: float | None = None,
                    tokens_per_second: float | None = None) -> bool:
    """Heartbeat plus progress. False when the run is no longer running (cancelled or
    reconciled), which tells the worker to stop."""
    changes = {"progress_step": step, "heartbeat_at": timezone.now(), "eta_seconds": eta_seconds}
    if total is not None:
        changes["progress_total"] = total
    if tokens_per_second is not None:
        changes["tokens_per_second"] = tokens_per_second
    return update_if(TrainingRun, run_id, statuses=[RunStatus.RUNNING], **changes)
