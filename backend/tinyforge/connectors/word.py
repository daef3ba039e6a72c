"""DOCX reading: zip checks first, then the WordprocessingML body, in document order.

A DOCX is a zip of XML parts. Before anything parses it, the archive is checked for what
makes a zip hostile (huge declared sizes, extreme compression ratios, too many members) and
every XML part for a DOCTYPE: WordprocessingML never needs one, and it is where external
and recursive entities hide. The parts are then read with lxml (with entities and network
access off) in a sandboxed child (see sandbox.py).

python-docx is not used to read: its element classes build a Python object for every node,
which makes `paragraph.text` over a document about seven times slower than the XML parse
itself. The body is streamed once with lxml's iterparse instead (bounded memory, each block
dropped once read), taking paragraph text the way python-docx does (runs, hyperlinks and
tracked insertions; tabs, line breaks and non-breaking hyphens as characters).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

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


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_BODY, _P, _TBL, _TR, _TC = _W + "body", _W + "p", _W + "tbl", _W + "tr", _W + "tc"
_RUN, _RUN_HOLDERS = _W + "r", (_W + "hyperlink", _W + "ins", _W + "smartTag")
_TEXT, _BREAK, _VAL = _W + "t", _W + "br", _W + "val"
# Run content that stands for a character, as python-docx renders it.
_RUN_CHARACTERS = {_W + "tab": "\t", _W + "ptab": "\t", _W + "cr": "\n", _W + "noBreakHyphen": "-"}
_MAIN_PART, _STYLES_PART = "word/document.xml", "word/styles.xml"  # check_docx_archive requires the first


def _heading_levels(archive: zipfile.ZipFile) -> dict[str, int]:
    """Paragraph style id -> heading level, from the built-in heading names or an outline level."""
    if _STYLES_PART not in archive.namelist():
        return {}
    with archive.open(_STYLES_PART) as part:
        styles = etree.parse(part, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)).getroot()
    levels: dict[str, int] = {}
    for style in styles.iter(_W + "style"):
        style_id = style.get(_W + "styleId")
        name_element = style.find(_W + "name")
        name = (name_element.get(_VAL) if name_element is not None else "") or ""
        match = _HEADING_STYLE.match(name.strip())
        outline = style.find(f"{_W}pPr/{_W}outlineLvl")
        if match:
            levels[style_id] = int(match.group(1))
        elif name.strip().lower() == "title":
            levels[style_id] = 1
        elif outline is not None and (outline.get(_VAL) or "").isdigit() and int(outline.get(_VAL)) < 9:
            levels[style_id] = int(outline.get(_VAL)) + 1  # 0-based; 9 means body text
    return levels


def _paragraph_text(paragraph) -> str:
    parts = []
    for child in paragraph:
        if child.tag == _RUN:
            runs = (child,)
        elif child.tag in _RUN_HOLDERS:
            runs = child.iterchildren(_RUN)
        else:
            continue
        for run in runs:
            for item in run:
                tag = item.tag
                if tag == _TEXT:
                    parts.append(item.text or "")
                elif tag == _BREAK:
                    if item.get(_W + "type", "textWrapping") == "textWrapping":  # page and column breaks are not text
                        parts.append("\n")
                elif tag in _RUN_CHARACTERS:
                    parts.append(_RUN_CHARACTERS[tag])
    return "".join(parts)


def _paragraph_style(paragraph) -> str:
    properties = paragraph.find(_W + "pPr")
    style = properties.find(_W + "pStyle") if properties is not None else None
    return (style.get(_VAL) or "") if style is not None else ""


def _table_text(table) -> str:
    rows = []
    for row in table.iterchildren(_TR):
        cells = [" ".join("\n".join(_paragraph_text(p) for p in cell.iterchildren(_P)).split())
                 for cell in row.iterchildren(_TC)]
        rows.append(" | ".join(cells))
    return "\n".join(r for r in rows if r.strip(" |"))


def _blocks(path: str, source: str) -> Iterator[Block]:
    with zipfile.ZipFile(path) as archive:
        heading_levels = _heading_levels(archive)
        path_stack: list[tuple[int, str]] = []
        paragraph_number = table_number = 0
        with archive.open(_MAIN_PART) as part:
            for _, element in etree.iterparse(part, events=("end",), tag=(_P, _TBL), resolve_entities=False,
                                              no_network=True, load_dtd=False):
                parent = element.getparent()
                if parent is None or parent.tag != _BODY:
                    continue  # a table's paragraphs are read with their table
                headings = tuple(text for _, text in path_stack)
                if element.tag == _TBL:
                    table_number += 1
                    text = _table_text(element)
                    if text:
                        yield Block(source, f"table {table_number}", "table", text, headings)
                else:
                    paragraph_number += 1
                    text = _paragraph_text(element).strip()
                    level = heading_levels.get(_paragraph_style(element), 0) if text else 0
                    if level:
                        while path_stack and path_stack[-1][0] >= level:
                            path_stack.pop()
                        yield Block(source, f"paragraph {paragraph_number}", "heading", text,
                                    tuple(t for _, t in path_stack), level)
                        path_stack.append((level, text))
                    elif text:
                        yield Block(source, f"paragraph {paragraph_number}", "paragraph", text, headings)
                # Read blocks are dropped, so memory stays bounded by one block, not the document.
                element.clear()
                while element.getprevious() is not None:
                    del parent[0]
