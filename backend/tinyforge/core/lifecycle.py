"""Status changes as conditional updates.

`UPDATE ... SET status = <to> WHERE id = <id> AND status IN (<allowed>)` is atomic in every
database we support, so two writers racing (a late job and a cancel, a duplicate delivery and
the reconciler) cannot both win, and nothing moves a record out of a terminal state. Each app's
lifecycle.py names its allowed transitions and calls `transition`.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models
from django.utils import timezone


class InvalidTransition(Exception):
    """The record is not in a status the requested change may start from (HTTP 409)."""

    def __init__(self, model: type[models.Model], pk, current: str | None, target: str):
        self.model, self.pk, self.current, self.target = model, pk, current, target
        super().__init__(
            f"{model._meta.verbose_name} {pk} is {current}; it cannot become {target}"
        )


def transition(model: type[models.Model], pk, *, to: str, allowed_from: Iterable[str], only_if: dict | None = None,
               **changes) -> None:
    """Move one record to `to` if its status is in `allowed_from` and its fields still hold the
    values in `only_if` (the attempt a worker works on, the stale heartbeat the reconciler saw),
    setting `changes` with it.

    Raises InvalidTransition (with the current status, or "on attempt <n>" when the record moved
    on to another attempt) when the record was elsewhere, and the model's DoesNotExist when there
    is no such record.
    """
    allowed, only_if = list(allowed_from), dict(only_if or {})
    if any(f.name == "updated_at" for f in model._meta.concrete_fields):
        changes.setdefault("updated_at", timezone.now())
    updated = model.all_teams.filter(pk=pk, status__in=allowed, **only_if).update(status=to, **changes)
    if updated == 1:
        return
    current = model.all_teams.filter(pk=pk).values("status", *only_if).first()
    if current is None:
        raise model.DoesNotExist(f"{model._meta.verbose_name} {pk} does not exist")
    label = current["status"]
    if "attempt" in only_if and current["attempt"] != only_if["attempt"]:
        label = f"on attempt {current['attempt']}"
    raise InvalidTransition(model, pk, label, to)


def update_if(model: type[models.Model], pk, *, statuses: Iterable[str], **changes) -> bool:
    """Set fields on a record only while it is in one of `statuses` (progress, heartbeats).

    Returns False when the record has moved on, so a job can tell that it was cancelled or
    reconciled and should stop.
    """
    return model.all_teams.filter(pk=pk, status__in=list(statuses)).update(**changes) == 1
