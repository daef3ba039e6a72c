"""PDF text extraction with pypdf, page by page, in a sandboxed child (see sandbox.py)."""

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
    password: str = ""  # tried when the PDF is encrypted; "" opens PDFs with no user password


def _pages(path: str, source: str, password: str) -> Iterator[tuple[int, Block]]:
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
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:  # a damaged page: say which
            raise SourceError(source, f"not a readable PDF: {type(exc).__name__}: {exc}", f"page {number}") from None
        yield count, Block(source, f"page {number}", "paragraph", text, page=number)


def iter_pdf_pages(path: str, source: str, limits: PdfLimits = PdfLimits()) -> Iterator[tuple[int, Block]]:
    """(page count, Block of the page's text) per page of the PDF at `path`, extracted under `limits`."""
    yield from iter_in_child(_pages, (path, source, limits.password), source, "PDF",
                             limits.memory_mb, limits.page_timeout_s)
