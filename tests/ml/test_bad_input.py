"""Every bad input from the issue gets a clear TinyforgeError, and nothing half-written remains."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_jsonl
from tinyforge.errors import TinyforgeError
from tinyforge.ml.config import InvalidConfig, TrainConfig
from tinyforge.ml.models import resolve_base_model
from tinyforge.ml.train import train

TINYFORGE = str(Path(sys.executable).with_name("tinyforge"))


def test_an_empty_file_is_refused(tiny_config, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(TinyforgeError, match="empty"):
        train(tiny_config(), path, tmp_path / "out")


def test_a_file_of_invalid_rows_says_which_line_is_wrong(tiny_config, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["not json", {"instruction": "q"}])
    with pytest.raises(TinyforgeError, match=r"no valid rows.*line 1.*not valid JSON"):
        train(tiny_config(), path, tmp_path / "out")


def test_every_row_longer_than_the_context_is_refused(tiny_config, tmp_path):
    rows = [{"instruction": "tell me a long story " * 20, "output": "once upon a time " * 20}] * 5
    with pytest.raises(TinyforgeError, match="every training row is longer than max_seq_length=32"):
        train(tiny_config(max_seq_length=32, validation_split=0.0), write_jsonl(tmp_path / "d.jsonl", rows),
              tmp_path / "out")


def test_too_few_rows_for_a_validation_split(tiny_config, tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", [{"instruction": "q", "output": "a"}])
    with pytest.raises(TinyforgeError, match="too few to hold out a validation split"):
        train(tiny_config(validation_split=0.1), path, tmp_path / "out")


def test_an_unknown_base_model_names_the_choices(tiny_config, toy_dataset, tmp_path):
    with pytest.raises(TinyforgeError, match="unknown base model 'no-such-model'.*preset.*local model folder"):
        train(tiny_config(base_model="no-such-model"), toy_dataset, tmp_path / "out")
    with pytest.raises(TinyforgeError, match="not a model folder"):
        resolve_base_model(str(tmp_path))


def test_an_uncached_hugging_face_id_offline_says_to_use_a_local_path_or_preset(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(TinyforgeError, match="local model folder or a preset"):
        resolve_base_model("nobody-here/not-a-model")


def test_lora_target_modules_the_model_lacks_are_listed(tiny_config, toy_dataset, tmp_path):
    with pytest.raises(TinyforgeError, match=r"no module named c_attn.*q_proj"):
        train(tiny_config(lora_target_modules=["q_proj", "c_attn"]), toy_dataset, tmp_path / "out")


@pytest.mark.parametrize("value", [0, -1e-4])
def test_a_learning_rate_of_zero_or_less_is_refused(value):
    with pytest.raises(TinyforgeError, match=f"learning_rate must be greater than 0, not {value}"):
        TrainConfig(learning_rate=value)


def test_every_number_of_the_config_has_an_upper_bound_that_is_enforced():
    numbers = [f for f in dataclasses.fields(TrainConfig) if "ge" in f.metadata or "gt" in f.metadata]
    assert len(numbers) >= 20
    for f in numbers:
        bound = f.metadata.get("le", f.metadata.get("lt"))
        assert bound is not None, f"{f.name} has no upper bound"
        too_big = bound * 10 if bound >= 1 else bound + 1
        with pytest.raises(InvalidConfig) as info:
            TrainConfig(**{f.name: int(too_big) if "int" in str(f.type) else float(too_big)})
        assert list(info.value.problems) == [f.name], f.name
    for value in (float("inf"), float("nan"), "3", True):
        with pytest.raises(InvalidConfig, match="epochs must be"):
            TrainConfig(epochs=value)


def test_config_problems_are_all_reported_at_once():
    with pytest.raises(TinyforgeError) as info:
        TrainConfig.from_dict({"batch_size": 0, "method": "qlora", "lora_dropout": 1.5})
    message = str(info.value)
    assert "batch_size must be at least 1" in message and "method must be one of lora, full" in message
    assert "lora_dropout" in message
    with pytest.raises(TinyforgeError, match="unknown field"):
        TrainConfig.from_dict({"lr": 1})


def _limit_file_size():
    # The kernel then fails writes past the limit with EFBIG instead of killing the process,
    # which is what a full disk looks like to the writer: a failed write in the middle of a file.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))


def test_the_disk_filling_while_saving_removes_the_partial_folder(tiny_model_dir, toy_dataset, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [TINYFORGE, "train", "--data", str(toy_dataset), "--base", str(tiny_model_dir), "--out", str(out),
         "--method", "full", "--max-steps", "2", "--save-steps", "1", "--quiet"],
        capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "disk filled up while saving the checkpoint at step 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    leftovers = sorted(p.name for p in (out / "checkpoints").iterdir()) if (out / "checkpoints").exists() else []
    assert leftovers == []
    assert not (out / "tinyforge.json").exists()


def test_rows_given_in_memory_are_validated_too(tiny_config, tmp_path):
    with pytest.raises(TinyforgeError, match="dataset row 2 is invalid"):
        train(tiny_config(), [{"instruction": "q", "output": "a"}, {"instruction": "q"}], tmp_path / "out")
