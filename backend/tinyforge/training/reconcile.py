"""The training runs' reconciler: the database says what should be happening, Redis and the
heartbeats say what is; this brings the two back together. Idempotent and race-safe (every change
is a conditional update), so two reconcilers at once, or a reconciler racing a worker, change
each run at most once.

- A running run whose heartbeat is older than RUN_STALE_SECONDS lost its worker (SIGKILL, OOM
  killer, a host that went away): it is resumed from its last checkpoint as the next attempt
  while its attempt number is at most RUN_MAX_RETRIES, else marked failed, with an event saying
  which and why.
- A run whose cancel was requested but which has not stopped within RUN_CANCEL_GRACE_SECONDS
  (stuck before its first step, or in its final evaluation) is stopped with RQ's stop-job command
  and marked cancelled.
- A queued run whose job is missing from Redis (Redis restarted without its data, or was
  unreachable when the run was created) is enqueued again under the same job id; one whose job
  failed before it could start is marked failed.

Run by `tinyforge.core.worker.Worker` when a worker starts and then every
RECONCILE_INTERVAL_SECONDS on the scheduler process (`rqworker --with-scheduler control`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import django_rq
import redis
from django.conf import settings
from django.utils import timezone
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from tinyforge.core.events import record_event
from tinyforge.core.lifecycle import InvalidTransition
from tinyforge.core.models import EventLevel
from tinyforge.training import lifecycle
from tinyforge.training.models import RunStatus, TrainingRun

logger = logging.getLogger(__name__)

# A run is enqueued when its transaction commits, a few milliseconds after it exists; only a
# queued run older than this whose job is missing has really lost it.
ENQUEUE_GRACE = timedelta(seconds=5)


def reconcile_runs() -> dict[str, list[int]]:
    """One pass; returns the ids of the runs it changed, by what it did."""
    connection = django_rq.get_connection("train")
    now = timezone.now()
    done: dict[str, list[int]] = {"stopped": [], "retried": [], "failed": [], "requeued": [], "failed_in_queue": []}
    _stop_overdue_cancels(connection, now, done)
    _recover_lost_runs(connection, now, done)
    try:
        _recover_queued_runs(connection, now, done)
    except redis.RedisError as exc:  # the queued runs wait for the next pass
        logger.warning("could not check the queued runs' jobs in Redis: %s", exc)
    changed = {k: v for k, v in done.items() if v}
    if changed:
        logger.info("reconciled training runs: %s", changed)
    return done


def _stop_job(connection, job_id: str) -> None:
    """RQ's stop-job command (the worker kills the job's work horse); nothing to do when the job
    or its worker is already gone."""
    if not job_id:
        return
    try:
        send_stop_job_command(connection, job_id)
    except (NoSuchJobError, InvalidJobOperation, redis.RedisError) as exc:
        logger.info("stop-job for %s: %s", job_id, exc)


def _stop_overdue_cancels(connection, now, done) -> None:
    overdue = TrainingRun.all_teams.filter(
        status=RunStatus.RUNNING, cancel_requested=True,
        updated_at__lt=now - timedelta(seconds=settings.RUN_CANCEL_GRACE_SECONDS),
    ).values("pk", "attempt", "project_id", "job_id", "progress_step")
    for run in overdue:
        _stop_job(connection, run["job_id"])
        try:
            lifecycle.mark_cancelled(run["pk"], attempt=run["attempt"])
        except InvalidTransition:
            continue  # it stopped by itself meanwhile
        last = run_last_checkpoint_step(run["pk"])
        record_event(
            project_id=run["project_id"], run_id=run["pk"], attempt=run["attempt"], source="reconciler",
            level=EventLevel.WARNING,
            message=(f"cancelled: the run did not stop within {settings.RUN_CANCEL_GRACE_SECONDS} s of the request, "
                     f"so its job was stopped with RQ's stop-job command at step {run['progress_step']}"
                     + (f"; its last checkpoint is at step {last}" if last is not None else "; it has no checkpoint")),
        )
        done["stopped"].append(run["pk"])


def run_last_checkpoint_step(run_id: int) -> int | None:
    from tinyforge.training.models import Checkpoint

    return Checkpoint.all_teams.filter(run_id=run_id).order_by("-step").values_list("step", flat=True).first()


def _recover_lost_runs(connection, now, done) -> None:
    from tinyforge.training.models import Checkpoint
    from tinyforge.training.services import TRAIN_JOB, job_id_for

    stale_before = now - timedelta(seconds=settings.RUN_STALE_SECONDS)
    lost = TrainingRun.all_teams.filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale_before).values(
        "pk", "attempt", "project_id", "job_id", "heartbeat_at", "progress_step", "cancel_requested")
    for run in lost:
        silent = int((now - run["heartbeat_at"]).total_seconds())
        # A worker that is frozen rather than dead must not come back and write again.
        _stop_job(connection, run["job_id"])
        checkpoint = Checkpoint.all_teams.filter(run_id=run["pk"]).order_by("-step").first()
        retry = checkpoint is not None and not run["cancel_requested"] and run["attempt"] <= settings.RUN_MAX_RETRIES
        if retry and lifecycle.retry_lost_attempt(run["pk"], run["attempt"], checkpoint_id=checkpoint.pk,
                                                  seen_heartbeat=run["heartbeat_at"]):
            fresh = TrainingRun.all_teams.get(pk=run["pk"])
            fresh.job_id = job_id_for(fresh)
            fresh.save(update_fields=["job_id"])
            record_event(
                project_id=run["project_id"], run_id=run["pk"], attempt=run["attempt"], source="reconciler",
                level=EventLevel.WARNING,
                message=(f"the worker running attempt {run['attempt']} stopped responding (no heartbeat for {silent} s); "
                         f"retrying as attempt {fresh.attempt} from the checkpoint at step {checkpoint.step} "
                         f"(automatic retry {run['attempt']} of {settings.RUN_MAX_RETRIES})"),
            )
            from tinyforge.core.jobs import enqueue

            enqueue("train", TRAIN_JOB, fresh.pk, fresh.attempt, job_id=fresh.job_id)
            done["retried"].append(run["pk"])
            continue
        resume_hint = (f"resume it from its checkpoint at step {checkpoint.step}" if checkpoint is not None
                       else "it has no checkpoint, so start it again")
        error = (f"the worker running this run stopped responding (no heartbeat for {silent} s, last at step "
                 f"{run['progress_step']}): it was killed or its machine went away; {resume_hint}")
        if lifecycle.fail_lost_attempt(run["pk"], run["attempt"], error, seen_heartbeat=run["heartbeat_at"]):
            record_event(project_id=run["project_id"], run_id=run["pk"], attempt=run["attempt"], source="reconciler",
                         level=EventLevel.ERROR, message=f"failed: {error}")
            done["failed"].append(run["pk"])


def _recover_queued_runs(connection, now, done) -> None:
    from tinyforge.core.jobs import enqueue
    from tinyforge.training.services import TRAIN_JOB

    queued = TrainingRun.all_teams.filter(status=RunStatus.QUEUED, updated_at__lt=now - ENQUEUE_GRACE).values(
        "pk", "attempt", "project_id", "job_id")
    for run in queued:
        try:
            job = Job.fetch(run["job_id"], connection=connection) if run["job_id"] else None
        except NoSuchJobError:
            job = None
        if job is None:
            enqueue("train", TRAIN_JOB, run["pk"], run["attempt"], job_id=run["job_id"])
            record_event(project_id=run["project_id"], run_id=run["pk"], attempt=run["attempt"], source="reconciler",
                         level=EventLevel.WARNING,
                         message="its job was missing from Redis (restarted without its data, or unreachable when "
                                 "the run was queued); queued again")
            done["requeued"].append(run["pk"])
            continue
        status = job.get_status(refresh=False)
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            reason = (job.latest_result().exc_string.strip().splitlines()[-1]
                      if status == JobStatus.FAILED and job.latest_result() and job.latest_result().exc_string
                      else f"its job is {status}")
            try:
                lifecycle.mark_failed(run["pk"], f"the job failed before training started: {reason}",
                                      attempt=run["attempt"])
            except InvalidTransition:
                continue
            record_event(project_id=run["project_id"], run_id=run["pk"], attempt=run["attempt"], source="reconciler",
                         level=EventLevel.ERROR, message=f"failed: the job failed before training started: {reason}")
            done["failed_in_queue"].append(run["pk"])
