"""Preference objectives (DPO, ORPO, KTO) on the tiny model: they learn a learnable preference,
score held-out pairs above chance, resume and cancel like supervised runs, and their losses equal
TRL's on the same batch."""

from __future__ import annotations

import json

import pytest
import torch
from ml.conftest import TOY_FACTS, write_jsonl
from safetensors.torch import load_file

from tinyforge.errors import TinyforgeError
from tinyforge.ml.config import TrainConfig
from tinyforge.ml.train import TrainerCallback, list_checkpoints, train

# The preferred answers open with "Yes." and the dispreferred ones with "No.", whatever the
# question: a preference the tiny model can learn and apply to questions it was not trained on.
HELD_OUT = [("What colour is the Widget Pro?", "The Widget Pro is blue."),
            ("Where is Quillport?", "Quillport is in Zorbland.")]


def pair_rows(facts=TOY_FACTS, copies=4):
    return [{"prompt": q, "chosen": f"Yes. {a}", "rejected": f"No. {a}"} for _ in range(copies) for q, a in facts]


def unpaired_rows(facts=TOY_FACTS, copies=4):
    rows = []
    for _ in range(copies):
        for q, a in facts:
            rows.append({"prompt": q, "completion": f"Yes. {a}", "label": True})
            rows.append({"prompt": q, "completion": f"No. {a}", "label": False})
    return rows


class Recorder(TrainerCallback):
    def __init__(self, stop_at=None):
        self.steps, self.evals, self.stop_at = [], [], stop_at

    def on_step(self, progress):
        self.steps.append(progress)

    def on_evaluate(self, progress):
        self.evals.append(progress)

    def should_stop(self):
        return self.stop_at is not None and self.steps and self.steps[-1].step >= self.stop_at


def mean(values):
    return sum(values) / len(values)


@pytest.mark.parametrize("objective,method,rows", [
    ("dpo", "lora", pair_rows), ("orpo", "full", pair_rows), ("kto", "lora", unpaired_rows)])
def test_a_preference_objective_learns_a_learnable_preference_and_applies_it_to_held_out_prompts(
        tiny_config, tmp_path, objective, method, rows):
    validation = rows(HELD_OUT, copies=1)
    recorder = Recorder()
    config = tiny_config(objective=objective, method=method, max_steps=24, learning_rate=3e-3 if method == "lora" else 1e-3,
                         lr_schedule="constant", eval_steps=24, beta=0.5)
    result = train(config, rows(), tmp_path / "out", [recorder], validation=validation)
    assert result.status == "completed"
    curve = [h["loss"] for h in result.losses]
    assert mean(curve[-4:]) < 0.8 * mean(curve[:4]), curve
    accuracy = [p.metrics["preference_accuracy"] for p in recorder.steps]
    assert mean(accuracy[-4:]) > mean(accuracy[:4]) and accuracy[-1] == 1.0, accuracy
    last = recorder.steps[-1].metrics
    assert last["reward_chosen"] > last["reward_rejected"]
    if objective != "kto":
        assert last["reward_margin"] == pytest.approx(last["reward_chosen"] - last["reward_rejected"], abs=1e-5)
    # Held out: questions never trained on, ranked as the preference says.
    assert recorder.evals[-1].metrics["preference_accuracy"] == 1.0
    assert result.metrics["eval_preference_accuracy"] == 1.0 and result.metrics["eval_reward_margin"] > 0
    saved = json.loads((tmp_path / "out" / "tinyforge.json").read_text())
    assert saved["config"]["objective"] == objective


def test_dpo_starts_at_the_reference_and_its_loss_there_is_log_2(tiny_config, tmp_path):
    """At step 0 the policy is the reference (the new adapter is zero), so every reward is 0 and
    the DPO loss is -log sigmoid(0) = log 2: the reference is the starting model."""
    recorder = Recorder()
    config = tiny_config(objective="dpo", max_steps=1, learning_rate=1e-12, validation_split=0.0)
    result = train(config, pair_rows(), tmp_path / "out", [recorder])
    assert result.losses[0]["loss"] == pytest.approx(0.693147, abs=1e-4)
    assert recorder.steps[0].metrics["reward_margin"] == pytest.approx(0.0, abs=1e-4)


def test_dpo_from_an_earlier_run_keeps_its_weights_as_the_reference(tiny_config, toy_dataset, tiny_model_dir, tmp_path):
    sft = train(tiny_config(max_steps=4, validation_split=0.0, learning_rate=1e-2), toy_dataset, tmp_path / "sft")
    assert sft.status == "completed"
    recorder = Recorder()
    config = tiny_config(objective="dpo", base_model=str(tmp_path / "sft"), max_steps=1, learning_rate=1e-12,
                         validation_split=0.0)
    result = train(config, pair_rows(), tmp_path / "dpo", [recorder])
    # The starting model is the earlier run (adapter merged), the new adapter starts at zero.
    assert result.losses[0]["loss"] == pytest.approx(0.693147, abs=1e-4)
    adapter = load_file(tmp_path / "dpo" / "adapter_model.safetensors")
    assert adapter and all("lora_" in name or "trainable_tokens" in name for name in adapter)
    # The saved model is the earlier run plus the new (here unchanged) adapter, not the base plus it.
    from tinyforge.ml.models import load_model_folder

    ids = torch.tensor([[5, 17, 40, 99, 3, 8]])
    with torch.no_grad():
        earlier, dpo = load_model_folder(tmp_path / "sft")[0](ids).logits, load_model_folder(tmp_path / "dpo")[0](ids).logits
        base = load_model_folder(tiny_model_dir)[0](ids).logits
    assert torch.allclose(dpo, earlier, atol=1e-4) and not torch.allclose(dpo, base, atol=1e-3)


def test_full_dpo_changes_weights_and_its_reference_is_the_starting_weights(tiny_config, tiny_model_dir, tmp_path):
    config = tiny_config(objective="dpo", method="full", max_steps=6, learning_rate=1e-3, validation_split=0.0)
    result = train(config, pair_rows(), tmp_path / "out")
    assert result.losses[0]["loss"] == pytest.approx(0.693147, abs=1e-4)
    assert result.losses[-1]["loss"] < result.losses[0]["loss"]
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)


def test_a_resumed_dpo_run_continues_the_same_curve(tiny_config, tmp_path):
    config = tiny_config(objective="dpo", max_steps=6, save_steps=3, validation_split=0.0, learning_rate=3e-3)
    whole = train(config, pair_rows(), tmp_path / "whole")
    stopped = train(config, pair_rows(), tmp_path / "part", [Recorder(stop_at=3)])
    assert stopped.status == "cancelled" and [p.name for p in list_checkpoints(tmp_path / "part")][-1] == "checkpoint-000003"
    resumed = train(config, pair_rows(), tmp_path / "part", resume_from="latest")
    assert resumed.status == "completed"
    assert [h["loss"] for h in resumed.losses] == pytest.approx([h["loss"] for h in whole.losses], abs=1e-5)
    assert [h["preference_accuracy"] for h in resumed.losses] == [h["preference_accuracy"] for h in whole.losses]


def test_an_objective_refuses_rows_of_another_kind(tiny_config, toy_rows, tmp_path):
    with pytest.raises(TinyforgeError, match=r"objective dpo trains on preference pairs .* training row 1 is one of "
                                             r"supervised rows"):
        train(tiny_config(objective="dpo", validation_split=0.0), toy_rows, tmp_path / "a")
    with pytest.raises(TinyforgeError, match="objective kto trains on unpaired preferences"):
        train(tiny_config(objective="kto", validation_split=0.0), pair_rows(), tmp_path / "b")
    with pytest.raises(TinyforgeError, match="objective sft trains on supervised rows"):
        train(tiny_config(validation_split=0.0), pair_rows(), tmp_path / "c")


def test_preference_config_fields_are_checked():
    from tinyforge.ml.config import InvalidConfig

    with pytest.raises(InvalidConfig, match="objective must be one of sft, dpo, orpo, kto"):
        TrainConfig(objective="ppo")
    with pytest.raises(InvalidConfig, match="beta must be greater than 0"):
        TrainConfig(objective="dpo", beta=0.0)
    with pytest.raises(InvalidConfig, match="label_smoothing only applies to dpo_loss robust"):
        TrainConfig(objective="dpo", label_smoothing=0.1)
    with pytest.raises(InvalidConfig, match="train_on_prompt only applies to objective sft"):
        TrainConfig(objective="kto", train_on_prompt=True)
    assert TrainConfig(objective="dpo").learning_rate == 5e-5
    assert TrainConfig(objective="dpo", method="full").learning_rate == 1e-6
    assert TrainConfig.from_preset("dpo").objective == "dpo"


# ---------------------------------------------------------------------------------------------
# parity with TRL: the same batch through TRL's trainer and through our loss functions


@pytest.fixture
def policy_and_reference(tiny_model_dir):
    """The tiny model with its weights moved a little (the policy) and as it was (the reference)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    policy, reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for weight in policy.parameters():
            weight.add_(torch.randn_like(weight) * 0.02)
    return policy.eval(), reference.eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def _our_logps(model, input_ids, completion_mask, attention_mask):
    """Our sequence log-probabilities of TRL's batch (its rows are left-aligned, right-padded)."""
    from tinyforge.ml.formatting import IGNORE_INDEX
    from tinyforge.ml.loss import sequence_logps
    from tinyforge.ml.packing import Batch

    labels = input_ids.masked_fill(completion_mask == 0, IGNORE_INDEX)
    positions = (attention_mask.cumsum(1) - 1).clamp(min=0)
    batch = Batch(input_ids, labels, attention_mask, positions, int(attention_mask.sum()), 0)
    segments = torch.arange(len(input_ids)).unsqueeze(1).expand_as(input_ids)
    return sequence_logps(model, batch, segments, len(input_ids))


def _trl_logps(model, input_ids, completion_mask, attention_mask):
    """TRL's sequence log-probabilities: its trainers patch the model with a fused output head."""
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True, use_cache=False)
    return out.log_probs.sum(1)


def _same_logps(ours, theirs):
    # TRL's fused head computes the log-softmax in vocabulary tiles, ours in one piece: float32
    # rounding differs, by about 1e-6 of a sequence's log-probability.
    return torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def _trl_trainer(kind, model, reference, tokenizer, rows, tmp_path, **config):
    from datasets import Dataset

    if kind == "dpo":
        from trl import DPOConfig as Config, DPOTrainer as Trainer
    else:
        from trl import KTOConfig as Config, KTOTrainer as Trainer
    # bf16=False: TRL's default autocasts to bfloat16 on a CPU that has it, and the comparison is in float32.
    args = Config(output_dir=str(tmp_path / kind), per_device_train_batch_size=len(rows), report_to=[],
                  use_cpu=True, bf16=False, max_length=128, **config)
    return Trainer(model=model, ref_model=reference, args=args, train_dataset=Dataset.from_list(rows),
                   processing_class=tokenizer)


@pytest.mark.parametrize("loss_type,extra", [("sigmoid", {}), ("hinge", {}), ("ipo", {}),
                                              ("robust", {"label_smoothing": 0.2})])
def test_dpo_losses_equal_trls_on_the_same_batch(policy_and_reference, tmp_path, loss_type, extra):
    from tinyforge.ml.loss import dpo_loss

    model, reference, tokenizer = policy_and_reference
    rows = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": f"Yes. {a}"}],
             "rejected": [{"role": "assistant", "content": f"No {a[::-1]}"}]} for q, a in TOY_FACTS[:4]]
    trainer = _trl_trainer("dpo", model, reference, tokenizer, rows, tmp_path, beta=0.3, loss_type=[loss_type], **extra)
    inputs = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, inputs)
        args = (inputs["input_ids"], inputs["completion_mask"], inputs["attention_mask"])
        ours, tokens = _our_logps(model, *args)
        logps, ref = _trl_logps(trainer.model, *args), _trl_logps(trainer.ref_model, *args)
        assert _same_logps(ours, logps) and _same_logps(_our_logps(reference, *args)[0], ref)
    n = len(rows)  # TRL's batch is [chosen..., rejected...]
    losses, chosen, rejected = dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], beta=0.3, loss_type=loss_type,
                                        label_smoothing=extra.get("label_smoothing", 0.0),
                                        chosen_tokens=tokens[:n], rejected_tokens=tokens[n:])
    assert abs(float(losses.mean()) - float(trl_loss)) < 1e-5
    assert abs(float(chosen.mean()) - trainer._metrics["eval"]["rewards/chosen"][-1]) < 1e-5
    assert abs(float(rejected.mean()) - trainer._metrics["eval"]["rewards/rejected"][-1]) < 1e-5


def test_kto_loss_equals_trls_on_the_same_batch(policy_and_reference, tmp_path):
    from tinyforge.ml.loss import kto_kl, kto_loss

    model, reference, tokenizer = policy_and_reference
    rows = [{"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": a}],
             "label": i % 2 == 0} for i, (q, a) in enumerate(TOY_FACTS)]
    trainer = _trl_trainer("kto", model, reference, tokenizer, rows, tmp_path, beta=0.2, desirable_weight=1.5,
                           undesirable_weight=0.7)
    inputs = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, inputs)
        args = (inputs["input_ids"], inputs["completion_mask"], inputs["attention_mask"])
        kl_args = (inputs["KL_input_ids"], inputs["KL_completion_mask"], inputs["KL_attention_mask"])
        logps, kl_logps = _trl_logps(trainer.model, *args), _trl_logps(trainer.model, *kl_args)
        ref, ref_kl = _trl_logps(trainer.ref_model, *args), _trl_logps(trainer.ref_model, *kl_args)
        assert _same_logps(_our_logps(model, *args)[0], logps) and _same_logps(_our_logps(model, *kl_args)[0], kl_logps)
    losses, _ = kto_loss(logps, ref, inputs["label"].bool(), kto_kl(kl_logps, ref_kl), beta=0.2,
                         desirable_weight=1.5, undesirable_weight=0.7)
    assert abs(float(losses.mean()) - float(trl_loss)) < 1e-5


def test_orpo_odds_ratio_term_equals_trls(tmp_path):
    from types import SimpleNamespace

    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    from tinyforge.ml.loss import orpo_loss

    torch.manual_seed(0)
    chosen, rejected = -torch.rand(8) * 3 - 1e-3, -torch.rand(8) * 3 - 1e-3
    fake = SimpleNamespace(beta=0.25, accelerator=SimpleNamespace(device=torch.device("cpu")))
    trl_terms, trl_chosen, trl_rejected, _, _ = ORPOTrainer.odds_ratio_loss(fake, chosen, rejected)
    losses, ours_chosen, ours_rejected = orpo_loss(chosen, rejected, beta=0.25)
    # TRL returns beta x log sigmoid(log odds ratio) and subtracts it from its NLL term; ours
    # includes the chosen answer's NLL per token, which is -chosen.
    assert torch.allclose(losses, -chosen - trl_terms, atol=1e-5)
    assert torch.allclose(ours_chosen, trl_chosen, atol=1e-6) and torch.allclose(ours_rejected, trl_rejected, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# preference rows: TRL's shapes, validated with per-row errors


def test_preference_rows_in_trls_shapes_are_valid(tmp_path):
    from tinyforge.ml.schema import PreferenceRow, UnpairedRow, read_rows, validate_file

    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."},
        {"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi?"}],
         "chosen": [{"role": "assistant", "content": "Hello!"}], "rejected": [{"role": "assistant", "content": "No."}]},
        {"messages": [{"role": "user", "content": "Hey?"}], "chosen": "Hey!", "rejected": "Meh."},
    ])
    report = validate_file(path)
    assert report.valid_rows == 3 and report.invalid_count == 0
    rows = [row for _, row in read_rows(path)]
    assert all(isinstance(r, PreferenceRow) for r in rows)
    assert rows[1].prompt_messages()[0] == {"role": "system", "content": "Be kind."} and rows[1].rejected_text() == "No."
    unpaired = write_jsonl(tmp_path / "unpaired.jsonl", [{"prompt": "Hi?", "completion": "Hello!", "label": True},
                                                         {"prompt": "Hi?", "completion": "Go away.", "label": False}])
    assert all(isinstance(r, UnpairedRow) for _, r in read_rows(unpaired))


def test_bad_preference_rows_are_reported_with_line_and_field(tmp_path):
    from tinyforge.ml.schema import validate_file

    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."},  # 1: fine
        {"prompt": "Hi?", "chosen": "Same.", "rejected": "Same."},  # 2: no preference
        {"prompt": "Hi?", "chosen": "Hello!"},  # 3: rejected missing
        {"chosen": "Hello!", "rejected": "Go away."},  # 4: no prompt
        {"instruction": "Hi?", "output": "Hello!"},  # 5: supervised among pairs
        {"prompt": "Hi?", "completion": "Hello!", "label": True},  # 6: unpaired among pairs
        {"prompt": "Hi?", "completion": "Hello!", "label": "yes"},  # 7: label not a boolean
        {"prompt": "Hi?", "chosen": [{"role": "user", "content": "x"}], "rejected": "y"},  # 8: chosen not an answer
    ])
    report = validate_file(path)
    assert report.valid_rows == 1 and report.invalid_count == 7
    by_line = {}
    for problem in report.invalid:
        by_line.setdefault(problem.line, []).append((problem.field, problem.reason))
    assert any("chosen and rejected are the same text" in r for _, r in by_line[2])
    assert ("rejected", "required field is missing") in by_line[3]
    assert any("exactly one of prompt" in r for _, r in by_line[4])
    assert any("supervised row" in r and "line 1 is a preference pair" in r for _, r in by_line[5])
    assert any("unpaired preference" in r and "line 1 is a preference pair" in r for _, r in by_line[6])
    assert any(f == "label" for f, _ in by_line[7])
    assert any("one assistant message" in r for _, r in by_line[8])


def test_a_pair_longer_than_the_context_is_reported_with_its_tokens(tiny_model_dir, tmp_path):
    from functools import partial

    from transformers import AutoTokenizer

    from tinyforge.ml.formatting import count_tokens
    from tinyforge.ml.schema import validate_file

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = write_jsonl(tmp_path / "long.jsonl", [
        {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."},
        {"prompt": "fox " * 200, "chosen": "Hello!", "rejected": "Go away."},
    ])
    report = validate_file(path, partial(count_tokens, tokenizer), max_seq_length=64)
    assert report.over_context_count == 1 and report.over_context[0]["line"] == 2
    assert report.over_context[0]["tokens"] > 200 and report.usable_rows == 1
