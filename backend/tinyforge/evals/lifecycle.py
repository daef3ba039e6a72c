"""Every status change of an evaluation (see tinyforge.core.lifecycle).

queued -> running -> succeeded | failed; queued | running -> cancelled; queued -> failed. Succeeded,
failed and cancelled are final: a late or duplicate job cannot overwrite them.
"""

from __future__ import annotations

from django.utils import timezone

from tinyforge.core.lifecycle import InvalidTransition, transition, update_if
from tinyforge.evals.models import EvalStatus as S, Evaluation

ACTIVE = (S.QUEUED, S.RUNNING)

__all__ = ["ACTIVE", "InvalidTransition", "claim", "mark_succeeded", "mark_failed", "mark_cancelled",
           "record_progress", "record_heartbeat"]


def claim(evaluation_id: int, *, job_id: str = "") -> None:
    now = timezone.now()
    transition(Evaluation, evaluation_id, to=S.RUNNING, allowed_from=[S.QUEUED], started_at=now, heartbeat_at=now,
               **({"job_id": job_id} if job_id else {}))


def mark_succeeded(evaluation_id: int, *, summary: dict, rows_done: int, gate_passed: bool | None = None,
                   gate_reason: str = "") -> None:
    transition(Evaluation, evaluation_id, to=S.SUCCEEDED, allowed_from=[S.RUNNING], summary=summary,
               rows_done=rows_done, gate_passed=gate_passed, gate_reason=gate_reason, finished_at=timezone.now(),
               error="")


def mark_failed(evaluation_id: int, error: str, *, only_if: dict | None = None) -> None:
    transition(Evaluation, evaluation_id, to=S.FAILED, allowed_from=ACTIVE, only_if=only_if, error=error,
               finished_at=timezone.now())


def mark_cancelled(evaluation_id: int) -> None:
    transition(Evaluation, evaluation_id, to=S.CANCELLED, allowed_from=ACTIVE, finished_at=timezone.now())


def record_progress(evaluation_id: int, rows_done: int) -> bool:
    """Heartbeat plus progress; False once the evaluation is no longer running (cancelled, failed)."""
    return update_if(Evaluation, evaluation_id, statuses=[S.RUNNING], rows_done=rows_done, heartbeat_at=timezone.now())


def record_heartbeat(evaluation_id: int) -> bool:
    return update_if(Evaluation, evaluation_id, statuses=[S.RUNNING], heartbeat_at=timezone.now())
