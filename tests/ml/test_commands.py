"""The `tinyforge train | eval | generate | validate` commands (eval's own tests: tests/evaluation)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEMO_DATASET, write_jsonl
from tinyforge.cli import main
from tinyforge.ml.config import TrainConfig
from tinyforge.ml.commands import PLATFORM_ONLY

TINYFORGE = str(Path(sys.executable).with_name("tinyforge"))


def run_cli(*args, timeout=300):
    return subprocess.run([TINYFORGE, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_train_help_lists_every_option_with_its_default():
    proc = run_cli("train", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    section = proc.stdout.split("training options", 1)[1]
    entries = {e.split()[0].rstrip(","): " ".join(e.split()) for e in re.split(r"\n  (?=--)", section)[1:]}
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name in PLATFORM_ONLY:  # the platform's evaluation after a run; the CLI's is tinyforge eval
            assert flag not in entries, flag
            continue
        assert "(default:" in entries[flag], flag
    assert "(default: smollm2-135m-instruct)" in text and "(default: 1e-3 for lora, 2e-5 for full)" in text
    assert "--base" in text and "--data" in text and "--out" in text


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "many"], "invalid int value: 'many'"),
    (["--method", "qlora"], "invalid choice: 'qlora'"),
    (["--learning-rate", "-1"], "learning_rate must be greater than 0"),
    (["--lora-dropout", "2"], "lora_dropout must be in [0, 1)"),
    (["--epochs", "1e20"], "epochs must be at most 1000, not 1e+20"),
])
def test_bad_options_exit_2_with_a_readable_message(args, message, tmp_path):
    proc = run_cli("train", "--data", DEMO_DATASET, "--out", tmp_path / "o", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_bad_data_exits_2_with_the_line_and_no_traceback(tmp_path, tiny_model_dir):
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"instruction": 1, "output": "x"}'])
    proc = run_cli("train", "--data", bad, "--base", tiny_model_dir, "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert "line 1, instruction" in proc.stderr and "Traceback" not in proc.stderr
    missing = run_cli("train", "--data", tmp_path / "missing.jsonl", "--base", tiny_model_dir, "--out", tmp_path / "o")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_validate_reports_problems_by_line(tmp_path, capsys):
    assert main(["validate", str(DEMO_DATASET)]) == 0
    assert "109 valid of 109 rows" in capsys.readouterr().out
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "q", "output": "a"}, "{oops", {"instruction": "q"}])
    assert main(["validate", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "line 2: row: not valid JSON" in out and "line 3: output: required field is missing" in out
    assert main(["validate", "--json", str(bad)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["invalid_count"] == 2 and report["valid_rows"] == 1


def test_validate_counts_tokens_with_a_base_model(tmp_path, tiny_model_dir, capsys):
    rows = [{"instruction": "short", "output": "ok"}, {"instruction": "word " * 200, "output": "ok"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert main(["validate", str(path), "--base", str(tiny_model_dir), "--max-seq-length", "64"]) == 0
    assert "line 2:" in capsys.readouterr().out


def test_train_then_eval_then_generate(tmp_path, tiny_model_dir, toy_dataset, capsys):
    out = tmp_path / "model"
    code = main(["train", "--data", str(toy_dataset), "--base", str(tiny_model_dir), "--out", str(out),
                 "--preset", "quick", "--max-steps", "4", "--batch-size", "4", "--max-seq-length", "128"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "completed: 4/4 steps" in printed and f"model folder: {out}" in printed
    assert f"--against {out} --data" in printed and "generations:" not in printed  # scored by tinyforge eval
    with pytest.raises(SystemExit):  # the platform's evaluation settings are no training options
        main(["train", "--data", str(toy_dataset), "--out", str(out), "--eval-generations", "2"])
    assert "unrecognized arguments: --eval-generations" in capsys.readouterr().err
    info = json.loads((out / "tinyforge.json").read_text())
    assert info["config"]["lora_r"] == 8  # the quick preset
    # The trained adapter against its base, side by side on the first training rows (their prompts and outputs).
    assert main(["eval", "--model", str(tiny_model_dir), "--against", str(out), "--data", str(toy_dataset),
                 "--limit", "2", "--max-new-tokens", "4", "--output", str(tmp_path / "eval.json")]) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    assert len(results["rows"]) == 2 and results["summary"]["targets"]["model"]["answered"] == 2
    capsys.readouterr()
    assert main(["generate", "--model", str(out), "What is the capital of Zorbland?", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.endswith("\n")  # the reply itself may be empty for a barely trained model
    # Resuming a finished run is a no-op that still writes the model.
    assert main(["train", "--data", str(toy_dataset), "--base", str(tiny_model_dir), "--out", str(out),
                 "--preset", "quick", "--max-steps", "4", "--batch-size", "4", "--max-seq-length", "128",
                 "--resume", "--quiet"]) == 0
