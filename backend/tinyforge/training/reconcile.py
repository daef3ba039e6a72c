"""What the reconciler (tinyforge.core.reconcile) does for training runs beyond requeueing lost
jobs and failing lost runs, which it does for every tracked job:

- A running run whose worker died is resumed from its last checkpoint as the next attempt while
  its attempt number is at most RUN_MAX_RETRIES (and no cancel was requested).
- A run whose cancel was requested but which has not stopped within RUN_CANCEL_GRACE_SECONDS
  (stuck before its first step, or in its final evaluation) is stopped with RQ's stop-job command
  and marked cancelled.

TrainingConfig.ready() registers the kind.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import django_rq
from django.conf import settings

from tinyforge.core.events import record_event
from tinyforge.core.lifecycle import InvalidTransition
from tinyforge.core.models import EventLevel, event_links_to
from tinyforge.core.reconcile import SOURCE, stop_job
from tinyforge.training import lifecycle
from tinyforge.training.models import Checkpoint, RunStatus, TrainingRun


def last_checkpoint(run_id: int) -> Checkpoint | None:
    return Checkpoint.all_teams.filter(run_id=run_id).order_by("-step").first()


def lost_detail(run: TrainingRun) -> str:
    return f", last at step {run.progress_step}"


def remedy(run: TrainingRun) -> str:
    checkpoint = last_checkpoint(run.pk)
    return (f"resume it from its checkpoint at step {checkpoint.step}" if checkpoint is not None
            else "it has no checkpoint, so start it again")


def retry_lost_run(run: TrainingRun, silent: int) -> str | None:
    """Resume a run whose worker died from its last checkpoint as its next attempt, within
    RUN_MAX_RETRIES; the event's message, or None when it is not retried."""
    checkpoint = last_checkpoint(run.pk)
    if checkpoint is None or run.cancel_requested or run.attempt > settings.RUN_MAX_RETRIES:
        return None
    try:
        lifecycle.retry_lost_attempt(run.pk, run.attempt, checkpoint_id=checkpoint.pk, seen_heartbeat=run.heartbeat_at)
    except InvalidTransition:
        return None
    return (f"the worker running attempt {run.attempt} stopped responding (no heartbeat for {silent} s); "
            f"retrying as attempt {run.attempt + 1} from the checkpoint at step {checkpoint.step} "
            f"(automatic retry {run.attempt} of {settings.RUN_MAX_RETRIES})")


def stop_overdue_cancels(now: datetime) -> dict[str, list[int]]:
    connection = django_rq.get_connection("train")
    stopped = []
    overdue = TrainingRun.all_teams.filter(
        status=RunStatus.RUNNING, cancel_requested=True,
        updated_at__lt=now - timedelta(seconds=settings.RUN_CANCEL_GRACE_SECONDS),
    ).values("pk", "attempt", "project_id", "job_id", "progress_step")
    for run in overdue:
        stop_job(connection, run["job_id"])
        try:
            lifecycle.mark_cancelled(run["pk"], attempt=run["attempt"])
        except InvalidTransition:
            continue  # it stopped by itself meanwhile
        checkpoint = last_checkpoint(run["pk"])
        record_event(
            project_id=run["project_id"], **event_links_to(TrainingRun, run["pk"]), attempt=run["attempt"], source=SOURCE,
            level=EventLevel.WARNING,
            message=(f"cancelled: the run did not stop within {settings.RUN_CANCEL_GRACE_SECONDS} s of the request, "
                     f"so its job was stopped with RQ's stop-job command at step {run['progress_step']}"
                     + (f"; its last checkpoint is at step {checkpoint.step}" if checkpoint is not None
                        else "; it has no checkpoint")),
        )
        stopped.append(run["pk"])
    return {"stopped": stopped}
