"""PDF text extraction with pypdf, page by page, in sandboxed children (see sandbox.py).

pypdf spends nearly all its time in pure-Python content-stream parsing, one page at a time and
each page independently, so `workers` children each take every n-th page: on a machine with
free cores a PDF reads that many times faster than in one loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tinyforge.connectors.records import Block, SourceError
from tinyforge.connectors.sandbox import iter_in_child


@dataclass(frozen=True)
class PdfLimits:
    """Resource limits for extracting one PDF."""

    memory_mb: int = 1024  # address space the extracting child may add on top of its own
    page_timeout_s: float = 30.0  # the longest one page (or opening the file) may take
    workers: int = 2  # children extracting pages side by side, each under memory_mb

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("a PDF needs at least one worker")
    password: str = ""  # tried when the PDF is encrypted; "" opens PDFs with no user password


def _pages(path: str, source: str, password: str, shard: int = 0, shards: int = 1) -> Iterator[tuple[int, Block]]:
    """Pages shard + 1, shard + 1 + shards, ... of the PDF (all of them by default)."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, WrongPasswordError

    reader = PdfReader(path)
    if reader.is_encrypted:
        try:
            reader.decrypt(password)
            reader.pages[0]  # decrypt() can "succeed" and still leave the content locked
        except (FileNotDecryptedError, WrongPasswordError, NotImplementedError) as exc:
            hint = "the password given is wrong" if password else "give its password"
            raise SourceError(source, f"the PDF is encrypted ({exc}); {hint}") from None
    count = len(reader.pages)
    for number in range(shard + 1, count + 1, shards):
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:  # a damaged page: say which
            raise SourceError(source, f"not a readable PDF: {type(exc).__name__}: {exc}", f"page {number}") from None
        yield count, Block(source, f"page {number}", "paragraph", text, page=number)


def iter_pdf_pages(path: str, source: str, limits: PdfLimits = PdfLimits()) -> Iterator[tuple[int, Block]]:
    """(page count, Block of the page's text) per page of the PDF at `path`, extracted under `limits`."""
    yield from iter_in_child(_pages, (path, source, limits.password), source, "PDF",
                             limits.memory_mb, limits.page_timeout_s, shards=limits.workers)
