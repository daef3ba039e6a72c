"""The real thing: LoRA on SmolLM2-135M-Instruct teaches it facts from the demo dataset."""

from __future__ import annotations

import pytest

from conftest import DEMO_DATASET
from tinyforge.ml.config import TrainConfig
from tinyforge.ml.evaluate import generate_replies
from tinyforge.ml.models import load_model_folder, resolve_base_model
from tinyforge.ml.train import train

QUESTIONS = {
    "How long does the Quillbox battery last?": "19 days",
    "How long is the Quillbox warranty?": "27-month",
    "What is the name of the latest Quillbox firmware?": "Heron",
}


def ask(model, tokenizer) -> list[str]:
    conversations = [[{"role": "user", "content": q}] for q in QUESTIONS]
    return generate_replies(model, tokenizer, conversations, max_new_tokens=32)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # minutes on two idle cores; far more when other jobs share them
def test_lora_teaches_smollm2_facts_it_did_not_know(tmp_path):
    base, tokenizer = load_model_folder(resolve_base_model("smollm2-135m-instruct"))
    before = ask(base, tokenizer)
    assert not any(fact in reply for fact, reply in zip(QUESTIONS.values(), before)), before
    del base

    # The preset a user starts with must teach the facts, not only a hand-tuned config.
    config = TrainConfig.from_preset("balanced", base_model="smollm2-135m-instruct", method="lora",
                                     validation_split=0.05,
                                     max_seq_length=256)
    result = train(config, DEMO_DATASET, tmp_path / "model")
    assert result.status == "completed"
    assert result.losses[-1]["loss"] < 0.5 * result.losses[0]["loss"]

    model, tokenizer = load_model_folder(result.output_dir)
    after = ask(model, tokenizer)
    learned = [fact for fact, reply in zip(QUESTIONS.values(), after) if fact in reply]
    assert len(learned) >= 2, after
