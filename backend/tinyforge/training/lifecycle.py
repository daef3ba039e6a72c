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

from tinyforge.core.lifecycle import InvalidTransition, transition
from tinyforge.training.models import RunStatus, TrainingRun

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
# What `request_cancel` returns when an earlier request already did the work.
ALREADY_REQUESTED = "already requested"

__all__ = [
    "ACTIVE", "ALREADY_REQUESTED", "FINISHED", "InvalidTransition", "claim_attempt", "mark_succeeded", "mark_failed",
    "mark_cancelled", "request_cancel", "requeue_for_resume", "retry_lost_attempt", "record_progress",
    "record_heartbeat",
]


def _on(attempt: int | None, only_if: dict | None = None) -> dict:
    """The guard of a worker's write: the attempt it works on (None: any), plus `only_if`."""
    return {**({"attempt": attempt} if attempt is not None else {}), **(only_if or {})}


def claim_attempt(run_id: int, attempt: int, *, job_id: str = "") -> bool:
    """The worker's first write: queued -> running for exactly this attempt. False when the
    attempt was already claimed (a duplicate delivery), cancelled while queued, or superseded."""
    now = timezone.now()
    try:
        transition(TrainingRun, run_id, to=RunStatus.RUNNING, allowed_from=[RunStatus.QUEUED], only_if=_on(attempt),
                   started_at=now, heartbeat_at=now, finished_at=None, error="", **({"job_id": job_id} if job_id else {}))
    except (InvalidTransition, TrainingRun.DoesNotExist):
        return False
    return True


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
    transition(TrainingRun, run_id, to=RunStatus.SUCCEEDED, allowed_from=[RunStatus.RUNNING], only_if=_on(attempt),
               **changes)


def mark_failed(run_id: int, error: str, *, attempt: int | None = None, only_if: dict | None = None) -> None:
    transition(TrainingRun, run_id, to=RunStatus.FAILED, allowed_from=ACTIVE, only_if=_on(attempt, only_if),
               error=error, finished_at=timezone.now(), eta_seconds=None)


def mark_cancelled(run_id: int, *, attempt: int | None = None, progress_step: int | None = None) -> None:
    """The worker stopped the run on request (after saving a checkpoint)."""
    changes = {"finished_at": timezone.now(), "eta_seconds": None}
    if progress_step is not None:
        changes["progress_step"] = progress_step
    transition(TrainingRun, run_id, to=RunStatus.CANCELLED, allowed_from=ACTIVE, only_if=_on(attempt), **changes)


def request_cancel(run_id: int) -> str:
    """Ask a run to stop. A queued run is cancelled at once ("cancelled"); a running one is
    flagged for its worker ("running"). ALREADY_REQUESTED when an earlier request did that (the
    run is cancelled, or running with its cancel flagged): cancelling twice is a no-op, and the
    caller records nothing. Cancelling a succeeded or failed run raises InvalidTransition."""
    try:
        transition(TrainingRun, run_id, to=RunStatus.CANCELLED, allowed_from=[RunStatus.QUEUED],
                   cancel_requested=True, finished_at=timezone.now())
        return RunStatus.CANCELLED
    except InvalidTransition as moved:
        current = moved.current
    # Not a status change: the flag the running job reads at its next step.
    if current == RunStatus.RUNNING and TrainingRun.all_teams.filter(
            pk=run_id, status=RunStatus.RUNNING, cancel_requested=False).update(
            cancel_requested=True, updated_at=timezone.now()):
        return RunStatus.RUNNING
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


def retry_lost_attempt(run_id: int, attempt: int, *, checkpoint_id: int | None, seen_heartbeat) -> None:
    """running -> queued as attempt + 1, only if the run is still on `attempt` with the stale
    heartbeat the reconciler saw and no cancel requested; InvalidTransition when anything moved
    meanwhile (so a run is never both failed and retried, nor retried twice)."""
    transition(
        TrainingRun, run_id, to=RunStatus.QUEUED, allowed_from=[RunStatus.RUNNING],
        only_if={"attempt": attempt, "heartbeat_at": seen_heartbeat, "cancel_requested": False},
        attempt=F("attempt") + 1, resumed_from_id=checkpoint_id, error="", finished_at=None, job_id="",
        heartbeat_at=None, eta_seconds=None,
    )


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
