"""Parsing untrusted files in a forked child with a memory ceiling and a deadline.

A hostile or broken file (a decompression bomb, a circular structure, a truncated body) can make
a parser eat memory or loop. The parsers have their own limits, but a worker must survive
whatever they miss, so the parsing runs in a forked child with an address-space limit
(RLIMIT_AS) and the parent waits for each batch of results only so long. The child also works
ahead while the parent chunks, cleans and writes, so the two overlap.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import multiprocessing
import os
import resource
from collections.abc import Callable, Iterator
from typing import Any

from tinyforge.connectors.records import SourceError

BATCH = 256


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _child(conn, produce: Callable[..., Iterator[Any]], args: tuple, memory_mb: int, what: str) -> None:
    # Relative to what the forked child already maps: a parent with torch loaded maps gigabytes.
    ceiling = _address_space_bytes() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, resource.getrlimit(resource.RLIMIT_AS)[1]))
    logging.disable(logging.WARNING)  # parser warnings about damaged files say nothing the errors do not
    # The parent's objects are never freed here; scanning them in every collection would cost time
    # and copy their memory pages (refcount writes) for nothing.
    gc.freeze()
    batch: list[Any] = []
    location = None
    try:
        for item in produce(*args):
            batch.append(item)
            location = getattr(item, "location", location)
            if len(batch) >= BATCH or what == "PDF":  # PDF pages are slow: send each at once
                conn.send(("items", batch, None))
                batch = []
        conn.send(("items", batch, None))
        conn.send(("done", None, None))
    except SourceError as exc:
        conn.send(("items", batch, None))
        conn.send(("error", exc.problem, exc.location))
    except MemoryError:
        conn.send(("error", f"reading it needs more than {memory_mb} MB of memory "
                            "(a decompression bomb, or a damaged file)", location))
    except RecursionError:
        conn.send(("error", "its structure loops back on itself (circular references)", location))
    except Exception as exc:  # any parser failure is a property of the file, reported as such
        conn.send(("error", f"not a readable {what}: {type(exc).__name__}: {exc}", location))
    finally:
        conn.close()


def iter_in_child(produce: Callable[..., Iterator[Any]], args: tuple, source: str, what: str,
                  memory_mb: int, timeout_s: float) -> Iterator[Any]:
    """Yield what `produce(*args)` yields, computed in a limited child process.

    Raises SourceError naming `source` when the child fails, dies, or sends nothing for
    `timeout_s` seconds (it is killed then).
    """
    # fork: the child starts in microseconds and needs nothing re-imported.
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    try:
        # A 1 MB pipe (Linux's default ceiling for unprivileged processes) lets the child run
        # several batches ahead of the parent instead of one: the two overlap more.
        fcntl.fcntl(sender.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass  # a system with a lower ceiling keeps the default 64 KB: slower, still correct
    child = context.Process(target=_child, args=(sender, produce, args, memory_mb, what), daemon=True)
    child.start()
    sender.close()
    location = None
    try:
        while True:
            if not receiver.poll(timeout_s):
                raise SourceError(source, f"reading took longer than {timeout_s:g} s (a malformed or hostile "
                                          f"{what}?); stopped", location)
            try:
                kind, payload, where = receiver.recv()
            except EOFError:
                child.join(5)
                raise SourceError(source, f"the {what} parser died (exit code {child.exitcode}); "
                                          "the file is damaged", location) from None
            if kind == "items":
                for item in payload:
                    location = getattr(item, "location", location)
                    yield item
            elif kind == "error":
                raise SourceError(source, payload, where or location)
            else:
                return
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
