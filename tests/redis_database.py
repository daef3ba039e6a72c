"""Redis URLs for tests that share one server (CI's REDIS_URL)."""

from __future__ import annotations

import re


def moved_up(url: str, by: int) -> str:
    """`url` naming the database `by` numbers above its own (0 when it names none), query kept: a
    pytest-xdist worker's queues (tests/conftest.py) and a browser journey's platform
    (e2e/conftest.py) each get a database no one else uses or flushes. Redis has 16 (0-15)."""
    if by == 0:
        return url
    base, _, query = url.partition("?")
    match = re.search(r"/(\d+)$", base)
    number = (int(match[1]) if match else 0) + by
    if number > 15:
        raise ValueError(f"REDIS_URL {url}: database {number} is past Redis's 16")
    return f"{base[:match.start()] if match else base.rstrip('/')}/{number}" + (f"?{query}" if query else "")
