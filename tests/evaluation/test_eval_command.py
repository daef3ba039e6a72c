"""`tinyforge eval`: two model folders side by side, scorers, a judge, a table and a JSON file."""

from __future__ import annotations

import json

import pytest

from evaluation.judge_server import judge_server
from serving.conftest import make_lora_adapter
from tinyforge.cli import main


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("evalset") / "set.jsonl"
    path.write_text("".join(json.dumps({"input": q, "reference": "Quillport", "must_include": ["Quillport"]}) + "\n"
                            for q in ["What is the capital of Zorbland?", "Name the capital", "Hi"]))
    return path


def test_it_compares_two_folders_with_a_pairwise_judge_and_writes_every_row(tiny_model_dir, tmp_path, eval_file, capsys):
    lora = make_lora_adapter(tiny_model_dir, tmp_path / "lora", seed=4)
    with judge_server() as judge:
        code = main(["eval", "--model", str(tiny_model_dir), "--against", str(lora), "--data", str(eval_file),
                     "--scorer", "must_include", "--scorer", "regex=^Q", "--judge-url", judge.base_url,
                     "--judge-model", "fair-judge", "--max-new-tokens", "6", "--output", str(tmp_path / "out.json")])
    assert code == 0
    table = capsys.readouterr().out
    assert "must_include" in table and "regex:^Q" in table and "pairwise judge, lora against" in table
    document = json.loads((tmp_path / "out.json").read_text())
    assert [t["name"] for t in document["targets"]] == [tiny_model_dir.name, "lora"]
    assert document["judge"]["mode"] == "pairwise" and document["judge"]["model"] == "fair-judge"
    assert len(document["rows"]) == 3
    first = document["rows"][0]
    assert set(first["answers"]) == {tiny_model_dir.name, "lora"}
    assert set(first["answers"]["lora"]["scores"]) == {"must_include", "regex:^Q"}
    assert len(first["pairwise"][0]["raw"]) == 2 and first["pairwise"][0]["winner"] in ("a", "b", "tie")
    assert document["summary"]["pairs"][0]["judged"] == 3


def test_it_scores_the_general_set_by_default_scorers(tiny_model_dir, capsys):
    assert main(["eval", "--model", str(tiny_model_dir), "--general", "--limit", "5", "--max-new-tokens", "2"]) == 0
    table = capsys.readouterr().out
    assert "5 rows" in table and "exact_match" in table and "token_f1" in table


@pytest.mark.parametrize("extra, message", [
    (["--judge-url", "http://127.0.0.1:9/v1"], "--judge-url and --judge-model go together"),
    (["--judge-mode", "pairwise"], "--judge-mode needs --judge-url"),
    (["--judge-url", "http://x/v1", "--judge-model", "j", "--judge-mode", "pairwise"], "add --against DIR"),
    (["--scorer", "bleu"], "unknown scorer 'bleu'"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "j"], "cannot be used: Connection error"),
])
def test_bad_options_are_refused_saying_why(tiny_model_dir, eval_file, extra, message, capsys):
    assert main(["eval", "--model", str(tiny_model_dir), "--data", str(eval_file), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_eval_file_is_refused_naming_the_line(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "ok"}\n{"must_include": "Paris"}\n')
    assert main(["eval", "--model", str(tiny_model_dir), "--data", str(bad)]) == 2
    assert "line 2 input: required field is missing" in capsys.readouterr().err
