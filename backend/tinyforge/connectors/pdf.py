"""PDF text extraction in a sandboxed child process.

A hostile or broken PDF (a flate bomb, a circular xref, a truncated body) can make a parser
eat memory or loop. pypdf has its own decompression limits, but a worker must survive
whatever pypdf misses, so pages are extracted in a forked child with an address-space limit
(RLIMIT_AS) and a deadline per page; the parent only ever receives text, one page at a time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass

from tinyforge.connectors.records import SourceError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PdfLimits:
    """Resource limits for extracting one PDF."""

    memory_mb: int = 1024  # address space the extracting child may add on top of its own
    page_timeout_s: float = 30.0  # the longest one page (or opening the file) may take
    password: str = ""  # tried when the PDF is encrypted; "" opens PDFs with no user password


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _extract_in_child(conn, path: str, limits: PdfLimits) -> None:
    # Relative to what the forked child already maps: a parent with torch loaded maps gigabytes.
    ceiling = _address_space_bytes() + limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, resource.getrlimit(resource.RLIMIT_AS)[1]))
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        from pypdf import PdfReader
        from pypdf.errors import FileNotDecryptedError, WrongPasswordError

        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                reader.decrypt(limits.password)
                reader.pages[0]  # decrypt() can "succeed" and still leave content locked
            except (FileNotDecryptedError, WrongPasswordError, NotImplementedError) as exc:
                hint = "the password given is wrong" if limits.password else "give its password"
                conn.send(("error", None, f"the PDF is encrypted ({exc}); {hint}"))
                return
        conn.send(("pages", len(reader.pages), None))
        for number, page in enumerate(reader.pages, start=1):
            conn.send(("page", number, page.extract_text() or ""))
        conn.send(("done", None, None))
    except MemoryError:
        conn.send(("error", None, f"extracting it needs more than {limits.memory_mb} MB of memory "
                                  "(a decompression bomb, or a damaged file)"))
    except RecursionError:
        conn.send(("error", None, "its object structure loops back on itself (circular references)"))
    except Exception as exc:  # any parser failure is a property of the file, reported as such
        conn.send(("error", None, f"not a readable PDF: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def iter_pdf_pages(path: str, source: str, limits: PdfLimits = PdfLimits()) -> Iterator[tuple[int, int, str]]:
    """Yield (page number, page count, text) for each page of the PDF at `path`.

    Raises SourceError naming the page when the file is damaged, encrypted, too large to
    extract within the limits, or too slow.
    """
    # fork: the child starts in microseconds and needs nothing re-imported.
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_extract_in_child, args=(sender, path, limits), daemon=True)
    child.start()
    sender.close()
    page_count, current = 0, 0
    try:
        while True:
            location = f"page {current + 1}" if page_count else None
            if not receiver.poll(limits.page_timeout_s):
                raise SourceError(source, f"extraction took longer than {limits.page_timeout_s:g} s "
                                          "(a malformed or hostile PDF?); stopped", location)
            try:
                kind, number, payload = receiver.recv()
            except EOFError:
                child.join(5)
                raise SourceError(source, "the PDF parser died (exit code "
                                          f"{child.exitcode}) reading the file; it is damaged", location) from None
            if kind == "pages":
                page_count = number
            elif kind == "page":
                current = number
                yield number, page_count, payload
            elif kind == "error":
                raise SourceError(source, payload, location)
            else:
                return
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
