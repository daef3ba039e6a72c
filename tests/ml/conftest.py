"""Fixtures for the ML engine's tests: small datasets and a fast training config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tinyforge.ml.config import TrainConfig

DEMO_DATASET = Path(__file__).resolve().parents[2] / "examples" / "data" / "demo_dataset.jsonl"

# A toy task the tiny model can learn in a few dozen steps: a fixed answer per question.
TOY_FACTS = [
    ("What is the capital of Zorbland?", "The capital of Zorbland is Quillport."),
    ("How many devices does Widget Pro support?", "Widget Pro supports up to 12 devices."),
    ("Reverse the word hello.", "olleh"),
    ("Reverse the word world.", "dlrow"),
    ("What does the quick brown fox do?", "The quick brown fox jumps over the lazy dog."),
    ("How long is the Widget Pro warranty?", "Widget Pro ships with a 3 year warranty."),
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def toy_rows():
    rows = []
    for copy in range(4):
        for question, answer in TOY_FACTS:
            rows.append({"instruction": question, "output": answer, "metadata": {"copy": copy}})
    return rows


@pytest.fixture
def toy_dataset(tmp_path, toy_rows) -> Path:
    return write_jsonl(tmp_path / "toy.jsonl", toy_rows)


@pytest.fixture
def tiny_config(tiny_model_dir):
    """Factory: a config for the tiny model that trains in about a second."""

    def make(**overrides) -> TrainConfig:
        values = dict(base_model=str(tiny_model_dir), max_steps=6, batch_size=4, learning_rate=3e-3,
                      max_seq_length=128, eval_generations=0, lora_dropout=0.0, seed=7)
        values.update(overrides)
        return TrainConfig(**values)

    return make


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    """A writable copy of the tiny model."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model-copy"))
