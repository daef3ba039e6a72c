"""Eval set files: rows, bad input by line and field, the canonical form, the shipped general set."""

from __future__ import annotations

import pytest

from tinyforge.errors import TinyforgeError
from tinyforge.evaluation.scorers import Scorer
from tinyforge.evaluation.sets import (
    EvalSetError, general_rows, parse_eval_file, parse_rows, sha256, to_jsonl,
)


def test_it_reads_eval_rows_and_training_rows_from_jsonl():
    rows = parse_eval_file(
        b'{"input": "What is 2+2?", "reference": "4", "must_include": ["4"], "tags": ["math"]}\n'
        b'\n'
        b'{"input": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}\n'
        b'{"instruction": "Name a color", "output": "Blue"}\n', "set.jsonl")
    assert [r.prompt_text() for r in rows] == ["What is 2+2?", "Hi", "Name a color"]
    assert rows[0].must_include == ["4"] and rows[0].tags == ["math"]
    assert rows[1].messages()[0] == {"role": "system", "content": "Be brief."} and rows[1].reference is None
    assert rows[2].reference == "Blue"


def test_it_reads_csv_with_lists_separated_by_bars():
    rows = parse_eval_file(b"input,reference,must_include,tags\n\"Capital of France, please\",Paris,Paris | France,geo\n",
                           "set.csv")
    assert rows[0].input == "Capital of France, please" and rows[0].must_include == ["Paris", "France"]


@pytest.mark.parametrize("content, name, message", [
    (b"", "empty.jsonl", "the eval set has no rows"),
    (b"\n  \n", "blank.jsonl", "the eval set has no rows"),
    (b"input,reference\n", "empty.csv", "the eval set has no rows"),
    (b'{"reference": "4"}\n', "x.jsonl", "line 1 input: required field is missing"),
    (b'{"input": "  "}\n', "x.jsonl", "line 1 input: input is blank"),
    (b'{"input": "ok"}\n{"input": "q", "must_include": "Paris"}\n', "x.jsonl",
     "line 2 must_include: Input should be a valid list"),
    (b'{"input": "q", "must_include": ["Paris", 3]}\n', "x.jsonl", "line 1 must_include.1: Input should be a valid string"),
    (b'{"input": "q", "must_include": [" "]}\n', "x.jsonl", "must_include holds a blank string"),
    (b'{"input": "q", "answer": "a"}\n', "x.jsonl", "line 1 answer: unknown field"),
    (b'{"input": [{"role": "assistant", "content": "hi"}]}\n', "x.jsonl", "the last message of input must be the user's"),
    (b'{"input": "ok"}\n{"input": \n', "x.jsonl", "line 2 row: not valid JSON"),
    (b"question,answer\nq,a\n", "x.csv", "line 1 header: unknown columns"),
    (b"input,reference\n,a\n", "x.csv", "line 2 input: input is blank"),
    (b"anything", "x.txt", "an eval set is a .jsonl or .csv file"),
])
def test_bad_eval_sets_are_refused_naming_line_and_field(content, name, message):
    with pytest.raises(TinyforgeError, match=message):
        parse_eval_file(content, name)


def test_every_problem_is_counted_and_the_first_ones_listed():
    content = b"".join(b'{"reference": "x"}\n' for _ in range(200))
    with pytest.raises(EvalSetError) as caught:
        parse_eval_file(content, "x.jsonl")
    assert "200 problems" in str(caught.value) and len(caught.value.problems) == 50


def test_rows_given_in_a_request_are_numbered_from_one():
    with pytest.raises(EvalSetError, match="line 2 input: required field is missing"):
        parse_rows([{"input": "a"}, {"tags": ["x"]}])


def test_the_canonical_file_names_the_content():
    rows = parse_rows([{"input": "a", "reference": "b"}, {"input": "c", "tags": ["t"]}])
    data = to_jsonl(rows)
    assert parse_eval_file(data, "again.jsonl") == rows
    assert sha256(data) == sha256(to_jsonl(parse_rows([{"reference": "b", "input": "a"}, {"tags": ["t"], "input": "c"}])))
    assert sha256(data) != sha256(to_jsonl(rows[:1]))


def test_the_shipped_general_set_has_a_hundred_checkable_rows():
    rows = general_rows()
    assert len(rows) >= 100
    assert all(r.reference and r.must_include for r in rows)
    assert len({r.prompt_text() for r in rows}) == len(rows)
    assert {"knowledge", "instructions"} <= {t for r in rows for t in r.tags}
    # Every reference passes its own must_include: the facts are written to be found in a right answer.
    scorer = Scorer("must_include")
    assert [r.id for r in rows if scorer.score(r, r.reference) != 1.0] == []
