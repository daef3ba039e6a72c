"""The RQ worker class of the platform (settings.RQ["WORKER_CLASS"], so `manage.py rqworker`
uses it everywhere: compose, `tinyforge demo`, the tests).

Two kinds of worker process run it. Training workers listen on WORK_QUEUES (`rqworker ingest train
deploy`) and run one job at a time, a training run for hours. The scheduler listens on
CONTROL_QUEUE only (`rqworker --with-scheduler control`): it runs RQ's scheduler and the periodic
reconcilers and never trains, so a worker busy with a long run, or a backlog of train jobs, cannot
delay the pass that notices a run whose worker died.

On start every worker warns when Redis may evict keys (a queued job silently dropped under memory
pressure), runs the reconcilers once (a worker restarting after a crash cleans up after its
previous life before taking new work) and makes sure each periodic job is scheduled. Periodic jobs
reschedule themselves on CONTROL_QUEUE through RQ's scheduler; the database work happens in job
processes, never in the worker's own process, except for the one start-up pass after which its
connections are closed (a forked work horse must not share them).

Redis may restart, empty, at any moment (nothing the platform needs lives only there). Workers ride
it out by themselves: RQ's own loop quits on the first Redis error outside its wait for the next
job, so the worker tolerates them wherever it talks to Redis around a job (a run keeps training
while Redis is away; its result is in the database), and its maintenance, every
RECONCILE_INTERVAL_SECONDS instead of RQ's 10 minutes, restarts RQ's scheduler process (it dies
on a Redis error) and schedules the periodic jobs the restart lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

import django_rq
import redis
import rq
from django.conf import settings
from django.db import connections
from rq.registry import ScheduledJobRegistry

logger = logging.getLogger(__name__)

# The training workers' queues, in priority order. Nothing on them is scheduled with enqueue_in,
# so their workers run without RQ's scheduler.
WORK_QUEUES = ("ingest", "train", "deploy")
# Evaluations' queue, on an evaluator process of its own: a run's gate check must not wait for
# the hours of training a worker may be busy with, nor behind the queued train jobs.
EVAL_QUEUE = "eval"
# The periodic control jobs' queue; only the scheduler process listens on it.
CONTROL_QUEUE = "control"
# name -> (function, the setting holding its interval in seconds). Apps register theirs when
# Django starts (AppConfig.ready(); core.reconcile.register adds one per tracked-job kind).
PERIODIC_JOBS: dict[str, tuple[Callable[[], object], str]] = {}


def register_periodic(name: str, function: Callable[[], object], interval_setting: str) -> None:
    """Run `function` on the scheduler every `settings.<interval_setting>` seconds, and once when
    each worker starts."""
    PERIODIC_JOBS[name] = (function, interval_setting)

def warn_unless_noeviction(connection: redis.Redis) -> str | None:
    """Log a warning when Redis's maxmemory-policy is not noeviction; returns the policy."""
    try:
        policy = connection.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.RedisError as exc:  # managed Redis services often disable CONFIG
        logger.warning("could not read Redis maxmemory-policy (%s); make sure it is noeviction", exc)
        return None
    if policy != "noeviction":
        logger.warning(
            "Redis maxmemory-policy is %s, not noeviction: under memory pressure Redis may delete queued jobs. "
            "Set maxmemory-policy noeviction (runs whose job vanished are re-enqueued by the reconciler, later).",
            policy,
        )
    return policy


def _periodic_job_id(name: str) -> str:
    return f"periodic-{name}-{time.time_ns()}"


def schedule_periodic(name: str, *, after: float | None = None) -> None:
    """Schedule the next run of a periodic job."""
    function, interval_setting = PERIODIC_JOBS[name]
    delay = getattr(settings, interval_setting) if after is None else after
    queue = django_rq.get_queue(CONTROL_QUEUE, commit_mode="auto")
    queue.enqueue_in(timedelta(seconds=delay), "tinyforge.core.worker.run_periodic", name,
                     job_id=_periodic_job_id(name), result_ttl=60, failure_ttl=24 * 3600)


def ensure_periodic_jobs_scheduled() -> None:
    """Schedule each periodic job that has no run scheduled yet (a fresh Redis, or a chain a
    failure broke)."""
    queue = django_rq.get_queue(CONTROL_QUEUE, commit_mode="auto")
    scheduled = ScheduledJobRegistry(queue=queue).get_job_ids()
    waiting = queue.job_ids
    for name in PERIODIC_JOBS:
        prefix = f"periodic-{name}-"
        if not any(job_id.startswith(prefix) for job_id in [*scheduled, *waiting]):
            schedule_periodic(name)


def run_periodic(name: str):
    """The job: run the function, then schedule the next run whatever happened."""
    try:
        return PERIODIC_JOBS[name][0]()
    finally:
        schedule_periodic(name)


# Redis errors that mean "Redis is away for now" (restarting, a network blip), not a bug.
REDIS_AWAY = (redis.ConnectionError, redis.TimeoutError)


class Worker(rq.Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Soon after a Redis restart the scheduler process is running again and the periodic jobs
        # are scheduled again (see run_maintenance_tasks); RQ's default waits 10 minutes.
        self.maintenance_interval = settings.RECONCILE_INTERVAL_SECONDS
        # RQ's heartbeat of the running job (RQ's default: every 30 s) ticks with the run's own in
        # the database: one setting says how often a running job proves it is alive.
        self.job_monitoring_interval = settings.RUN_HEARTBEAT_SECONDS

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker waits for a job at most this long before its maintenance is due again.
        return max(1, min(super().dequeue_timeout, self.maintenance_interval))

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        if set(self.queue_names()) - {CONTROL_QUEUE}:
            # A work horse is forked per job: PyTorch and transformers imported here once are in
            # every horse at no cost, instead of seconds at the start of every training, ingest,
            # deploy or evaluation job. The web app and the scheduler never import them.
            import torch  # noqa: F401
            import transformers  # noqa: F401
        warn_unless_noeviction(self.connection)
        try:
            for name, (function, _interval) in PERIODIC_JOBS.items():
                try:
                    function()
                except Exception:  # the worker must start anyway; the scheduled pass retries
                    logger.exception("the start-up pass of %s failed", name)
        finally:
            connections.close_all()
        ensure_periodic_jobs_scheduled()

    def run_maintenance_tasks(self):
        try:
            super().run_maintenance_tasks()  # restarts RQ's scheduler process when it died
            ensure_periodic_jobs_scheduled()
        except redis.RedisError as exc:  # still due: the next turn of the loop tries again
            logger.warning("worker maintenance could not reach Redis: %s", exc)

    # ---- a Redis outage is waited out, never the end of the worker
    def execute_job(self, job, queue):
        try:
            super().execute_job(job, queue)
        except REDIS_AWAY as exc:
            # Raised after the work horse ended (monitor_work_horse tolerates it while the horse
            # runs): only RQ's bookkeeping of the job is lost, its outcome is in the database.
            logger.warning("Redis was unreachable when job %s ended (%s); its outcome is in the database", job.id, exc)

    def maintain_heartbeats(self, job, execution):
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_AWAY as exc:
            logger.warning("Redis is unreachable (%s); job %s keeps running", exc, job.id)

    def heartbeat(self, *args, **kwargs):
        try:
            super().heartbeat(*args, **kwargs)
        except REDIS_AWAY as exc:
            logger.warning("could not send the worker heartbeat to Redis: %s", exc)

    def set_state(self, *args, **kwargs):
        try:
            super().set_state(*args, **kwargs)
        except REDIS_AWAY as exc:
            logger.warning("could not record the worker state in Redis: %s", exc)

    def check_for_suspension(self, burst):
        try:
            super().check_for_suspension(burst)
        except REDIS_AWAY as exc:  # the wait for the next job retries until Redis is back
            logger.warning("could not check whether workers are suspended: %s", exc)
