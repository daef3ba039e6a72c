"""Documents -> chunks along their structure.

A chunk never crosses a heading: each section (the blocks under one heading path) is packed
paragraph by paragraph up to `max_chars`, and the next chunk of the same section starts with
the last `overlap_chars` characters of the previous one (cut at a space). A paragraph longer than a chunk is
cut at sentence ends (or spaces) rather than mid-word. Sizes are in characters (about four
per token for English).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tinyforge.connectors.records import Block, SourceError

_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")


@dataclass(frozen=True)
class Chunk:
    text: str
    source: str
    location: str  # where the chunk starts
    heading_path: tuple[str, ...]  # including the section's own heading
    pages: tuple[int, int] | None = None  # first and last page, for paginated sources
    part: int = 1  # 1 for the first chunk of a section

    def metadata(self) -> dict:
        data = {"source": self.source, "location": self.location}
        if self.heading_path:
            data["heading_path"] = list(self.heading_path)
        if self.pages:
            data["pages"] = list(self.pages)
        return data


def sentences(text: str) -> list[str]:
    """`text`'s sentences, its whitespace folded to single spaces (line breaks inside a sentence too)."""
    return _SENTENCE_END.split(" ".join(text.split()))


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    """`text` cut into pieces of at most max_chars, at sentence ends where possible."""
    if len(text) <= max_chars:
        yield text
        return
    current = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            head, sentence = sentence[:cut].rstrip(), sentence[cut:].lstrip()
            if current:
                yield current
                current = ""
            yield head
        if current and len(current) + 1 + len(sentence) > max_chars:
            yield current
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current:
        yield current


def chunk_blocks(blocks: Iterable[Block], max_chars: int = 2000, overlap_chars: int = 200) -> Iterator[Chunk]:
    """Chunks of at most `max_chars` characters, section by section, in document order."""
    if max_chars < 100:
        raise SourceError("chunking", f"a chunk size of {max_chars} characters is too small (minimum 100)")
    if not 0 <= overlap_chars < max_chars // 2:
        raise SourceError("chunking", f"the overlap ({overlap_chars}) must be between 0 and half the chunk size")
    section: tuple[str, tuple[str, ...]] | None = None
    parts: list[tuple[str, int | None]] = []  # (text, page) of the chunk being filled
    size = 0
    location = ""
    part = 0

    def emit() -> Chunk:
        nonlocal part
        part += 1
        pages = [p for _, p in parts if p is not None]
        return Chunk("\n\n".join(t for t, _ in parts), section[0], location, section[1],
                     (min(pages), max(pages)) if pages else None, part)

    for block in blocks:
        if block.kind == "heading":
            key = (block.source, block.heading_path + (block.text,))
        else:
            key = (block.source, block.heading_path)
        if key != section:
            if parts:
                yield emit()
            section, parts, size, part = key, [], 0, 0
        if block.kind == "heading":
            continue
        # Pieces leave room for the overlap, so that a long paragraph still gets its context.
        for piece in _pieces(block.text, max_chars - overlap_chars):
            if parts and size + 2 + len(piece) > max_chars:
                chunk = emit()
                yield chunk
                # The next chunk starts with the end of this one (cut at a space), as context.
                tail = chunk.text[len(chunk.text) - overlap_chars:] if overlap_chars else ""
                tail = tail[tail.find(" ") + 1:] if " " in tail else tail
                parts = [(tail.strip(), parts[-1][1])] if tail.strip() else []
                size = len(tail) + 2 if parts else 0
            if not parts:
                location = block.location
            parts.append((piece, block.page))
            size += len(piece) + 2
    if parts:
        yield emit()
