"""Files: TXT, Markdown, PDF, DOCX (documents) and CSV, JSON, JSONL (structured).

The format comes from the extension (or `format=`), and the content must agree: a ".pdf"
that is really a zip, or a ".csv" that is really a PDF, is refused rather than parsed as
something it is not. Text encodings are detected (UTF-8 first, then charset-normalizer).
Structured files are streamed record by record, so a file of any size reads in bounded memory.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from charset_normalizer import from_bytes

from tinyforge import bounded_json
from tinyforge.connectors.pdf import PdfLimits, iter_pdf_pages
from tinyforge.connectors.records import BadRecord, Block, RawRecord, Row, SourceError
from tinyforge.connectors.word import ZipLimits, iter_docx_blocks

DOCUMENT_FORMATS = ("txt", "md", "pdf", "docx")
STRUCTURED_FORMATS = ("csv", "json", "jsonl")
FORMATS = DOCUMENT_FORMATS + STRUCTURED_FORMATS
_EXTENSIONS = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".pdf": "pdf",
               ".docx": "docx", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "jsonl",
               ".ndjson": "jsonl"}
_SAMPLE_BYTES = 1 << 20
_COMMON_ENCODINGS = ("cp1252", "latin_1", "cp1251", "shift_jis", "gb18030", "euc_kr", "cp1250")
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")

csv.field_size_limit(64 * 1024 * 1024)  # one cell may hold a whole document; the default is 128 KB


def sniff_content(head: bytes) -> str:
    """What the first bytes of a file say it is: "pdf", "zip" or "text"."""
    if head.lstrip(b"\x00\t\r\n ")[:5] == b"%PDF-" or b"%PDF-" in head[:1024]:
        return "pdf"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:4] in (b"\x7fELF", b"\x89PNG") or head[:3] == b"\xff\xd8\xff" or head[:4] == b"GIF8":
        return "binary"
    return "text"


def detect_encoding(sample: bytes, source: str) -> str:
    """The text encoding of `sample`: UTF-8 (with or without BOM) when valid, else detected."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        # A sample may cut a multi-byte character in two at its end.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        if b"\x00" not in sample:
            return "utf-8"
    except UnicodeDecodeError:
        pass
    matches = list(from_bytes(sample))
    if not matches:
        raise SourceError(source, "not a text file: no text encoding fits its bytes (binary content?)")
    # Single-byte code pages often decode a text equally well; among the equally clean
    # candidates, the most widely used one is the likeliest to be right.
    cleanest = [m.encoding for m in matches if m.chaos <= matches[0].chaos + 0.01]
    return next((e for e in _COMMON_ENCODINGS if e in cleanest), matches[0].encoding)


@dataclass
class FileSource:
    """A local file read by format. `name` (shown in errors and metadata) defaults to the file name."""

    path: str
    format: str | None = None
    name: str = ""
    pdf_limits: PdfLimits = field(default_factory=PdfLimits)
    zip_limits: ZipLimits = field(default_factory=ZipLimits)
    encoding: str | None = None  # set once detected, for the report
    _fraction: float = 0.0

    def __post_init__(self) -> None:
        self.path = os.fspath(self.path)
        self.name = self.name or os.path.basename(self.path)
        if not os.path.isfile(self.path):
            raise SourceError(self.name, "no such file")
        fmt = self.format or _EXTENSIONS.get(os.path.splitext(self.path)[1].lower())
        with open(self.path, "rb") as f:
            head = f.read(4096)
        content = sniff_content(head)
        if fmt is None:
            if content == "pdf":
                fmt = "pdf"
            elif content == "zip":
                fmt = "docx"
            else:
                raise SourceError(self.name, "unknown file type: give a format "
                                             f"({', '.join(FORMATS)})")
        if fmt not in FORMATS:
            raise SourceError(self.name, f"unsupported format {fmt!r}; supported: {', '.join(FORMATS)}")
        expected = {"pdf": "pdf", "docx": "zip"}.get(fmt, "text")
        if content != expected:
            described = {"pdf": "a PDF", "zip": "a zip archive", "text": "text", "binary": "binary data"}
            raise SourceError(self.name, f"the file is named as {fmt.upper()} but its content is "
                                         f"{described[content]}; refusing to guess")
        if not head:
            raise SourceError(self.name, "the file is empty")
        self.format = fmt
        self.kind = "document" if fmt in DOCUMENT_FORMATS else "structured"

    def progress(self) -> float | None:
        return self._fraction

    def records(self) -> Iterator[RawRecord]:
        reader = {"txt": self._text_blocks, "md": self._text_blocks, "pdf": self._pdf_blocks,
                  "docx": self._docx_blocks, "csv": self._csv_rows, "json": self._json_rows,
                  "jsonl": self._jsonl_rows}[self.format]
        yield from reader()
        self._fraction = 1.0

    # -- text streams --------------------------------------------------------------------

    def _open_text(self, newline: str | None = None) -> tuple[io.BufferedReader, io.TextIOWrapper]:
        raw = open(self.path, "rb")
        sample = raw.read(_SAMPLE_BYTES)
        raw.seek(0)
        self.encoding = self.encoding or detect_encoding(sample, self.name)
        return raw, io.TextIOWrapper(raw, encoding=self.encoding, errors="strict", newline=newline)

    def _lines(self, text: io.TextIOWrapper, raw: io.BufferedReader) -> Iterator[tuple[int, str]]:
        size = max(os.path.getsize(self.path), 1)
        number = 0
        try:
            for number, line in enumerate(text, start=1):
                if "\x00" in line:
                    raise SourceError(self.name, f"contains a NUL byte at column {line.index(chr(0)) + 1} "
                                                 "(binary data, or UTF-16 without a byte order mark?)",
                                      f"line {number}")
                if number % 1024 == 0:
                    self._fraction = raw.tell() / size
                yield number, line
        except UnicodeDecodeError as exc:
            raise SourceError(self.name, f"bytes that are not valid {self.encoding} ({exc.reason}); "
                                         "the file mixes encodings", f"line {number + 1}") from None

    def _text_blocks(self) -> Iterator[Block]:
        raw, text = self._open_text()
        markdown = self.format == "md"
        headings: list[tuple[int, str]] = []
        paragraph: list[str] = []
        start = 0
        in_fence = False

        def flush() -> Iterator[Block]:
            body = "".join(paragraph).strip()
            paragraph.clear()
            if body:
                yield Block(self.name, f"line {start}", "paragraph", body, tuple(t for _, t in headings))

        with raw, text:
            for number, line in self._lines(text, raw):
                if markdown and _FENCE.match(line):
                    in_fence = not in_fence
                heading = _ATX_HEADING.match(line) if markdown and not in_fence else None
                if heading:
                    yield from flush()
                    level, title = len(heading.group(1)), heading.group(2).strip()
                    while headings and headings[-1][0] >= level:
                        headings.pop()
                    yield Block(self.name, f"line {number}", "heading", title,
                                tuple(t for _, t in headings), level)
                    headings.append((level, title))
                elif not line.strip() and not in_fence:
                    yield from flush()
                else:
                    if not paragraph:
                        start = number
                    paragraph.append(line)
            yield from flush()

    def _csv_rows(self) -> Iterator[Row | BadRecord]:
        raw, text = self._open_text(newline="")
        with raw, text:
            sample = text.read(65536)
            text.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
            except csv.Error:
                dialect = csv.excel_tab if self.path.lower().endswith(".tsv") else csv.excel
            reader = csv.reader(text, dialect)
            try:
                header = next(reader, None)
                if not header or not any(h.strip() for h in header):
                    raise SourceError(self.name, "no header row: the first line must name the columns", "line 1")
                header = [h.strip() for h in header]
                blank = [i + 1 for i, h in enumerate(header) if not h]
                if blank:
                    raise SourceError(self.name, f"header column {blank[0]} has no name", "line 1")
                size = max(os.path.getsize(self.path), 1)
                for row in reader:
                    if not row or not any(cell.strip() for cell in row):
                        continue
                    if reader.line_num % 1024 == 0:
                        self._fraction = raw.tell() / size
                    if len(row) != len(header):
                        yield BadRecord(self.name, f"line {reader.line_num}",
                                        f"ragged row: {len(row)} fields where the header has {len(header)}")
                        continue
                    yield Row(self.name, f"line {reader.line_num}", dict(zip(header, row)))
            except csv.Error as exc:
                raise SourceError(self.name, f"malformed CSV: {exc}", f"line {reader.line_num}") from None
            except UnicodeDecodeError as exc:
                raise SourceError(self.name, f"bytes that are not valid {self.encoding} ({exc.reason})",
                                  f"line {reader.line_num + 1}") from None

    def _jsonl_rows(self) -> Iterator[Row | BadRecord]:
        raw, text = self._open_text()
        with raw, text:
            for number, line in self._lines(text, raw):
                if not line.strip():
                    continue
                try:
                    value = bounded_json.loads(line.rstrip("\r\n"))  # an error at its end names a column of this line
                except json.JSONDecodeError as exc:
                    yield BadRecord(self.name, f"line {number}", f"not valid JSON: {exc.msg} at column {exc.colno}")
                    continue
                if not isinstance(value, dict):
                    yield BadRecord(self.name, f"line {number}", f"expected a JSON object, found {type(value).__name__}")
                    continue
                yield Row(self.name, f"line {number}", value)

    def _json_rows(self) -> Iterator[Row | BadRecord]:
        """Objects of a top-level JSON array, decoded one at a time (the array is never loaded whole)."""
        raw, text = self._open_text()
        decoder = json.JSONDecoder()
        # Every piece read is scanned before the decoder sees it: the decoder recurses per level.
        nesting = bounded_json.NestingScanner(bounded_json.MAX_DEPTH + 1)  # + the enclosing array
        size = max(os.path.getsize(self.path), 1)
        buffer, position, lines_before, index = "", 0, 1, 0

        def fill() -> bool:
            nonlocal buffer, position, lines_before
            chunk = text.read(1 << 20)
            if "\x00" in chunk:
                line = lines_before + buffer.count("\n") + chunk[: chunk.index("\x00")].count("\n")
                raise SourceError(self.name, "contains a NUL byte (binary data, or UTF-16 without a byte "
                                             "order mark?)", f"line {line}")
            lines_before += buffer.count("\n", 0, position)
            buffer = buffer[position:] + chunk
            position = 0
            deep = nesting.feed(chunk)
            if deep is not None:
                line = lines_before + buffer.count("\n", 0, len(buffer) - len(chunk) + deep)
                raise SourceError(self.name, f"not valid JSON: arrays and objects nested deeper than "
                                             f"{bounded_json.MAX_DEPTH} levels", f"line {line}")
            self._fraction = raw.tell() / size
            return bool(chunk)

        def skip_space() -> str:
            nonlocal position
            while True:
                while position < len(buffer) and buffer[position] in " \t\r\n":
                    position += 1
                if position < len(buffer) or not fill():
                    return buffer[position] if position < len(buffer) else ""

        def where() -> str:
            return f"line {lines_before + buffer.count(chr(10), 0, position)}"

        with raw, text:
            try:
                if skip_space() != "[":
                    raise SourceError(self.name, "expected a JSON array of objects (use .jsonl for one "
                                                 "object per line)", where())
                position += 1
                if skip_space() == "]":
                    return
                while True:
                    while True:
                        try:
                            value, end = decoder.raw_decode(buffer, position)
                            # A number or literal cut at the buffer's end decodes "successfully".
                            if end == len(buffer) and fill():
                                continue
                            break
                        except json.JSONDecodeError as exc:
                            line = lines_before + exc.lineno - 1
                            if not fill():
                                raise SourceError(self.name, f"not valid JSON: {exc.msg}", f"line {line}") from None
                    index += 1
                    if isinstance(value, dict):
                        yield Row(self.name, f"item {index} ({where()})", value)
                    else:
                        yield BadRecord(self.name, f"item {index} ({where()})",
                                        f"array item {index} is a {type(value).__name__}, expected an object")
                    position = end
                    separator = skip_space()
                    if separator == "]":
                        return
                    if separator != ",":
                        raise SourceError(self.name, f"expected ',' or ']' after item {index}", where())
                    position += 1
                    skip_space()
            except UnicodeDecodeError as exc:
                raise SourceError(self.name, f"bytes that are not valid {self.encoding} ({exc.reason})",
                                  where()) from None

    # -- documents -----------------------------------------------------------------------

    def _pdf_blocks(self) -> Iterator[Block]:
        any_text = False
        for count, page in iter_pdf_pages(self.path, self.name, self.pdf_limits):
            self._fraction = page.page / max(count, 1)
            for paragraph in re.split(r"\n\s*\n", page.text):
                paragraph = paragraph.strip()
                if paragraph:
                    any_text = True
                    yield Block(self.name, page.location, "paragraph", paragraph, page=page.page)
        if not any_text:
            raise SourceError(self.name, "no extractable text: the PDF holds only images (a scan?); "
                                         "run OCR on it first")

    def _docx_blocks(self) -> Iterator[Block]:
        yield from iter_docx_blocks(self.path, self.name, self.zip_limits)
