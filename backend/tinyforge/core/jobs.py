"""Putting work on the RQ queues (ingest, train, deploy; the periodic jobs on control are
tinyforge.core.worker's).

Jobs get ids of database rows, never objects, and are enqueued when the surrounding transaction
commits: a rolled-back request leaves no job behind. The record keeps its job's id (each kind's
`job_id_for`: the row and attempt for train, ingest and export jobs, a fresh suffix for each
deploy, whose folder is its own), so the reconciler can look for the job in Redis and enqueue it
again under the same id. A job delivered twice does its work once: its first write is a
conditional claim of the record, which the second delivery loses. The functions named here live
in each app's jobs.py.

The database, not Redis, holds the truth: if Redis cannot be reached the record stays queued
(or pending), the error is logged, and the periodic reconciler enqueues it again, so a request
never fails because the broker blinked.
"""

from __future__ import annotations

import logging

import django_rq
import redis
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue(queue: str, function: str, *args, job_id: str, timeout: int | None = None) -> str:
    kwargs = {"job_id": job_id}
    if timeout is not None:
        kwargs["job_timeout"] = timeout

    def send() -> None:
        try:
            django_rq.get_queue(queue, commit_mode="auto").enqueue(function, *args, **kwargs)
        except redis.RedisError as exc:
            logger.error("could not enqueue job %s (%s) on %s: %s; the reconciler will enqueue it again",
                         job_id, function, queue, exc)

    transaction.on_commit(send)
    return job_id
