"""The reconciler of every tracked job: the database says what should be happening, Redis and
the heartbeats say what is; one pass brings the two back together for one kind of record.

- A record in one of the kind's `working` statuses whose heartbeat is older than
  RUN_STALE_SECONDS lost its worker (SIGKILL, the OOM killer, a host that went away). Its job is
  stopped with RQ's stop-job command (a frozen worker that wakes up must not write again); the
  kind's `retry_lost` may start it again as its next attempt (training resumes from a checkpoint),
  otherwise it is marked failed and the kind's `on_lost` cleans up what it left.
- A record in one of the `waiting` statuses, untouched for longer than the kind's `grace`, whose
  job is missing from Redis (Redis restarted without its data, or was unreachable when the record
  was created) is enqueued again under the same job id; one whose job ended before it got to
  work (it failed, was stopped, or timed out) is marked failed.

Each change is a conditional update through `core.lifecycle.transition`, guarded on the attempt
and the heartbeat the pass saw, and each gets an event from source "reconciler". Two passes at
once, or a pass racing a live job, change a record at most once.

Registering a kind (in the app's `AppConfig.ready()`, as Django's admin asks apps to register
their models; core never imports an app):

    from tinyforge.core.reconcile import TrackedKind, register

    register(TrackedKind(
        name="evaluations",                       # the periodic job is "reconcile-evaluations"
        model=Evaluation,                         # a subclass of core.models.TrackedJob
        queue="eval", job="tinyforge.evals.jobs.evaluate",
        waiting=(EvalStatus.QUEUED,), working=(EvalStatus.RUNNING,),
        mark_failed=lifecycle.mark_failed,        # (pk, error, *, only_if) -> None, via transition
        job_id_for=lambda e: f"eval-{e.pk}",
        noun="evaluation", job_label="eval", remedy=lambda e: "start the evaluation again",
    ))

The job beats `heartbeat_at` (core.heartbeat.Heartbeat) while it works, and claims its record
with a transition from a waiting status to a working one. The scheduler process
(tinyforge.core.worker) runs every registered kind's pass every RECONCILE_INTERVAL_SECONDS, and
each worker runs them once when it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import django_rq
import redis
from django.conf import settings
from django.utils import timezone
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from tinyforge.core import worker
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.core.lifecycle import InvalidTransition
from tinyforge.core.models import EventLevel, TrackedJob

logger = logging.getLogger(__name__)

# A waiting record is enqueued when its transaction commits; only one untouched for longer than
# this whose job is missing has really lost it (a long request may commit well after its insert).
ENQUEUE_GRACE = timedelta(seconds=60)
# Redis's word for a job that ended without doing its work.
ENDED = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
SOURCE = "reconciler"


@dataclass(frozen=True)
class TrackedKind:
    """One kind of tracked job, as its app registers it."""

    name: str
    model: type[TrackedJob]
    queue: str
    job: str  # the dotted path of the job function, as core.jobs.enqueue takes it
    waiting: tuple[str, ...]  # statuses whose job sits on the queue, not yet at work
    mark_failed: Callable[..., None]  # (pk, error, *, only_if) -> None; raises InvalidTransition
    job_id_for: Callable[[TrackedJob], str]
    noun: str  # "run": "the worker running this run", "when the run was queued"
    job_label: str  # "train": "its train job was missing from Redis"
    remedy: Callable[[TrackedJob], str]  # what the user can do once it failed
    working: tuple[str, ...] = ()  # statuses a live job holds, beating the heartbeat
    doing: str = "running"  # "the worker importing this version"
    failed_label: str = "failed"  # the failure event: "<failed_label>: <error>"
    job_args: Callable[[TrackedJob], tuple] = lambda record: (record.pk,)
    grace: timedelta = ENQUEUE_GRACE
    waiting_filter: dict = field(default_factory=dict)  # more lookups a waiting record matches
    select_related: tuple[str, ...] = ()  # what event_links() reads
    lost_detail: Callable[[TrackedJob], str] = lambda record: ""  # ", last at step 5"
    retry_lost: Callable[[TrackedJob, int], str | None] | None = None  # moves it to its next attempt
    on_lost: Callable[[TrackedJob], None] | None = None  # after a lost record was failed
    passes: tuple[Callable[[datetime], dict[str, list[int]]], ...] = ()  # the kind's own, run first


KINDS: dict[str, TrackedKind] = {}


def register(kind: TrackedKind) -> None:
    """Reconcile `kind` on the scheduler as the periodic job "reconcile-<name>"."""
    KINDS[kind.name] = kind
    worker.register_periodic(f"reconcile-{kind.name}", lambda: reconcile(kind.name), "RECONCILE_INTERVAL_SECONDS")


def reconcile(name: str) -> dict[str, list[int]]:
    """One pass over one kind; the ids of the records it changed, by what it did."""
    kind = KINDS[name]
    now = timezone.now()
    done: dict[str, list[int]] = {}
    for extra in kind.passes:
        done.update(extra(now))
    done.update({"retried": [], "failed_lost": [], "requeued": [], "failed_in_queue": []})
    connection = django_rq.get_connection(kind.queue)
    if kind.working:
        _recover_lost(kind, connection, now, done)
    try:
        _recover_waiting(kind, connection, now, done)
    except redis.RedisError as exc:  # the waiting records wait for the next pass
        logger.warning("could not check the %s jobs in Redis: %s", kind.job_label, exc)
    changed = {what: ids for what, ids in done.items() if ids}
    if changed:
        logger.info("reconciled %s: %s", kind.name, changed)
    return done


def stop_job(connection, job_id: str) -> None:
    """RQ's stop-job command (the worker kills the job's work horse); nothing to do when the job
    or its worker is already gone."""
    if not job_id:
        return
    try:
        send_stop_job_command(connection, job_id)
    except (NoSuchJobError, InvalidJobOperation, redis.RedisError) as exc:
        logger.info("stop-job for %s: %s", job_id, exc)


def _say(record: TrackedJob, message: str, level: str) -> None:
    record_event(**record.event_links(), source=SOURCE, level=level, message=message)


def _recover_lost(kind: TrackedKind, connection, now, done) -> None:
    stale_before = now - timedelta(seconds=settings.RUN_STALE_SECONDS)
    lost = kind.model.all_teams.filter(status__in=kind.working, heartbeat_at__lt=stale_before)
    for record in lost.select_related(*kind.select_related):
        silent = int((now - record.heartbeat_at).total_seconds())
        stop_job(connection, record.job_id)
        retried = kind.retry_lost(record, silent) if kind.retry_lost else None
        if retried is not None:
            _enqueue_again(kind, kind.model.all_teams.select_related(*kind.select_related).get(pk=record.pk))
            _say(record, retried, EventLevel.WARNING)
            done["retried"].append(record.pk)
            continue
        error = (f"the worker {kind.doing} this {kind.noun} stopped responding (no heartbeat for {silent} s"
                 f"{kind.lost_detail(record)}): it was killed, ran out of memory or its machine went away; "
                 f"{kind.remedy(record)}")
        try:
            kind.mark_failed(record.pk, error, only_if={"attempt": record.attempt, "heartbeat_at": record.heartbeat_at})
        except InvalidTransition:
            continue  # it beat again, finished or moved on since the pass looked
        if kind.on_lost:
            kind.on_lost(record)
        _say(record, f"{kind.failed_label}: {error}", EventLevel.ERROR)
        done["failed_lost"].append(record.pk)


def _enqueue_again(kind: TrackedKind, record: TrackedJob) -> None:
    if not record.job_id:
        record.job_id = kind.job_id_for(record)
        kind.model.all_teams.filter(pk=record.pk).update(job_id=record.job_id)
    enqueue(kind.queue, kind.job, *kind.job_args(record), job_id=record.job_id)


def _recover_waiting(kind: TrackedKind, connection, now, done) -> None:
    waiting = kind.model.all_teams.filter(status__in=kind.waiting, updated_at__lt=now - kind.grace,
                                          **kind.waiting_filter)
    for record in waiting.select_related(*kind.select_related):
        try:
            job = Job.fetch(record.job_id, connection=connection) if record.job_id else None
        except NoSuchJobError:
            job = None
        if job is None:
            _enqueue_again(kind, record)
            _say(record, f"its {kind.job_label} job was missing from Redis (restarted without its data, or "
                         f"unreachable when the {kind.noun} was queued); queued again", EventLevel.WARNING)
            done["requeued"].append(record.pk)
            continue
        status = job.get_status(refresh=False)
        if status not in ENDED:
            continue
        result = job.latest_result() if status == JobStatus.FAILED else None
        reason = (result.exc_string.strip().splitlines()[-1] if result and result.exc_string
                  else f"it is {status}: its worker was stopped or it ran out of time")
        # A kind without working statuses is still waiting while its job works (a deployment
        # until the inference service loads what its job prepared).
        when = "before it started" if kind.working else "without finishing"
        error = f"the {kind.job_label} job {job.id} ended {when}: {reason}; {kind.remedy(record)}"
        try:
            kind.mark_failed(record.pk, error, only_if={"attempt": record.attempt})
        except InvalidTransition:
            continue
        _say(record, f"{kind.failed_label}: {error}", EventLevel.ERROR)
        done["failed_in_queue"].append(record.pk)
