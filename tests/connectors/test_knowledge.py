"""The knowledge recipe against a local OpenAI-compatible teacher (tests/connectors/teacher_model.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from connectors.chat_model import ChatCompletions
from serving.conftest import running_server
from connectors.teacher_model import TeacherProcess, TeacherServer
from tinyforge.cli import main as tinyforge
from tinyforge.connectors.chunking import Chunk, chunk_blocks
from tinyforge.connectors.files import FileSource
from tinyforge.connectors.knowledge import (PROMPTS, ChunkWords, KnowledgeGenerator, KnowledgeOptions, dry_run,
                                            estimate, first_saying, prompt_stems, ungrounded)
from tinyforge.connectors.pipeline import IngestOptions, ingest
from tinyforge.connectors.teacher import Teacher, TeacherOptions, json_array
from tinyforge.errors import TinyforgeError
from tinyforge.evaluation.sets import read_eval_file
from tinyforge.ml.schema import validate_file
from tinyforge.serving.registry import FolderRegistry
from tinymodel import build_tiny_model

HANDBOOK = """# Leave
Staff get 28 days of paid leave a year. Requests go to Maria Lopez two weeks ahead.

# Equipment
Every new colleague receives a laptop on the first day. The Oslo office lends monitors.
"""


@pytest.fixture
def teacher():
    with TeacherServer() as server:
        yield server


def options(server, **knobs):
    knobs.setdefault("gap_fills", False)  # rows the teacher wrote; the first test counts the gap fills
    teacher = TeacherOptions(server.url, knobs.pop("model", "teacher"), timeout_s=knobs.pop("timeout_s", 30),
                             max_retries=knobs.pop("max_retries", 2))
    return IngestOptions(recipe="knowledge", knowledge=KnowledgeOptions(teacher, **knobs))


def write(tmp_path, text, name="handbook.md"):
    (tmp_path / name).write_text(text)
    return FileSource(tmp_path / name)


def rows_of(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_each_fact_gets_grounded_questions_with_provenance_and_a_held_out_check(tmp_path, teacher):
    updates = []
    report = ingest(write(tmp_path, HANDBOOK), options(teacher, questions_per_fact=3, gap_fills=True),
                    tmp_path / "out.jsonl", updates.append)
    rows = rows_of(tmp_path / "out.jsonl")
    k = report.knowledge
    assert k["facts"] == 4 and k["rows_dropped"] == 0 and k["chunks_done"] == 2 and k["teacher_calls"] == 6
    assert len(rows) == report.examples_written == 16 and k["gap_fills"] == 4
    gaps = {r["instruction"]: r["output"] for r in rows if r["metadata"]["kind"] == "gap_fill"}
    assert gaps["Fill in the gap: Staff get ___ days of paid leave a year."] == "Staff get 28 days of paid leave a year."
    assert gaps["Fill in the gap: Requests go to ___ Lopez two weeks ahead."] == "Requests go to Maria Lopez two weeks ahead."
    rows = [r for r in rows if r["metadata"]["kind"] == "question"]
    leave = [r for r in rows if "28 days" in r["metadata"]["fact"]]
    assert len(leave) == 3 and len({r["instruction"] for r in leave}) == 3
    assert all(r["output"] == "Staff get 28 days of paid leave a year." for r in leave)
    meta = leave[0]["metadata"]
    assert meta["source"] == "handbook.md" and meta["location"] == "line 2" and meta["heading_path"] == ["Leave"]
    assert meta["kind"] == "question" and meta["teacher_model"] == "teacher" and len(meta["chunk_sha256"]) == 16
    check = read_eval_file(tmp_path / "out.facts.jsonl")
    assert k["heldout_questions"] == len(check) == 4 and k["eval_out"] == str(tmp_path / "out.facts.jsonl")
    assert {tuple(c.must_include) for c in check} == {("28",), ("Maria",), ("day",), ("Oslo",)}
    assert not {c.input for c in check} & {r["instruction"] for r in rows}
    assert k["teacher_tokens"] > 0 and updates[-1].teacher_tokens == k["teacher_tokens"] and updates[-1].chunks == 2
    assert validate_file(tmp_path / "out.jsonl").invalid_count == 0
    assert not (tmp_path / "out.jsonl.journal").exists()
    assert teacher.max_tokens == {2048}  # a small teacher does not ramble to its context limit
    assert "4 facts" in report.summary() and "4 held-out" in report.summary()


def test_each_reply_is_asked_for_in_its_shape_and_a_server_refusing_that_is_asked_in_words(tmp_path, teacher):
    report = ingest(write(tmp_path, HANDBOOK), options(teacher, questions_per_fact=3), tmp_path / "out.jsonl")
    shapes = {step: f["json_schema"]["schema"] for step, f in teacher.formats if f and step != "facts"}
    facts = [f["json_schema"]["schema"] for step, f in teacher.formats if step == "facts"]
    assert all(f["type"] == "json_schema" for _, f in teacher.formats) and len(teacher.formats) == 6
    assert facts[0]["type"] == "array" and facts[0]["maxItems"] == 8
    assert set(facts[0]["items"]["required"]) == {"fact", "key_terms"}
    # The numbered replies fix each number and how many there are: the teacher fills in the text.
    questions = shapes["questions"]
    assert [item["properties"]["fact"] for item in questions["prefixItems"]] == [{"const": 1}, {"const": 2}]
    assert questions["minItems"] == questions["maxItems"] == 2
    assert questions["prefixItems"][0]["properties"]["questions"]["minItems"] == 4  # 3 to train on, 1 held out
    answers = shapes["answers"]
    assert [item["properties"]["answer"]["maxLength"] for item in answers["prefixItems"]] == [250] * 6
    assert [item["properties"]["question"] for item in answers["prefixItems"]] == [{"const": n} for n in range(1, 7)]

    # A server without structured output that refuses the field: asked once with it, then in words only.
    refusing = TeacherServer()
    refusing.refuse_formats = True
    with refusing:
        again = ingest(write(tmp_path, HANDBOOK), options(refusing, questions_per_fact=3, concurrency=1),
                       tmp_path / "again.jsonl")
    assert [f is not None for _, f in refusing.formats] == [True] + [False] * 6
    assert rows_of(tmp_path / "again.jsonl") == rows_of(tmp_path / "out.jsonl")
    assert again.knowledge["chunks_failed"] == report.knowledge["chunks_failed"] == 0


def test_served_by_tinyforge_even_an_untrained_teacher_replies_in_the_shape_asked_for(tmp_path):
    """The platform's server holds the teacher to each reply's JSON Schema (structured output). An
    untrained model writes no JSON by itself: asked in words, every chunk fails as "not a JSON
    array". Held to the schema, every reply parses and no chunk fails; what it made up is dropped by
    the grounding check, counted with its reason (or it listed no facts)."""
    teacher_dir = build_tiny_model(tmp_path / "untrained", context=4096)
    chunks = list(chunk_blocks(write(tmp_path, HANDBOOK).records(), 2000, 0))
    with running_server(FolderRegistry({"untrained": teacher_dir})) as server:
        teacher = TeacherOptions(f"{server.base_url}/v1", "untrained", max_retries=0, max_tokens=1500)
        for temperature in (0.0, 1.0):
            stats = dry_run(chunks, KnowledgeOptions(replace(teacher, temperature=temperature), facts_per_chunk=2))["stats"]
            assert stats["chunks_failed"] == 0 and stats["failures"] == [], stats
            assert stats["chunks_done"] == 2 and stats["teacher_calls"] >= 2
        # Sampled, yet seeded from the request's text: the same request gets the same reply again
        # (a re-run or a resumed import makes the same rows), another seed another reply.
        sampled = replace(teacher, temperature=1.0, max_tokens=40)
        replies = [Teacher(replace(sampled, seed=seed)).chat("Write facts.", HANDBOOK)[0] for seed in (0, 0, 1)]
        assert replies[0] == replies[1] != replies[2], replies
        assert server.metric("tinyforge_serving_requests_total", model="untrained", endpoint="/v1/chat/completions",
                             status="200") >= 7


def test_sentences_the_teachers_facts_leave_out_become_facts_with_questions_and_a_check(tmp_path, teacher):
    # The teacher lists only the first sentence's fact (FEW); the two others are the chunk's own.
    text = ("# Kilns\nFEW firings start at 6:00. The kiln Ember fires at 1240 degrees,\nand Slate at 1280 degrees.\n\n"
            "Gloves are stored in locker 14 beside Ember.\n")
    report = ingest(write(tmp_path, text), options(teacher, questions_per_fact=2), tmp_path / "out.jsonl")
    rows, k = rows_of(tmp_path / "out.jsonl"), report.knowledge
    by_fact = {}
    for row in rows:
        by_fact.setdefault((row["metadata"]["fact"], row["metadata"]["fact_from"]), []).append(row)
    assert sorted(by_fact) == [
        ("FEW firings start at 6:00.", "teacher"),
        ("Gloves are stored in locker 14 beside Ember.", "chunk"),  # across a paragraph break
        ("The kiln Ember fires at 1240 degrees, and Slate at 1280 degrees.", "chunk"),  # across a line break
    ]
    assert all(len(found) == 2 for found in by_fact.values())
    assert k["facts"] == 3 and k["facts_from_chunk"] == 2 and k["rows_dropped"] == 0
    assert "3 facts (2 of them sentences the teacher's facts left out)" in report.summary()
    check = read_eval_file(tmp_path / "out.facts.jsonl")
    assert {tuple(c.must_include) for c in check} == {("6",), ("1240", "1280", "Ember"), ("14", "Ember")}

    # At most facts_per_chunk facts in all, the teacher's first.
    ingest(write(tmp_path, text), options(teacher, questions_per_fact=2, facts_per_chunk=2), tmp_path / "two.jsonl")
    assert [f for f, _ in {(r["metadata"]["fact"], 0): 0 for r in rows_of(tmp_path / "two.jsonl")}] == [
        "FEW firings start at 6:00.", "The kiln Ember fires at 1240 degrees, and Slate at 1280 degrees."]


@pytest.mark.parametrize("facts, left_out", [
    # A sentence the facts state in other words and order is covered; one with a number or a name
    # no fact holds is not, nor one most of whose words none holds.
    (["Slate fires at 1280 degrees; Ember at 1240."], []),
    (["Ember fires at 1240 degrees."], ["Ember fires at 1240 degrees and Slate at 1280 degrees."]),
    (["Ember and Slate fire at 1240 and 1280 degrees."], []),
    (["Ember fires at 1240 degrees and Slate at 1280 degrees."], []),
])
def test_which_sentences_the_facts_leave_out(facts, left_out):
    from tinyforge.connectors.knowledge import uncovered_sentences

    text = "Ember fires at 1240 degrees and Slate at 1280 degrees.\n\nSee you. | a | b | c |"
    assert uncovered_sentences(text, facts) == left_out
    assert uncovered_sentences("Staff park behind the office. The car park closes at 20:00.",
                               ["The car park closes at 20:00."]) == ["Staff park behind the office."]


def test_restatements_are_rows_too_and_checked(tmp_path, teacher):
    report = ingest(write(tmp_path, HANDBOOK), options(teacher, questions_per_fact=1, restatements_per_chunk=2),
                    tmp_path / "out.jsonl")
    restated = [r for r in rows_of(tmp_path / "out.jsonl") if r["metadata"]["kind"] == "restatement"]
    assert len(restated) == 4 and restated[0]["instruction"] == "What does Leave say?"
    assert report.knowledge["teacher_calls"] == 8


@pytest.mark.parametrize("model, url, message", [
    ("nope", None, "model 'nope' not found"),
    ("teacher", "http://127.0.0.1:9/v1", "Connection error"),
])
def test_an_unusable_teacher_stops_the_import_saying_why_and_leaves_no_file(tmp_path, teacher, model, url, message):
    opts = options(teacher, model=model, max_retries=0)
    if url:
        opts.knowledge.teacher.base_url = url
    with pytest.raises(TinyforgeError, match=message) as raised:
        ingest(write(tmp_path, HANDBOOK), opts, tmp_path / "out.jsonl")
    assert "cannot be used" in str(raised.value)
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.facts.jsonl").exists()


def test_garbage_fails_only_its_chunk_and_is_counted_with_the_reply(tmp_path, teacher):
    report = ingest(write(tmp_path, HANDBOOK + "\n# Odd\nGARBLE here. It has 3 words.\n"), options(teacher),
                    tmp_path / "out.jsonl")
    k = report.knowledge
    assert k["chunks_failed"] == 1 and k["failures"][0]["location"] == "line 8"
    assert "facts are not a JSON array: 'Sorry, I cannot do that.'" in k["failures"][0]["reason"]
    assert k["facts"] == 4 and "1 chunks failed" in report.summary()


def test_a_teacher_that_answers_only_garbage_fails_the_import_with_its_first_reply(tmp_path, teacher):
    # What `make demo` gives with a barely trained 135M deployment as teacher: prose, never JSON.
    text = "# Odd\nGARBLE here. It has 3 words.\n\n# Odder\nGARBLE there, in 2 places.\n"
    with pytest.raises(TinyforgeError, match=r"no examples came out of .* \(2 chunks failed; first: the teacher's facts "
                                             r"are not a JSON array: 'Sorry, I cannot do that.'\)"):
        ingest(write(tmp_path, text), options(teacher), tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_answers_in_another_language_and_invented_facts_are_dropped_and_counted(tmp_path, teacher):
    text = HANDBOOK + "\n# Lunch\nFRENCH lunch is served at noon in the Bergen canteen.\n\n# Warranty\nINVENT devices come from Acme.\n"
    report = ingest(write(tmp_path, text), options(teacher, questions_per_fact=2), tmp_path / "out.jsonl")
    k = report.knowledge
    assert k["dropped_by_reason"] == {"answer not in the chunk: its key terms are not in the chunk": 2,
                                      "fact not in the chunk: the number 99 is not in the chunk": 1}
    assert {d["location"] for d in k["dropped"]} == {"line 8", "line 11"}
    rows = rows_of(tmp_path / "out.jsonl")
    # The French answers are dropped; their checked fact answers the two questions instead.
    lunch = [r for r in rows if "Bergen" in r["metadata"]["fact"]]
    assert [(r["output"], r["metadata"]["answer_from"]) for r in lunch] == [
        ("FRENCH lunch is served at noon in the Bergen canteen.", "fact")] * 2
    assert k["answers_from_fact"] == 2 and "2 answered by their fact" in report.summary()
    assert not [r for r in rows if "99" in r["metadata"]["fact"]]
    assert [r for r in rows if "Acme" in r["metadata"]["fact"]]
    assert {r["metadata"]["answer_from"] for r in rows if "Bergen" not in r["metadata"]["fact"]} == {"teacher"}


def test_an_answer_that_misses_its_facts_key_terms_is_dropped_though_its_words_are_in_the_chunk(tmp_path, teacher):
    text = HANDBOOK + "\n# Parking\nASTRAY visitors park at Gate 4. The Bergen garage closes at 22:00.\n"
    report = ingest(write(tmp_path, text), options(teacher, questions_per_fact=2), tmp_path / "out.jsonl")
    k = report.knowledge
    # Each of the chunk's four answers is the other fact's sentence: grounded, but not the answer.
    assert k["dropped_by_reason"] == {"answer does not state its fact": 4} and k["rows_dropped"] == 4
    assert {d["reason"] for d in k["dropped"]} == {"answer does not state its fact (Gate missing)",
                                                 "answer does not state its fact (Bergen missing)"}
    # Each question is answered by its own fact instead, and says so.
    parking = [r for r in rows_of(tmp_path / "out.jsonl") if r["metadata"]["location"] == "line 8"]
    assert sorted(r["output"] for r in parking) == ["ASTRAY visitors park at Gate 4."] * 2 + [
        "The Bergen garage closes at 22:00."] * 2
    assert all(r["output"] == r["metadata"]["fact"] and r["metadata"]["answer_from"] == "fact" for r in parking)
    assert k["answers_from_fact"] == 4
    assert report.examples_written == 12  # six facts, two questions each


# What SmolLM2-135M-Instruct, the platform's offline teacher, replied to the facts request for the Leave
# section of bench/knowledge.py's handbook (2026-12-06, 512 tokens at most): two facts, then a third that
# loops until the limit cuts it.
SMOLLM2_FACTS = (
    '[{"fact": "Every employee gets 27 days of paid leave a year, plus the town\'s founding day on 12 June.", '
    '"key_terms": ["20:00"]}, {"fact": "The office manager, Odile Varga, is requested to leave the town of Odilab to '
    'the town of Odilab, by the town\'s founding day on 12 June.", "key_terms": ["12:00"]}, {"fact": "The town\'s '
    'founding day on 12 June is a day for the town to decide on the town\'s founding day, and the town\'s founding '
    'day is a day for the town to decide on the town\'s founding')


def test_a_reply_cut_off_inside_its_array_keeps_the_items_complete_before_the_cut():
    reply = json_array(SMOLLM2_FACTS)
    assert [item["fact"][:30] for item in reply.items] == ["Every employee gets 27 days of", "The office manager, Odile Varg"]
    assert reply.unread.startswith('{"fact": "The town\'s founding day on 12 June is')
    for whole in ('```json\n[{"a": 1}]\n```', 'Here: [1, 2]. See [the note', '[{"a": "]"}] and then ]'):
        assert json_array(whole).unread == "", whole
    assert json_array('Here: [1, 2]. See [the note').items == [1, 2]
    assert json_array('[{"a": 1}, ').items == [{"a": 1}] and json_array('[{"a": 1}, ').unread == "(the reply ends)"
    for nothing in ("Sorry, I cannot do that.", '[{"a": ', "[" * 5000, '[1e999, 2]'):
        assert json_array(nothing).items is None, nothing[:20]


def test_a_facts_reply_cut_off_at_the_token_limit_keeps_its_complete_facts_and_counts_the_cut(tmp_path, teacher):
    text = "# Gym\nRAMBLE: the gym opens at 7:00. Towels cost 2 euros.\n"
    report = ingest(write(tmp_path, text), options(teacher, questions_per_fact=1), tmp_path / "out.jsonl")
    k = report.knowledge
    assert k["facts"] == 2 and k["chunks_failed"] == 0 and report.examples_written == 2
    assert k["dropped_by_reason"] == {"the teacher's facts broke off": 1}
    assert k["dropped"][0]["reason"] == "the teacher's facts broke off (not JSON after item 2)"
    assert k["dropped"][0]["text"].startswith('{"fact": "and the day is a day')


class ExampleFollower(ChatCompletions):
    """A teacher that replies with the example its system prompt ends with, as a 135M model given one does."""

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        example = request["messages"][0]["content"].rsplit("\n", 1)[1]
        self.reply(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": request["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": example}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def test_each_default_prompt_ends_with_an_example_reply_the_recipe_takes_whole():
    from http.server import ThreadingHTTPServer
    import threading

    server = ThreadingHTTPServer(("127.0.0.1", 0), ExampleFollower)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        teacher = TeacherOptions(f"http://127.0.0.1:{server.server_address[1]}/v1", "small", max_retries=0)
        chunk = Chunk(text="Staff park behind the office. The car park closes at 20:00.", source="h.md",
                      location="line 1", heading_path=("Parking",))
        result = dry_run([chunk], KnowledgeOptions(teacher, questions_per_fact=2, restatements_per_chunk=2))
    finally:
        server.shutdown()
        server.server_close()
    stats = result["stats"]
    assert stats["facts"] == 2 and stats["rows_dropped"] == 0 and not stats["failures"]
    assert [(r["instruction"], r["output"]) for r in result["rows"]] == [
        ("When does the car park close?", "The car park closes at 20:00."),
        ("Until what time can I leave my car there?", "Until 20:00, when the car park closes."),
        ("Fill in the gap: The car park closes at ___.", "The car park closes at 20:00."),
        ("Fill in the gap: Staff park ___.", "Staff park behind the office."),
        ("What does Parking say?", "The car park behind the office, where staff park, closes at 20:00."),
        ("What does Parking say?", "At 20:00 the staff car park behind the office closes.")]
    assert [(h["input"], h["must_include"]) for h in result["heldout"]] == [("Car park closing time?", ["20:00"])]


@pytest.mark.parametrize("answer, kept", [
    # SmolLM2-135M's answers on the benchmark's handbook
    ("The town's founding day is 12 June. The town's founding day is 12 June. The town's founding day is 12 J",
     "The town's founding day is 12 June."),
    ("The workshop opens at 7:30. The end of the week is 16:45. The workshop opens at 7:30. The end",
     "The workshop opens at 7:30. The end of the week is 16:45."),
    ("Until 20:00, when\nthe car park closes.", "Until 20:00, when the car park closes."),
    ("A reply cut off mid-sentence by its limit, with nothing bef", "A reply cut off mid-sentence by its limit, with nothing bef"),
])
def test_an_answer_is_kept_up_to_its_first_repeated_sentence(answer, kept):
    assert first_saying(answer) == kept


def test_the_grounding_check_names_what_is_not_in_the_chunk():
    chunk = ChunkWords("Staff get 28 days of paid leave a year. Requests go to Maria Lopez.")
    assert ungrounded("Staff get 28 days of leave.", chunk) is None
    assert ungrounded("Staff get 30 days of leave.", chunk) == "the number 30 is not in the chunk"
    assert ungrounded("Requests go to John Lopez.", chunk) == "the name 'John' is not in the chunk"
    assert ungrounded("Employees receive generous vacation allowances.", chunk).startswith("its key terms")


def test_words_of_the_prompts_example_that_are_not_in_the_chunk_are_an_echo_of_the_prompt():
    # What SmolLM2-135M wrote of the benchmark's glaze workshop, after the facts prompt's car park example.
    chunk = ChunkWords("The glaze workshop takes place every second Tuesday, led by Mirela Costa.")
    echo = prompt_stems(PROMPTS["facts"])
    copied = "The car park closes every second Tuesday, led by Mirela Costa."
    assert ungrounded(copied, chunk) is None  # five of its seven words are in the chunk
    assert ungrounded(copied, chunk, echo) == "it repeats the prompt, not the chunk (park, closes)"
    assert ungrounded("The glaze workshop is led by Mirela Costa every second Tuesday.", chunk, echo) is None
    # A word the prompt and the chunk share is the chunk's.
    assert ungrounded("Staff park behind the office.", ChunkWords("Staff park behind the office."), echo) is None


def test_a_document_without_facts_says_so(tmp_path, teacher):
    with pytest.raises(TinyforgeError, match="the teacher found no facts in the document"):
        ingest(write(tmp_path, "# Hello\nNOFACTS, only greetings.\n"), options(teacher), tmp_path / "out.jsonl")
    report = ingest(write(tmp_path, HANDBOOK + "\n# Hi\nNOFACTS here.\n"), options(teacher), tmp_path / "o.jsonl")
    assert report.knowledge["chunks_without_facts"] == 1 and report.knowledge["facts"] == 4


def test_a_chunk_that_times_out_is_retried_then_counted_failed_and_the_import_goes_on(tmp_path, teacher):
    text = HANDBOOK + "\n# Slow\nSLOW answers come from Oslo.\n"
    report = ingest(write(tmp_path, text), options(teacher, timeout_s=0.3, max_retries=1), tmp_path / "out.jsonl")
    k = report.knowledge
    assert [p for p in teacher.steps("facts") if "SLOW" in p] == ["SLOW answers come from Oslo."] * 2
    assert k["chunks_failed"] == 1 and "did not answer within 0.3 s" in k["failures"][0]["reason"]
    assert k["facts"] == 4 and report.examples_written == 16


def test_429_and_503_are_retried_honouring_retry_after(tmp_path, teacher):
    text = "# A\nBUSY desks are in Oslo.\n\n# B\nFLAKY printers are in Bergen.\n"
    report = ingest(write(tmp_path, text), options(teacher, questions_per_fact=1), tmp_path / "out.jsonl")
    assert report.knowledge["facts"] == 2 and report.knowledge["chunks_failed"] == 0
    assert len(teacher.steps("facts")) == 4  # each refused once, then answered


def test_the_held_out_question_is_dropped_when_it_nearly_repeats_a_training_one(tmp_path, teacher):
    report = ingest(write(tmp_path, HANDBOOK + "\n# Parking\nREPEAT parking is free at the Oslo office.\n"),
                    options(teacher, questions_per_fact=2), tmp_path / "out.jsonl")
    assert report.knowledge["heldout_duplicates"] == 1 and report.knowledge["heldout_questions"] == 4
    assert all("REPEAT" not in c.reference for c in read_eval_file(tmp_path / "out.facts.jsonl"))


def test_a_token_budget_stops_the_import_cleanly_with_what_it_has(tmp_path, teacher):
    teacher.tokens_per_reply = 100
    text = "".join(f"# Part {n}\nRoom {n} is on floor {n}.\n\n" for n in range(1, 21))
    report = ingest(write(tmp_path, text), options(teacher, questions_per_fact=1, concurrency=1, token_budget=1000),
                    tmp_path / "out.jsonl")
    k = report.knowledge
    # Three calls a chunk: the fourth chunk's second call would pass the budget, so it is not made.
    assert k["budget_exhausted"] and k["chunks_done"] == 3 and k["teacher_tokens"] == 1000
    assert report.examples_written == 3 and len(teacher.requests) == 10
    assert "stopped at the teacher token budget after 3 chunks" in report.summary()


def test_concurrency_is_bounded_and_5000_chunks_hold_bounded_memory():
    chunks_read = 0
    most_ahead = 0
    done = 0

    def chunks():
        nonlocal chunks_read, most_ahead
        for n in range(5000):
            chunks_read += 1
            most_ahead = max(most_ahead, chunks_read - done)
            yield Chunk(f"NOFACTS in part {n}. " + "Filler text. " * 40, "big.md", f"line {n}", ("Part",))

    with TeacherProcess() as teacher:
        generator = KnowledgeGenerator(KnowledgeOptions(TeacherOptions(teacher.url, "teacher"), concurrency=3))
        tracemalloc.start()
        for _ in generator.rows(chunks()):
            done += 1
            if done == 100:  # what the first requests import (the openai client's modules) stays
                tracemalloc.reset_peak()
                settled = tracemalloc.get_traced_memory()[0]
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        most_in_flight = teacher.stats()["most_in_flight"]
    assert done == 5000 and generator.stats.chunks_without_facts == 5000
    assert most_ahead <= 2 * 3 + 1 and 1 < most_in_flight <= 3
    assert peak - settled < 8 << 20, f"{peak - settled} bytes more at the peak than after the first 100 chunks"


def test_a_document_of_5000_chunks_stopped_halfway_resumes_from_its_journal_in_bounded_memory(tmp_path):
    from itertools import islice

    def chunks():
        for n in range(5000):
            yield Chunk(f"NOFACTS in part {n}. " + "Filler text. " * 40, "big.md", f"line {n}", ("Part",))

    with TeacherProcess() as teacher:
        knobs = KnowledgeOptions(TeacherOptions(teacher.url, "teacher"), concurrency=3)
        journal = tmp_path / "big.jsonl.journal"
        rows = KnowledgeGenerator(knobs, journal).rows(chunks())
        for _ in islice(rows, 2500):
            pass
        rows.close()  # the import stopped here: what a killed worker leaves is the same journal
        assert journal.read_bytes().count(b"\n") == 2500

        again = KnowledgeGenerator(knobs, journal)
        tracemalloc.start()
        done = sum(1 for _ in again.rows(chunks()))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    stats = again.stats
    assert done == stats.chunks_done == 5000 and stats.chunks_resumed == 2500
    assert again.teacher.calls == 2500  # only the chunks after the journal's were asked for
    # The journal is indexed, not loaded: its 2,500 chunks and the 2,500 new ones in a few MiB.
    assert peak < 8 << 20, f"{peak} bytes at the peak"


KILLED_RUN = """
import sys
from tinyforge.connectors.files import FileSource
from tinyforge.connectors.knowledge import KnowledgeOptions
from tinyforge.connectors.pipeline import IngestOptions, ingest
from tinyforge.connectors.teacher import TeacherOptions
ingest(FileSource(sys.argv[1]), IngestOptions(recipe="knowledge", knowledge=KnowledgeOptions(
    TeacherOptions(sys.argv[2], "teacher"), questions_per_fact=1, concurrency=1)), sys.argv[3])
"""


def test_an_import_killed_midway_resumes_from_the_last_finished_chunk(tmp_path, teacher):
    teacher.slow_s = 0.5
    text = "".join(f"# Part {n}\nSLOW room {n} is on floor {n}.\n\n" for n in range(1, 5))
    source = write(tmp_path, text)
    out = tmp_path / "out.jsonl"
    journal = tmp_path / "out.jsonl.journal"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(source.path), teacher.url, str(out)], env=env)
    try:
        while not (journal.exists() and journal.read_bytes().count(b"\n") >= 1):
            assert child.poll() is None, "the import ended before it could be killed"
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    finished = journal.read_bytes().count(b"\n")
    assert 1 <= finished < 4 and not out.exists()
    asked_before = len(teacher.steps("facts"))
    # The killed run's options (KILLED_RUN), gap fills on as by default.
    report = ingest(source, options(teacher, questions_per_fact=1, concurrency=1, gap_fills=True), out)
    assert report.knowledge["chunks_resumed"] == finished and report.knowledge["chunks_done"] == 4
    assert len(teacher.steps("facts")) - asked_before == 4 - finished
    assert sorted((r["metadata"]["fact"], r["metadata"]["kind"]) for r in rows_of(out)) == sorted(
        (f"SLOW room {n} is on floor {n}.", kind) for n in range(1, 5) for kind in ("question", "gap_fill"))
    assert not journal.exists()


def test_estimate_and_dry_run_preview_the_first_chunks(tmp_path, teacher):
    chunks = [Chunk("Staff get 28 days of paid leave a year.", "h.md", f"line {n}", ("Leave",)) for n in range(10)]
    knobs = KnowledgeOptions(TeacherOptions(teacher.url, "teacher"), questions_per_fact=2)
    guess = estimate(chunks, knobs)
    assert guess["chunks"] == 10 and guess["teacher_calls"] == 30 and guess["teacher_tokens"] > 0
    assert guess["training_rows_at_most"] == 10 * 8 * (2 + 1)  # 8 facts a chunk, each 2 questions and a gap fill
    preview = dry_run(chunks, knobs, first=2)
    assert len(teacher.requests) == 6 and len(preview["rows"]) == 2 * 3 and preview["stats"]["chunks_done"] == 2
    assert preview["heldout"][0]["must_include"] == ["28"]


def test_edited_prompts_reach_the_teacher_and_bad_knobs_are_refused(teacher):
    with pytest.raises(TinyforgeError, match="questions per fact must be between 1 and 20"):
        KnowledgeOptions(TeacherOptions(teacher.url, "teacher"), questions_per_fact=0)
    with pytest.raises(TinyforgeError, match="unknown prompt 'fact'"):
        KnowledgeOptions(TeacherOptions(teacher.url, "teacher"), prompts={"fact": "x"})
    knobs = KnowledgeOptions(TeacherOptions(teacher.url, "teacher"), questions_per_fact=1,
                             prompts={"facts": "You extract facts {\"like\": \"this\"}, at most {facts_per_chunk}."})
    assert knobs.prompt("facts") == 'You extract facts {"like": "this"}, at most 8.'


def test_the_cli_ingests_with_the_knowledge_recipe_and_writes_the_fact_check(tmp_path, teacher, capsys):
    (tmp_path / "handbook.md").write_text(HANDBOOK)
    code = tinyforge(["ingest", str(tmp_path / "handbook.md"), "-o", str(tmp_path / "rows.jsonl"), "--recipe",
                      "knowledge", "--teacher-url", teacher.url, "--teacher-model", "teacher",
                      "--questions-per-fact", "2", "--eval-out", str(tmp_path / "facts.jsonl")])
    assert code == 0
    assert len(read_eval_file(tmp_path / "facts.jsonl")) == 4 and len(rows_of(tmp_path / "rows.jsonl")) == 12
    assert "4 facts" in (said := capsys.readouterr().out) and "4 gap-fill rows" in said
    assert tinyforge(["ingest", str(tmp_path / "handbook.md"), "-o", str(tmp_path / "no-gaps.jsonl"), "--recipe",
                      "knowledge", "--teacher-url", teacher.url, "--teacher-model", "teacher",
                      "--questions-per-fact", "2", "--no-gap-fills"]) == 0
    assert len(rows_of(tmp_path / "no-gaps.jsonl")) == 8


def test_the_journal_reuses_finished_chunks_but_not_failed_ones_or_a_half_written_line(tmp_path):
    from tinyforge.connectors.knowledge import ChunkResult, Journal

    path = tmp_path / "j"
    path.write_bytes(ChunkResult(0, "a", rows=[{"x": 1}]).to_json() + ChunkResult(1, "b", failed="timeout").to_json()
                     + ChunkResult(2, "c").to_json() + b'{"index": 3, "sha": "d", "ro')
    journal = Journal(path)
    assert journal.reuse(0, "a").rows == [{"x": 1}] and journal.reuse(0, "other") is None
    assert journal.reuse(1, "b") is None and journal.reuse(2, "c") is not None and journal.reuse(3, "d") is None
    journal.append(ChunkResult(1, "b", rows=[{"y": 2}]))
    journal.close()
    assert path.read_bytes().count(b"\n") == 4 and Journal(path).reuse(1, "b").rows == [{"y": 2}]
