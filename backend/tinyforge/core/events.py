"""Writing log lines to the event table (core.models.Event).

Jobs call `record_event` for single lines and `record_events` for batches (the training
callback buffers lines and metric points and writes them every few seconds).
"""

from __future__ import annotations

from collections.abc import Iterable

from tinyforge.core.models import Event, EventLevel


def record_event(*, project_id: int, message: str, level: str = EventLevel.INFO, source: str = "platform",
                 run_id: int | None = None, attempt: int | None = None, dataset_version_id: int | None = None,
                 deployment_id: int | None = None, export_id: int | None = None, data: dict | None = None) -> Event:
    return Event.all_teams.create(
        project_id=project_id, message=message, level=level, source=source, run_id=run_id, attempt=attempt,
        dataset_version_id=dataset_version_id, deployment_id=deployment_id, export_id=export_id, data=data or {},
    )


def record_events(events: Iterable[Event]) -> list[Event]:
    """Insert unsaved Event objects in one statement."""
    return Event.all_teams.bulk_create(list(events))
