"""The file connector: every format read with its structure, every bad file refused cleanly."""

from __future__ import annotations

import json
import resource
import time

import pypdf
import pytest

from samples import make_docx, make_flate_bomb_pdf, make_pdf
from tinyforge.connectors.files import FileSource
from tinyforge.connectors.pdf import PdfLimits
from tinyforge.connectors.records import BadRecord, Block, Row, SourceError


def read(path, **kwargs):
    return list(FileSource(str(path), **kwargs).records())


def test_it_reads_markdown_with_heading_paths_and_line_numbers(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text("# Guide\n\nIntro para.\n\n## Install\n\nRun it.\nTwice.\n\n```\n# not a heading\n```\n"
                    "# Usage\n\nUse it.\n")
    blocks = read(path)
    assert [(b.kind, b.text, b.heading_path) for b in blocks] == [
        ("heading", "Guide", ()),
        ("paragraph", "Intro para.", ("Guide",)),
        ("heading", "Install", ("Guide",)),
        ("paragraph", "Run it.\nTwice.", ("Guide", "Install")),
        ("paragraph", "```\n# not a heading\n```", ("Guide", "Install")),
        ("heading", "Usage", ()),
        ("paragraph", "Use it.", ("Usage",)),
    ]
    assert blocks[3].location == "line 7" and blocks[3].source == "guide.md"


def test_it_detects_a_non_utf8_text_encoding(tmp_path):
    path = tmp_path / "legacy.txt"
    text = ("Le café est prêt. Nous sommes allés à la plage, où il faisait très beau.\n"
            "Les élèves étudient près de l'église.\n\nÇa coûte 5 €, voilà.")
    path.write_bytes(text.encode("cp1252"))
    source = FileSource(str(path))
    blocks = list(source.records())
    assert blocks[0].text.startswith("Le café est prêt.")
    assert blocks[1].text == "Ça coûte 5 €, voilà."
    assert source.encoding.replace("_", "").lower() in ("cp1252", "windows1252")


def test_it_reads_utf16_with_bom(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_bytes("première ligne\n\nseconde".encode("utf-16"))
    assert [b.text for b in read(path)] == ["première ligne", "seconde"]


def test_it_reads_pdf_pages_in_order_with_page_numbers(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf([["First page words."], ["Second page (with parens)."]]))
    blocks = read(path)
    assert [(b.page, b.location) for b in blocks] == [(1, "page 1"), (2, "page 2")]
    assert "First page words." in blocks[0].text and "Second page (with parens)." in blocks[1].text


def test_it_reads_an_encrypted_pdf_with_its_password(bad_files):
    blocks = read(bad_files["encrypted.pdf"], pdf_limits=PdfLimits(password="s3cret"))
    assert "top secret text" in blocks[0].text


def test_it_reads_docx_headings_paragraphs_and_tables_in_order(tmp_path):
    path = make_docx(tmp_path / "manual.docx",
                     [(1, "Manual", ["Welcome."]), (2, "Setup", ["Plug it in."]), (1, "Care", ["Dust it."])],
                     table=[["Part", "Price"], ["Lid", "3 EUR"]])
    blocks = read(path)
    assert [(b.kind, b.text, b.heading_path) for b in blocks] == [
        ("heading", "Manual", ()),
        ("paragraph", "Welcome.", ("Manual",)),
        ("heading", "Setup", ("Manual",)),
        ("paragraph", "Plug it in.", ("Manual", "Setup")),
        ("heading", "Care", ()),
        ("paragraph", "Dust it.", ("Care",)),
        ("table", "Part | Price\nLid | 3 EUR", ("Care",)),
    ]


def test_it_streams_csv_json_and_jsonl_rows_with_locations(tmp_path):
    (tmp_path / "a.csv").write_text('question;answer\n"multi\nline";yes\nq2;no\n')
    rows = read(tmp_path / "a.csv")
    assert [(r.location, r.fields) for r in rows] == [
        ("line 3", {"question": "multi\nline", "answer": "yes"}), ("line 4", {"question": "q2", "answer": "no"})]
    items = [{"prompt": f"p{i}", "completion": "x" * 5000} for i in range(600)]  # spans buffer refills
    (tmp_path / "a.json").write_text(json.dumps(items, indent=1))
    rows = read(tmp_path / "a.json")
    assert [r.fields for r in rows] == items and rows[1].location.startswith("item 2 (line ")
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    assert [(r.location, r.fields) for r in read(tmp_path / "a.jsonl")] == [("line 1", {"a": 1}), ("line 3", {"a": 2})]


def test_docx_paragraph_text_is_what_python_docx_reads_tabs_breaks_and_hyperlinks_included(tmp_path):
    import docx
    from docx.enum.text import WD_BREAK
    from docx.oxml import parse_xml

    document = docx.Document()
    document.add_heading("Wiring", level=1)
    paragraph = document.add_paragraph("Volts")
    paragraph.add_run().add_tab()
    paragraph.add_run("230, then")
    paragraph.add_run().add_break()
    paragraph.add_run("earth.")
    paragraph.add_run().add_break(WD_BREAK.PAGE)  # a page break is layout, not text
    linked = document.add_paragraph("See ")
    linked._p.append(parse_xml(
        '<w:hyperlink xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" w:anchor="x">'
        "<w:r><w:t>the manual</w:t></w:r></w:hyperlink>"))
    grid = document.add_table(rows=2, cols=3)
    grid.cell(0, 0).merge(grid.cell(0, 1)).text = "Merged title"
    grid.cell(0, 2).text = "Price"
    grid.cell(1, 0).text, grid.cell(1, 1).text, grid.cell(1, 2).text = "Lid", "blue", "3 EUR"
    document.save(tmp_path / "wiring.docx")
    expected = [p.text.strip() for p in docx.Document(tmp_path / "wiring.docx").paragraphs]
    blocks = read(tmp_path / "wiring.docx")
    assert [b.text for b in blocks if b.kind != "table"] == expected == ["Wiring", "Volts\t230, then\nearth.", "See the manual"]
    assert blocks[-1].text == "Merged title | Price\nLid | blue | 3 EUR"  # a merged cell once
    assert (blocks[0].kind, blocks[1].heading_path) == ("heading", ("Wiring",))


def test_a_custom_docx_style_with_an_outline_level_is_a_heading(tmp_path):
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.oxml import parse_xml

    document = docx.Document()
    chapter = document.styles.add_style("Kapitel", WD_STYLE_TYPE.PARAGRAPH)
    chapter.element.get_or_add_pPr().append(parse_xml(
        '<w:outlineLvl xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" w:val="0"/>'))
    document.add_paragraph("Wartung", style="Kapitel")
    document.add_paragraph("Jährlich prüfen.")
    document.save(tmp_path / "de.docx")
    assert [(b.kind, b.text, b.level, b.heading_path) for b in read(tmp_path / "de.docx")] == [
        ("heading", "Wartung", 1, ()), ("paragraph", "Jährlich prüfen.", 0, ("Wartung",))]


@pytest.mark.parametrize("name, message", [
    ("zip_named.pdf", "named as PDF but its content is a zip archive"),
    ("pdf_named.csv", "named as CSV but its content is a PDF"),
    ("text_named.docx", "named as DOCX but its content is text"),
    ("truncated.pdf", "truncated.pdf: not a readable PDF"),
    ("circular_xref.pdf", "circular_xref.pdf: not a readable PDF"),
    ("flate_bomb.pdf", "flate_bomb.pdf, page 1: not a readable PDF: LimitReachedError"),
    ("encrypted.pdf", "encrypted.pdf: the PDF is encrypted"),
    ("image_only.pdf", "image_only.pdf: no extractable text"),
    ("external_entity.docx", "external_entity.docx, word/document.xml: rejected: the XML declares a DOCTYPE"),
    ("zip_bomb.docx", "zip_bomb.docx, word/media/filler.bin: rejected as a zip bomb"),
    ("nul_bytes.json", "nul_bytes.json, line 1: contains a NUL byte"),
    ("nul_bytes.jsonl", "nul_bytes.jsonl, line 2: contains a NUL byte at column 18"),
    ("not_utf8_invalid.jsonl", "not a text file: no text encoding fits its bytes"),
    ("deeply_nested.json", "deeply_nested.json, line 3: not valid JSON: arrays and objects nested deeper than 100"),
])
def test_it_refuses_bad_files_with_a_clear_error(bad_files, name, message):
    started = time.monotonic()
    with pytest.raises(SourceError) as error:
        read(bad_files[name])
    assert message in str(error.value)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("name, content, bad, rows", [
    ("ragged.csv", None, [("line 3", "ragged row: 3 fields where the header has 2")], 1),
    ("wrong_types.jsonl", None, [], 3),  # a row of the wrong shape is read; making it an example fails
    ("deeply_nested.jsonl", None, [("line 2", "not valid JSON: arrays and objects nested deeper than 100 levels "
                                              "at column 148")], 1),
    ("lines.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "c", \n[1, 2]\n{"instruction": "d", "output": "e"}\n',
     [("line 2", "not valid JSON: Expecting property name enclosed in double quotes at column 22"),
      ("line 3", "expected a JSON object, found list")], 2),
    ("items.json", b'[{"instruction": "a", "output": "b"},\n "text",\n {"instruction": "d", "output": "e"}]',
     [("item 2 (line 2)", "array item 2 is a str, expected an object")], 2),
])
def test_a_record_it_cannot_read_is_yielded_as_bad_and_the_others_are_read(bad_files, tmp_path, name, content, bad,
                                                                           rows):
    path = bad_files[name] if content is None else tmp_path / name
    if content is not None:
        path.write_bytes(content)
    records = read(path)
    assert [(r.location, r.problem) for r in records if isinstance(r, BadRecord)] == bad
    assert sum(isinstance(r, Row) for r in records) == rows and all(r.source == name for r in records)


def test_it_refuses_a_wrong_pdf_password(bad_files):
    with pytest.raises(SourceError, match="the password given is wrong"):
        read(bad_files["encrypted.pdf"], pdf_limits=PdfLimits(password="guess"))


@pytest.fixture
def pypdf_without_limits():
    """pypdf's own decompression limits off, so that only our sandbox stands in the way."""
    with pypdf.apply_configuration(zlib_maximum_output_length=1 << 40):
        yield


def test_a_flate_bomb_past_pypdf_limits_hits_the_memory_ceiling_and_the_worker_survives(
        tmp_path, pypdf_without_limits):
    path = tmp_path / "bomb.pdf"
    path.write_bytes(make_flate_bomb_pdf(unpacked_mb=400))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(SourceError, match="needs more than 64 MB of memory|parser died"):
        read(path, pdf_limits=PdfLimits(memory_mb=64))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB: the bomb stayed in the child
    assert [b.page for b in read(_ok_pdf(tmp_path))] == [1]


def test_a_pdf_that_takes_too_long_is_stopped(tmp_path, pypdf_without_limits):
    path = tmp_path / "slow.pdf"
    path.write_bytes(make_flate_bomb_pdf(unpacked_mb=300))
    started = time.monotonic()
    with pytest.raises(SourceError, match="reading took longer than 0.3 s"):
        read(path, pdf_limits=PdfLimits(memory_mb=8192, page_timeout_s=0.3))
    assert time.monotonic() - started < 5


def _ok_pdf(tmp_path):
    path = tmp_path / "ok.pdf"
    path.write_bytes(make_pdf([["fine"]]))
    return path


def test_records_carry_provenance(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n')
    (row,) = read(tmp_path / "x.jsonl", name="upload-17/x.jsonl")
    assert isinstance(row, Row) and row.source == "upload-17/x.jsonl" and row.location == "line 1"
    assert isinstance(read(_ok_pdf(tmp_path))[0], Block)
