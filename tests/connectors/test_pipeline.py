"""From raw records to a validated JSONL dataset: mapping, chunking, recipes, cleaning, the CLI."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from http.server import ThreadingHTTPServer

import pytest

from connectors.chat_model import ChatCompletions
from samples import make_docx, make_pdf
from tinyforge.cli import main as tinyforge
from tinyforge.connectors.chunking import chunk_blocks
from tinyforge.connectors.cleaning import Deduplicator, Scrubber
from tinyforge.connectors.files import FileSource
from tinyforge.connectors.pipeline import IngestOptions, ingest
from tinyforge.connectors.recipes import QAOptions
from tinyforge.connectors.records import Block, SourceError
from tinyforge.errors import TinyforgeError
from tinyforge.ml.schema import validate_file


def rows_of(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.mark.parametrize("record, expected", [
    ({"instruction": "Add", "input": "2 2", "output": "4", "id": 7},
     {"instruction": "Add", "input": "2 2", "output": "4"}),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
     {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
     {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
    ({"prompt": "Say hi", "completion": "hi"}, {"instruction": "Say hi", "output": "hi"}),
    ({"question": "Why?", "answer": "Because.", "context": "Ctx"},
     {"instruction": "Why?", "input": "Ctx", "output": "Because."}),
])
def test_it_detects_common_shapes(tmp_path, record, expected):
    (tmp_path / "in.jsonl").write_text(json.dumps(record) + "\n")
    report = ingest(FileSource(tmp_path / "in.jsonl"), IngestOptions(), tmp_path / "out.jsonl")
    (row,) = rows_of(tmp_path / "out.jsonl")
    assert {k: v for k, v in row.items() if k != "metadata"} == expected
    assert row["metadata"]["source"] == "in.jsonl" and row["metadata"]["location"] == "line 1"
    assert report.validation["valid_rows"] == 1 and report.shape


def test_it_detects_the_shape_of_each_row_so_instruction_and_chat_rows_mix(tmp_path):
    rows = [{"instruction": "Add", "output": "4"},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"prompt": "Say hi", "completion": "hi"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = ingest(FileSource(tmp_path / "in.jsonl"), IngestOptions(), tmp_path / "out.jsonl")
    assert report.validation["valid_rows"] == 3
    assert report.shape == "mixed: alpaca, messages, prompt_completion"
    assert [sorted(set(r) - {"metadata"}) for r in rows_of(tmp_path / "out.jsonl")] == [
        ["instruction", "output"], ["messages"], ["instruction", "output"]]


def test_the_demo_dataset_imports_whole(tmp_path):
    demo = Path(__file__).resolve().parents[2] / "examples" / "data" / "demo_dataset.jsonl"
    report = ingest(FileSource(demo), IngestOptions(), tmp_path / "out.jsonl")
    lines = sum(1 for line in demo.open() if line.strip())
    assert report.validation["valid_rows"] == lines and report.validation["invalid_count"] == 0


def test_a_user_mapping_maps_csv_columns_and_keeps_chosen_metadata(tmp_path):
    (tmp_path / "faq.csv").write_text("ask,reply,team,secret\nHow?,Like this.,ops,x\n")
    options = IngestOptions(mapping={"instruction": "ask", "output": "reply", "metadata": "team"})
    ingest(FileSource(tmp_path / "faq.csv"), options, tmp_path / "out.jsonl")
    assert rows_of(tmp_path / "out.jsonl") == [{"instruction": "How?", "output": "Like this.", "metadata": {
        "team": "ops", "source": "faq.csv", "location": "line 2"}}]


def test_a_bad_record_stops_the_import_and_leaves_no_file_or_is_skipped_and_listed(tmp_path, bad_files):
    out = tmp_path / "out.jsonl"
    out.write_text("earlier version\n")
    with pytest.raises(SourceError, match=r"escaped_nul.jsonl, line 1: field 'output' contains a NUL character"):
        ingest(FileSource(bad_files["escaped_nul.jsonl"]), IngestOptions(), out)
    assert out.read_text() == "earlier version\n" and not (tmp_path / "out.jsonl.partial").exists()
    (tmp_path / "mixed.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": " ", "output": "c"}\n'
                                          '{"instruction": "d", "output": "e"}\n')
    with pytest.raises(SourceError, match=r"mixed.jsonl, line 2: cannot become a dataset row: instruction"):
        ingest(FileSource(tmp_path / "mixed.jsonl"), IngestOptions(), out)
    report = ingest(FileSource(tmp_path / "mixed.jsonl"), IngestOptions(skip_bad_records=True), out)
    assert report.examples_written == 2 and report.skipped_count == 1
    assert report.skipped[0]["location"] == "line 2" and "blank" in report.skipped[0]["reason"]


@pytest.mark.parametrize("name, error, skipped", [
    ("ragged.csv", "ragged.csv, line 3: ragged row: 3 fields where the header has 2",
     [{"source": "ragged.csv", "location": "line 3", "field": "row",
       "reason": "ragged row: 3 fields where the header has 2"}]),
    ("wrong_types.jsonl", "wrong_types.jsonl, line 2: field 'output' holds a list, expected text",
     [{"source": "wrong_types.jsonl", "location": "line 2", "field": "output",
       "reason": "field 'output' holds a list, expected text"}]),
])
def test_bad_rows_are_skipped_and_listed_with_every_record_accounted_for(tmp_path, bad_files, name, error, skipped):
    with pytest.raises(SourceError) as stopped:
        ingest(FileSource(bad_files[name]), IngestOptions(), tmp_path / "out.jsonl")
    assert str(stopped.value) == error
    report = ingest(FileSource(bad_files[name]), IngestOptions(skip_bad_records=True), tmp_path / "out.jsonl")
    assert report.skipped == skipped and report.skipped_count == 1
    assert report.records_read == report.examples_written + report.skipped_count + report.exact_duplicates \
        + report.near_duplicates
    assert len(rows_of(tmp_path / "out.jsonl")) == report.examples_written == report.records_read - 1


def test_every_bad_row_of_a_source_is_listed_and_counted(tmp_path):
    lines = [json.dumps({"instruction": f"q{n}", "output": f"a{n}"}) for n in range(6)]
    lines[1] = '{"instruction": "broken",'
    lines[3] = json.dumps({"instruction": "q3", "output": 3.5})
    lines[4] = "[]"
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    report = ingest(FileSource(tmp_path / "in.jsonl"), IngestOptions(skip_bad_records=True), tmp_path / "out.jsonl")
    assert [(s["location"], s["field"]) for s in report.skipped] == [("line 2", "row"), ("line 5", "row")]
    # 3.5 becomes the text "3.5" (a CSV cell would be text too): not a bad row
    assert report.examples_written == 4 and report.records_read == 6


def test_chunks_follow_sections_with_size_and_overlap():
    words = " ".join(f"w{i}." for i in range(150))  # 150 short sentences, ~750 characters
    blocks = [Block("d", "line 1", "heading", "A"), Block("d", "line 2", "paragraph", "Intro.", ("A",)),
              Block("d", "line 3", "paragraph", words, ("A",)), Block("d", "line 9", "heading", "B", ("A",)),
              Block("d", "line 10", "paragraph", "Bee.", ("A", "B"), page=4)]
    chunks = list(chunk_blocks(blocks, max_chars=300, overlap_chars=60))
    assert all(len(c.text) <= 300 for c in chunks)
    assert chunks[0].text.startswith("Intro.\n\nw0.") and chunks[0].heading_path == ("A",)
    assert chunks[-1].text == "Bee." and chunks[-1].heading_path == ("A", "B") and chunks[-1].pages == (4, 4)
    section_a = [c for c in chunks if c.heading_path == ("A",)]
    assert [c.part for c in section_a] == list(range(1, len(section_a) + 1)) and len(section_a) >= 3
    tail = section_a[0].text.split()[-1]
    assert section_a[1].text.startswith(tail) or tail in section_a[1].text[:60]  # overlap carried over
    joined = " ".join(c.text for c in section_a)
    assert all(f"w{i}." in joined for i in range(150))


def test_a_docx_becomes_section_instructions(tmp_path):
    path = make_docx(tmp_path / "policy.docx", [(1, "Leave", ["Twenty days a year."]), (2, "Sick leave", ["Unlimited."])],
                     table=[["Role", "Days"], ["Staff", "20"]])
    report = ingest(FileSource(path), IngestOptions(recipe="sections"), tmp_path / "out.jsonl")
    rows = rows_of(tmp_path / "out.jsonl")
    assert [(r["instruction"], r["output"]) for r in rows] == [
        ('What does the section "Leave" of policy.docx say?', "Twenty days a year."),
        ('What does the section "Leave > Sick leave" of policy.docx say?', "Unlimited.\n\nRole | Days\nStaff | 20"),
    ]
    assert rows[1]["metadata"]["heading_path"] == ["Leave", "Sick leave"] and report.chunks == 2


def test_a_pdf_becomes_text_chunks_with_pages(tmp_path):
    path = tmp_path / "book.pdf"
    path.write_bytes(make_pdf([[f"Page {p} line {i} of the book." for i in range(30)] for p in range(1, 4)]))
    report = ingest(FileSource(path), IngestOptions(chunk_chars=1000, overlap_chars=0), tmp_path / "out.jsonl")
    rows = rows_of(tmp_path / "out.jsonl")
    assert report.records_read == 3 and len(rows) >= 3
    assert rows[0]["instruction"] == "Write the passage from book.pdf." and rows[0]["metadata"]["pages"] == [1, 1]
    assert validate_file(tmp_path / "out.jsonl").valid_rows == len(rows)


def test_duplicates_and_near_duplicates_are_dropped_and_counted():
    dedup = Deduplicator(threshold=0.8)
    base = " ".join(f"term{i} alpha{i % 7}" for i in range(60))  # 120 words, Jaccard 0.95 after one change
    assert not dedup.is_duplicate(base)
    assert dedup.is_duplicate(base.upper().replace(" ", "   "))  # case and spacing do not make a new example
    assert dedup.is_duplicate(base.replace("term30", "changed"))  # one word changed
    assert not dedup.is_duplicate("an entirely different sentence about databases and their indexes today")
    assert (dedup.exact_duplicates, dedup.near_duplicates) == (1, 1)


def test_a_batch_of_texts_is_judged_as_if_given_one_by_one():
    base = " ".join(f"word{i} filler{i % 5}" for i in range(80))
    texts = [base, base.replace("word3 ", "changed "), "Short.", base.title(), "short!", "",
             "another text entirely about pumps seals and valves", base + " tail"]
    one_by_one = Deduplicator(threshold=0.8)
    expected = [one_by_one.is_duplicate(t) for t in texts]
    batched = Deduplicator(threshold=0.8)
    assert batched.duplicates(texts[:5]) + batched.duplicates(texts[5:]) == expected
    assert expected == [False, True, False, True, True, False, False, True]
    assert (batched.exact_duplicates, batched.near_duplicates) == (one_by_one.exact_duplicates,
                                                                   one_by_one.near_duplicates) == (2, 2)


def test_the_report_is_what_validate_file_says_of_the_written_file(tmp_path):
    rows = [{"instruction": f"Q{i}", "output": "" if i == 3 else f"A{i}"} for i in range(200)]
    rows += [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 2
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = ingest(FileSource(tmp_path / "in.jsonl"), IngestOptions(dedup=False), tmp_path / "out.jsonl")
    assert report.validation == validate_file(tmp_path / "out.jsonl").to_dict()
    assert (report.validation["valid_rows"], report.validation["duplicate_count"],
            report.validation["empty_output_count"]) == (202, 1, 1)


def test_a_row_with_a_lone_surrogate_is_skipped_with_the_reason(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"instruction": "Q", "output": "bad \\ud800 text"}\n'
                                       '{"instruction": "Q2", "output": "fine"}\n')
    report = ingest(FileSource(tmp_path / "in.jsonl"), IngestOptions(skip_bad_records=True), tmp_path / "out.jsonl")
    assert report.examples_written == 1 and report.skipped[0]["location"] == "line 1"
    # The JSON reader refuses it (tinyforge.bounded_json): the line is a bad record like any unreadable one.
    assert report.skipped[0]["reason"] == "not valid JSON: a \\u escape is half of a surrogate pair, not a character " \
                                          "at column 37"
    with pytest.raises(SourceError, match="in.jsonl, line 1: not valid JSON: a .u escape is half of a surrogate pair"):
        ingest(FileSource(tmp_path / "in.jsonl"), IngestOptions(), tmp_path / "out2.jsonl")


def test_scrubbing_replaces_emails_and_phones_but_not_dates_or_numbers():
    scrubber = Scrubber(emails=True, phones=True)
    text = ("Write to jane.doe+hr@corp.example.co.uk or call +44 20 7946 0958, (415) 555-0100 or 555.123.4567. "
            "Released 2024-01-02, version 1.2.3, 10.0.0.1, 42 items, order 12345.")
    assert scrubber.text(text) == ("Write to [EMAIL] or call [PHONE], [PHONE] or [PHONE]. "
                                   "Released 2024-01-02, version 1.2.3, 10.0.0.1, 42 items, order 12345.")
    assert (scrubber.emails_scrubbed, scrubber.phones_scrubbed) == (1, 3)


def test_the_report_counts_what_cleaning_did(tmp_path):
    rows = [{"instruction": "Contact?", "output": "Mail ann@example.com"}] * 3 + [{"instruction": "Q", "output": "A"}]
    (tmp_path / "in.json").write_text(json.dumps(rows))
    report = ingest(FileSource(tmp_path / "in.json"), IngestOptions(scrub_emails=True), tmp_path / "out.jsonl")
    assert (report.examples_written, report.exact_duplicates, report.emails_scrubbed) == (2, 2, 3)
    assert "ann@" not in (tmp_path / "out.jsonl").read_text()


@pytest.fixture(scope="module")
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_the_qa_recipe_asks_a_model_and_keeps_the_source_chunk(tmp_path, chat_server):
    (tmp_path / "notes.md").write_text("# Boilers\n\nThe boiler runs at 80 degrees. It is serviced yearly.\n\n"
                                       "# Broken\n\nGARBLE this one.\n")
    options = IngestOptions(recipe="qa", qa=QAOptions(chat_server, "qa-writer", questions_per_chunk=2))
    report = ingest(FileSource(tmp_path / "notes.md"), options, tmp_path / "out.jsonl")
    (row,) = rows_of(tmp_path / "out.jsonl")
    assert row["output"] == "The boiler runs at 80 degrees."
    assert row["metadata"]["source_chunk"] == "The boiler runs at 80 degrees. It is serviced yearly."
    assert row["metadata"]["heading_path"] == ["Boilers"] and row["metadata"]["generator_model"] == "qa-writer"
    assert report.qa_failed_chunks == 1 and report.qa_failures[0]["location"] == "line 7"
    assert "not a JSON array" in report.qa_failures[0]["reason"]


def test_the_qa_recipe_stops_with_a_clear_error_when_the_model_is_unusable(tmp_path, chat_server):
    (tmp_path / "n.md").write_text("Some text here for questions.\n")
    with pytest.raises(TinyforgeError, match="the model 'nope' at .* cannot be used"):
        ingest(FileSource(tmp_path / "n.md"), IngestOptions(recipe="qa", qa=QAOptions(chat_server, "nope")),
               tmp_path / "out.jsonl")
    with pytest.raises(TinyforgeError, match="cannot be used: Connection error"):
        ingest(FileSource(tmp_path / "n.md"),
               IngestOptions(recipe="qa", qa=QAOptions("http://127.0.0.1:9/v1", "m", max_retries=0)),
               tmp_path / "out.jsonl")


def test_the_cli_ingests_and_reports(tmp_path, capsys):
    (tmp_path / "qa.csv").write_text("q,a\nWhat?,That.\nWho?,Them.\n")
    code = tinyforge(["ingest", str(tmp_path / "qa.csv"), "-o", str(tmp_path / "out.jsonl"),
                      "--map", "instruction=q", "--map", "output=a", "--report", str(tmp_path / "report.json")])
    assert code == 0 and len(rows_of(tmp_path / "out.jsonl")) == 2
    assert json.loads((tmp_path / "report.json").read_text())["validation"]["valid_rows"] == 2
    assert "2 examples from 2 records of qa.csv" in capsys.readouterr().out


def test_the_cli_prints_a_clear_error_and_exits_2(tmp_path, capsys, bad_files):
    assert tinyforge(["ingest", str(bad_files["ragged.csv"]), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == ("tinyforge ingest: error: ragged.csv, line 3: ragged row: "
                                               "3 fields where the header has 2")
    assert tinyforge(["ingest", str(bad_files["ragged.csv"]), "-o", str(tmp_path / "o.jsonl"), "--skip-bad-records"]) == 0
    assert "skipped ragged.csv, line 3: ragged row: 3 fields where the header has 2" in capsys.readouterr().err
    assert tinyforge(["ingest", str(tmp_path / "none.txt"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "none.txt: no such file" in capsys.readouterr().err
