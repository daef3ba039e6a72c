"""DOCX reading: zip checks first, then python-docx, in document order.

A DOCX is a zip of XML parts. Before python-docx sees it, the archive is checked for what
makes a zip hostile (huge declared sizes, extreme compression ratios, too many members) and
every XML part for a DOCTYPE: WordprocessingML never needs one, and it is where external
and recursive entities hide. python-docx's own parser also has resolve_entities=False, and it
runs in a sandboxed child (see sandbox.py).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from tinyforge.connectors.records import Block, SourceError
from tinyforge.connectors.sandbox import iter_in_child

# Built-in styles keep English names in styles.xml whatever the UI language.
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


@dataclass(frozen=True)
class ZipLimits:
    max_total_mb: int = 512  # sum of uncompressed member sizes
    max_ratio: int = 200  # uncompressed / compressed, for members over 1 MB
    max_members: int = 10_000
    memory_mb: int = 2048  # address space the parsing child may add (see sandbox.py)
    timeout_s: float = 120.0  # the longest the parser may go without producing a batch of blocks


def check_docx_archive(path: str, source: str, limits: ZipLimits = ZipLimits()) -> None:
    """Refuse a DOCX that is not a sane zip of Word parts. Raises SourceError."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(source, f"not a DOCX file: the zip container is damaged ({exc})") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise SourceError(source, f"rejected: the archive has {len(members)} members "
                                      f"(limit {limits.max_members})")
        names = {m.filename for m in members}
        if "word/document.xml" not in names:
            raise SourceError(source, "not a DOCX file: it is a zip without word/document.xml")
        total = 0
        for member in members:
            total += member.file_size
            if total > limits.max_total_mb * 1024 * 1024:
                raise SourceError(source, "rejected as a zip bomb: it unpacks to more than "
                                          f"{limits.max_total_mb} MB", member.filename)
            if member.file_size > 1024 * 1024 and member.file_size > limits.max_ratio * max(member.compress_size, 1):
                raise SourceError(source, f"rejected as a zip bomb: member compresses "
                                          f"{member.file_size // max(member.compress_size, 1)}:1", member.filename)
            if member.filename.endswith((".xml", ".rels")):
                with archive.open(member) as part:
                    # A DOCTYPE can only stand before the root element, so the head of the part is enough.
                    head = part.read(65536)
                if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                    raise SourceError(source, "rejected: the XML declares a DOCTYPE/entities "
                                              "(external or recursive entities are not allowed)", member.filename)


def iter_docx_blocks(path: str, source: str, limits: ZipLimits = ZipLimits()) -> Iterator[Block]:
    """Headings, paragraphs and tables of a DOCX, in document order, with the heading path."""
    check_docx_archive(path, source, limits)
    yield from iter_in_child(_blocks, (path, source), source, "DOCX", limits.memory_mb, limits.timeout_s)


def _blocks(path: str, source: str) -> Iterator[Block]:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(path)
    except Exception as exc:  # python-docx raises many kinds for damaged parts
        raise SourceError(source, f"not a readable DOCX: {type(exc).__name__}: {exc}") from None
    # Style lookups through python-docx walk the styles part per paragraph; a dict is enough.
    heading_levels: dict[str, int] = {}
    for style in document.styles:
        name = (style.name or "").strip()
        match = _HEADING_STYLE.match(name)
        if match:
            heading_levels[style.style_id] = int(match.group(1))
        elif name.lower() == "title":
            heading_levels[style.style_id] = 1
    path_stack: list[tuple[int, str]] = []
    paragraph_number = table_number = 0
    for item in document.iter_inner_content():
        headings = tuple(text for _, text in path_stack)
        if isinstance(item, Table):
            table_number += 1
            rows = []
            for row in item.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                # Merged cells repeat; keep each once per row.
                deduped = [c for i, c in enumerate(cells) if i == 0 or c != cells[i - 1]]
                rows.append(" | ".join(deduped))
            text = "\n".join(r for r in rows if r.strip(" |"))
            if text:
                yield Block(source, f"table {table_number}", "table", text, headings)
            continue
        paragraph_number += 1
        text = item.text.strip()
        if not text:
            continue
        level = heading_levels.get(item._p.style or "", 0)
        if level:
            while path_stack and path_stack[-1][0] >= level:
                path_stack.pop()
            yield Block(source, f"paragraph {paragraph_number}", "heading", text,
                        tuple(t for _, t in path_stack), level)
            path_stack.append((level, text))
        else:
            yield Block(source, f"paragraph {paragraph_number}", "paragraph", text, headings)
