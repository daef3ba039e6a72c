"""Builders for test and benchmark inputs: real PDFs, DOCX files and the bad-file corpus.

The PDFs are written byte by byte (no PDF library can write text here without reportlab),
which also lets the hostile ones be exactly as hostile as intended.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path


def _escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1", "replace")


def _stream(data: bytes, compress: bool) -> bytes:
    if compress:
        data = zlib.compress(data)
        return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def assemble_pdf(objects: list[bytes], root: int, extra_trailer: bytes = b"") -> bytes:
    """A PDF file from object bodies (object n is objects[n-1]) with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, root, extra_trailer, xref))
    return out.getvalue()


def make_pdf(pages: list[list[str]], compress: bool = True) -> bytes:
    """A PDF whose page i shows the lines pages[i] in Helvetica; an empty line leaves a gap."""
    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        content = b"BT /F1 11 Tf 14 TL 56 800 Td\n" + b"".join(
            b"(" + _escape(line) + b") Tj T*\n" if line else b"T*\n" for line in lines) + b"ET"
        objects.append(_stream(content, compress))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                       b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % len(objects))
        kids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    return assemble_pdf(objects, root=1)


def make_image_only_pdf() -> bytes:
    pixels = bytes(range(256)) * 3 * 16
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /XObject /Subtype /Image /Width 64 /Height 64 /ColorSpace /DeviceRGB "
        b"/BitsPerComponent 8 /Length %d >>\nstream\n" % len(pixels) + pixels + b"\nendstream",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /XObject << /Im1 3 0 R >> >> "
        b"/Contents 5 0 R >>",
        _stream(b"q 400 0 0 400 100 300 cm /Im1 Do Q", compress=False),
    ]
    return assemble_pdf(objects, root=1)


def make_flate_bomb_pdf(unpacked_mb: int = 400) -> bytes:
    """One page whose content stream inflates from about 1 MB to `unpacked_mb` MB."""
    packer = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    packed = packer.compress(b"BT /F1 11 Tf 56 800 Td (boom) Tj ET\n")
    for _ in range(unpacked_mb):
        packed += packer.compress(chunk)
    packed += packer.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream",
    ]
    return assemble_pdf(objects, root=1)


def make_circular_pdf() -> bytes:
    """A page tree whose Pages node lists itself among its kids, and a trailer /Prev to itself."""
    pdf = make_pdf([["loop"]])
    pdf = pdf.replace(b"/Kids [5 0 R]", b"/Kids [2 0 R 5 0 R]")
    startxref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    return pdf.replace(b"/Root 1 0 R ", b"/Root 1 0 R /Prev %d " % startxref)


def make_encrypted_pdf(password: str = "s3cret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["top secret text"]]))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(path: Path, sections: list[tuple[int, str, list[str]]], table: list[list[str]] | None = None) -> Path:
    """A DOCX with (heading level, heading, paragraphs) sections and an optional table at the end."""
    import docx

    document = docx.Document()
    for level, heading, paragraphs in sections:
        document.add_heading(heading, level=level)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.save(path)
    return path


def rewrite_docx_member(source: Path, target: Path, member: str, data: bytes,
                        compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for item in original.infolist():
            if item.filename != member:
                out.writestr(item, original.read(item.filename))
        out.writestr(member, data, compress_type=compression)
    return target


def write_bad_corpus(folder: Path) -> dict[str, Path]:
    """Every hostile or broken file the connectors must refuse cleanly, by case name."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    good_pdf = make_pdf([["Chapter one", "", "Some words here."]] * 3)
    put("flate_bomb.pdf", make_flate_bomb_pdf())
    put("circular_xref.pdf", make_circular_pdf())
    put("truncated.pdf", good_pdf[: len(good_pdf) * 2 // 5])
    put("encrypted.pdf", make_encrypted_pdf())
    put("image_only.pdf", make_image_only_pdf())
    put("zip_named.pdf", b"PK\x03\x04" + b"\x00" * 100)
    put("pdf_named.csv", good_pdf)
    put("text_named.docx", b"this is plain text, not a Word document\n")
    put("ragged.csv", b"instruction,output\nsay hi,hi\nsay bye,bye,extra\n")
    put("wrong_types.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": ["d", "e"]}\n'
                             b'{"instruction": "f", "output": "g"}\n')
    put("nul_bytes.json", b'[{"instruction": "a", "output": "b\x00c"}]')
    put("nul_bytes.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "\x00", "output": "c"}\n')
    # 2 KB that recursed past Python's limit in json (RecursionError) before depth was bounded.
    deep = b'{"instruction": "a", "output": "b", "metadata": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    put("deeply_nested.jsonl", b'{"instruction": "a", "output": "b"}\n' + deep + b"\n")
    put("deeply_nested.json", b'[{"instruction": "a", "output": "b"},\n\n ' + deep + b"]")
    put("escaped_nul.jsonl", b'{"instruction": "a", "output": "b\\u0000c"}\n')
    put("not_utf8_invalid.jsonl", b'{"instruction": "a", "output": "b"}\n' + b'\xff\xfe\x00garbage\x81\n' * 3)
    base = folder / "_base.docx"
    make_docx(base, [(1, "Title", ["Body"])])
    entity = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
              b'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
              b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
              b'<w:body><w:p><w:r><w:t>&xxe;</w:t></w:r></w:p></w:body></w:document>')
    rewrite_docx_member(base, folder / "external_entity.docx", "word/document.xml", entity)
    files["external_entity.docx"] = folder / "external_entity.docx"
    rewrite_docx_member(base, folder / "zip_bomb.docx", "word/media/filler.bin", b"\x00" * (200 << 20))
    files["zip_bomb.docx"] = folder / "zip_bomb.docx"
    base.unlink()
    return files
