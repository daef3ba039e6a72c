"""Putting work on the RQ queues (ingest, train, deploy, default).

Jobs get ids of database rows, never objects, and are enqueued when the surrounding transaction
commits (settings.RQ COMMIT_MODE): a rolled-back request leaves no job behind. Job ids are
derived from the row (and attempt), so enqueuing the same work twice replaces, not duplicates.
The functions named here live in each app's jobs.py.
"""

from __future__ import annotations

import django_rq


def enqueue(queue: str, function: str, *args, job_id: str, timeout: int | None = None) -> str:
    kwargs = {"job_id": job_id}
    if timeout is not None:
        kwargs["job_timeout"] = timeout
    django_rq.get_queue(queue).enqueue(function, *args, **kwargs)
    return job_id
