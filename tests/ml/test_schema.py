"""Dataset validation: every problem reported with its line and field, never a crash."""

from __future__ import annotations

import json
from functools import partial

import pytest

from conftest import DEMO_DATASET, write_jsonl
from tinyforge.errors import TinyforgeError
from tinyforge.ml.formatting import count_tokens
from tinyforge.ml.schema import ChatRow, InstructionRow, read_rows, validate_file


def test_the_demo_dataset_is_valid_and_large_enough():
    report = validate_file(DEMO_DATASET)
    assert report.invalid_count == 0 and report.duplicate_count == 0
    assert report.valid_rows >= 100
    rows = read_rows(DEMO_DATASET)
    assert any(isinstance(r, ChatRow) for _, r in rows) and any(isinstance(r, InstructionRow) for _, r in rows)


def test_an_empty_file_has_no_rows_and_training_data_refuses_it(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    report = validate_file(path)
    assert report.total_rows == 0 and not report.ok
    with pytest.raises(TinyforgeError, match="empty"):
        read_rows(path)


def test_lines_that_are_not_json_are_reported_with_their_line_number(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "a", "output": "b"}, "{not json", "[1, 2"])
    report = validate_file(path)
    assert report.valid_rows == 1 and report.invalid_count == 2
    assert [(p.line, p.field) for p in report.invalid] == [(2, "row"), (3, "row")]
    assert "not valid JSON" in report.invalid[0].reason


def test_a_row_nested_too_deep_is_reported_with_its_line_not_a_recursion_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": "b", "metadata": '
                    + "[" * 1000 + "]" * 1000 + "}\n")
    report = validate_file(path)
    assert report.valid_rows == 1 and [(p.line, p.field) for p in report.invalid] == [(2, "row")]
    assert "nested deeper than 100 levels" in report.invalid[0].reason


def test_a_row_missing_its_output_names_the_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "a"}, {"instruction": "b", "output": "c"}])
    report = validate_file(path)
    assert report.invalid_count == 1
    problem = report.invalid[0]
    assert (problem.line, problem.field) == (1, "output")
    assert "missing" in problem.reason


@pytest.mark.parametrize("row, field", [
    ({"instruction": 3, "output": "x"}, "instruction"),
    ({"instruction": "q", "output": ["x"]}, "output"),
    ({"instruction": "q", "output": "x", "input": 5}, "input"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}, "messages.1.role"),
    ({"messages": [{"role": "user", "content": 1}, {"role": "assistant", "content": "x"}]}, "messages.0.content"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "row"),
    ({"instruction": "q", "output": "x", "colour": "red"}, "colour"),
    (["a", "list"], "row"),
])
def test_wrong_types_are_reported_per_field(tmp_path, row, field):
    path = write_jsonl(tmp_path / "d.jsonl", [row])
    report = validate_file(path)
    assert report.invalid_count == 1
    assert report.invalid[0].field == field, report.invalid
    assert report.invalid[0].line == 1


def test_non_utf8_bytes_are_reported_and_other_lines_still_read(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps({"instruction": "q", "output": "a"}).encode()
    path.write_bytes(good + b"\n" + b'{"instruction": "caf\xe9", "output": "x"}\n' + good.replace(b"q", b"r") + b"\n")
    report = validate_file(path)
    assert report.valid_rows == 2 and report.invalid_count == 1
    assert report.invalid[0].line == 2 and "UTF-8" in report.invalid[0].reason


def test_a_single_10_mb_row_is_refused_with_its_size(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "summarise", "output": "x" * 10_000_000}])
    report = validate_file(path)
    assert report.invalid_count == 1 and "10.0 MB" in report.invalid[0].reason
    with pytest.raises(TinyforgeError, match="line 1"):
        read_rows(path)


def test_duplicates_and_empty_outputs_are_counted(tmp_path):
    rows = [{"instruction": "q", "output": "a"}, {"instruction": "q", "output": "a", "metadata": {"x": 1}},
            {"instruction": "r", "output": ""}]
    report = validate_file(write_jsonl(tmp_path / "d.jsonl", rows))
    assert report.valid_rows == 3
    assert report.duplicates == [{"line": 2, "duplicate_of": 1}]
    assert report.empty_outputs == [3]


def test_rows_over_the_context_are_found_with_a_tokenizer(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [{"instruction": "short", "output": "yes"}, {"instruction": "long " * 300, "output": "no"}]
    report = validate_file(write_jsonl(tmp_path / "d.jsonl", rows), partial(count_tokens, tokenizer), max_seq_length=64)
    assert report.over_context_count == 1 and report.over_context[0]["line"] == 2
    assert report.over_context[0]["tokens"] > 64
    assert report.usable_rows == 1 and report.to_dict()["ok"]
