"""A job's heartbeat written from a thread, so one long step (tracing a model to ONNX, a huge PDF
page) never looks like a dead worker to the reconciler, which fails records whose heartbeat is
older than RUN_STALE_SECONDS."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

logger = logging.getLogger(__name__)


class Heartbeat:
    """`with Heartbeat(beat, name):` calls `beat()` every RUN_HEARTBEAT_SECONDS until the block
    ends, or until `beat()` returns False (the record moved on: nothing is left to keep alive)."""

    def __init__(self, beat: Callable[[], bool], name: str):
        self.beat, self.name = beat, name
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            while not self.done.wait(settings.RUN_HEARTBEAT_SECONDS):
                try:
                    if not self.beat():
                        return
                except Exception:  # a database blip must not end the beats; the next one retries
                    logger.exception("%s failed", self.name)
                    close_old_connections()
        finally:
            try:
                connection.close()  # this thread's own database connection
            except DatabaseError:  # a test's in-memory SQLite connection, shared with this thread
                pass

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(timeout=10)
