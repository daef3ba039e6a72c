"""Writing log lines to the event table (core.models.Event), and finding a record's log in it.

Jobs call `record_event` for single lines and `record_events` for batches (the training
callback buffers lines and metric points and writes them every few seconds).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q

from tinyforge.core.models import Event, EventLevel


def record_event(*, project_id: int, message: str, level: str = EventLevel.INFO, source: str = "platform",
                 attempt: int | None = None, data: dict | None = None, **links) -> Event:
    """One line; `links` are the subject and parent columns (`record.event_links()` or
    `core.models.event_links_to`), none for a line about the project as a whole."""
    return Event.all_teams.create(project_id=project_id, message=message, level=level, source=source,
                                  attempt=attempt, data=data or {}, **links)


def record_events(events: Iterable[Event]) -> list[Event]:
    """Insert unsaved Event objects in one statement."""
    return Event.all_teams.bulk_create(list(events))


def in_log_of(model: type[models.Model], pk: int | None = None) -> Q:
    """The lines of record `pk` of `model` (of any of its records when None): those about it and
    those about a record that belongs to it (an export's lines are its run's too)."""
    kind = ContentType.objects.get_for_model(model)
    about, within = Q(subject_type=kind), Q(parent_type=kind)
    if pk is not None:
        about &= Q(subject_id=pk)
        within &= Q(parent_id=pk)
    return about | within
