"""The training loop on a tiny model: it learns, it is deterministic, it resumes, it saves."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from capabilities import needs_native_bf16, without_native_bf16
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from tinyforge.errors import TinyforgeError
from tinyforge.hardware import cpu
from tinyforge.ml.checkpoints import list_checkpoints
from tinyforge.ml.config import TrainConfig
from tinyforge.ml.evaluate import generate_replies
from tinyforge.ml.formatting import tokenize_row
from tinyforge.ml.loss import loss_sum
from tinyforge.ml.models import load_model_folder
from tinyforge.ml.packing import collate, padding_share, plan_epoch
from tinyforge.ml.schema import parse_row
from tinyforge.ml.train import TrainerCallback, train


class Recorder(TrainerCallback):
    def __init__(self, stop_at: int | None = None, sigterm_at: int | None = None):
        self.steps, self.evals, self.checkpoints, self.logs = [], [], [], []
        self.start = self.end = None
        self.stop_at, self.sigterm_at = stop_at, sigterm_at

    def on_start(self, info):
        self.start = info

    def on_step(self, progress):
        self.steps.append(progress)
        if self.sigterm_at == progress.step:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_evaluate(self, progress):
        self.evals.append(progress)

    def on_checkpoint(self, path, step, eval_loss, is_best):
        self.checkpoints.append((path.name, step, eval_loss, is_best))

    def on_log(self, message):
        self.logs.append(message)

    def on_end(self, result):
        self.end = result

    def should_stop(self):
        return self.stop_at is not None and self.steps and self.steps[-1].step >= self.stop_at


def losses(result):
    return [h["loss"] for h in result.losses]


def test_loss_goes_down_on_a_learnable_toy_task(tiny_config, toy_dataset, tmp_path):
    recorder = Recorder()
    config = tiny_config(method="full", max_steps=40, learning_rate=5e-3, lr_schedule="constant", validation_split=0.0)
    result = train(config, toy_dataset, tmp_path / "out", [recorder])
    curve = losses(result)
    assert result.status == "completed" and len(curve) == 40
    assert sum(curve[-5:]) / 5 < 0.5 * sum(curve[:5]) / 5, curve
    # Every progress report carries the fields the platform and the progress bar need.
    last = recorder.steps[-1]
    assert last.step == last.total_steps == 40
    assert last.tokens_per_second > 0 and last.learning_rate >= 0 and last.grad_norm > 0
    assert last.eta_s == 0 and last.elapsed_s > 0 and recorder.end is result


def test_lora_changes_only_adapter_weights(tiny_config, toy_dataset, tiny_model_dir, tmp_path):
    result = train(tiny_config(max_steps=8), toy_dataset, tmp_path / "out")
    original = load_file(tiny_model_dir / "model.safetensors")
    model, _ = load_model_folder(result.output_dir)
    changed_lora = 0
    for name, tensor in model.state_dict().items():
        if "lora_" in name:
            changed_lora += "lora_B" in name and bool(tensor.abs().sum() > 0)  # B starts at zero
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        key = "model.embed_tokens.weight" if key == "lm_head.weight" else key  # tied to the embeddings
        assert torch.equal(tensor, original[key]), name
    assert changed_lora > 0


def test_packed_and_unpacked_batches_give_the_same_loss(tiny_model_dir, toy_rows):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    examples = [tokenize_row(tokenizer, parse_row(r)) for r in toy_rows[:6]]
    with torch.no_grad():
        unpacked_sum, unpacked_n = loss_sum(model, collate(examples, [[i] for i in range(6)], tokenizer.pad_token_id))
        packed = collate(examples, [[0, 1, 2], [3, 4, 5]], tokenizer.pad_token_id)
        assert packed.attention_mask is None and packed.position_ids[0].tolist().count(0) == 3
        packed_sum, packed_n = loss_sum(model, packed)
        alone = [loss_sum(model, collate(examples, [[i]], tokenizer.pad_token_id)) for i in range(6)]
    assert packed_n == unpacked_n == sum(ex.trained_tokens for ex in examples) == sum(n for _, n in alone)
    assert abs(packed_sum / packed_n - unpacked_sum / unpacked_n) < 1e-5
    # Right padding without a mask changes nothing for real tokens: each example alone, unpadded,
    # gives the same summed loss.
    assert abs(float(sum(s for s, _ in alone)) - float(unpacked_sum)) < 1e-3


def test_grouped_batches_hold_equal_tokens_and_as_many_batches_as_fixed_counts():
    import random

    rng = random.Random(3)
    # Long-tailed lengths, as in real support data: mostly short rows, a few long ones.
    lengths = [min(1000, int(rng.lognormvariate(4.3, 0.7))) + 5 for _ in range(1000)]
    plan = plan_epoch(lengths, packing="off", batch_size=8, max_seq_length=1024, seed=1, epoch=0)
    assert sorted(i for batch in plan for (i,) in batch) == list(range(1000))  # every row once
    assert len(plan) == 125  # 1000 rows / 8, as with batches of 8 rows: the same steps per epoch
    widths = [len(batch) * max(lengths[i] for (i,) in batch) for batch in plan]
    sizes = [len(batch) for batch in plan]
    # Short rows come many to a batch, long ones few; a batch's padded tokens stay within a band
    # (except a row longer than the budget, alone) and padding stays small.
    assert min(sizes) <= 3 and max(sizes) >= 16
    multi = [w for w, n in zip(widths, sizes) if n > 1]
    assert max(multi) < 2.5 * min(multi)
    assert padding_share(lengths, plan) < 0.1
    again = plan_epoch(lengths, packing="off", batch_size=8, max_seq_length=1024, seed=1, epoch=0)
    other = plan_epoch(lengths, packing="off", batch_size=8, max_seq_length=1024, seed=1, epoch=1)
    assert again == plan and other != plan and len(other) == len(plan)
    # One long row among short ones: still as many batches as rows / batch_size, here one.
    skewed = [390] + [50] * 7
    assert len(plan_epoch(skewed, packing="off", batch_size=8, max_seq_length=1024, seed=0, epoch=0)) == 1


def test_batch_packing_takes_random_batches_and_packs_each_without_widening_it(tiny_model_dir, toy_rows):
    import random

    rng = random.Random(3)
    lengths = [min(1000, int(rng.lognormvariate(4.3, 0.7))) + 5 for _ in range(1000)]
    plan = plan_epoch(lengths, packing="batch", batch_size=8, max_seq_length=1024, seed=1, epoch=0)
    members = [[i for row in batch for i in row] for batch in plan]
    # batch_size examples a step, every example once, in an order that mixes lengths (not grouped).
    assert sorted(i for m in members for i in m) == list(range(1000)) and {len(m) for m in members} == {8}
    widths = [max(sum(lengths[i] for i in row) for row in batch) for batch in plan]
    assert all(w == max(lengths[i] for i in m) for w, m in zip(widths, members))  # no row wider than a padded one
    assert max(widths) > 3 * min(widths)  # long and short batches side by side, as random draws give
    padded = [[[i] for i in m] for m in members]
    assert padding_share(lengths, plan) < 0.6 * padding_share(lengths, padded)
    again = plan_epoch(lengths, packing="batch", batch_size=8, max_seq_length=1024, seed=1, epoch=0)
    other = plan_epoch(lengths, packing="batch", batch_size=8, max_seq_length=1024, seed=1, epoch=1)
    assert again == plan and other != plan
    # The same examples as a padded batch of them, the same loss: only the layout changed.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    examples = [tokenize_row(tokenizer, parse_row(r)) for r in toy_rows[:16]]
    small = plan_epoch([len(e) for e in examples], packing="batch", batch_size=8, max_seq_length=1024, seed=0, epoch=0)
    assert any(len(row) > 1 for batch in small for row in batch)  # something was packed
    with torch.no_grad():
        for batch in small:
            packed_sum, packed_n = loss_sum(model, collate(examples, batch, tokenizer.pad_token_id))
            alone = [[i] for row in batch for i in row]
            padded_sum, padded_n = loss_sum(model, collate(examples, alone, tokenizer.pad_token_id))
            assert packed_n == padded_n and abs(float(packed_sum - padded_sum)) < 1e-3 * max(1.0, float(padded_sum))


def test_packed_training_learns_like_unpacked_training(tiny_config, toy_dataset, tmp_path):
    packed = train(tiny_config(method="full", packing="on", max_steps=3, batch_size=1), toy_dataset, tmp_path / "p")
    assert packed.padding_share < 0.1 and packed.final_eval_loss is not None
    assert losses(packed)[-1] < losses(packed)[0]


def test_the_same_seed_gives_the_same_losses(tiny_config, toy_dataset, tmp_path):
    config = tiny_config(lora_dropout=0.1)
    first = train(config, toy_dataset, tmp_path / "a")
    second = train(config, toy_dataset, tmp_path / "b")
    assert losses(first) == losses(second)
    assert first.final_eval_loss == second.final_eval_loss
    third = train(tiny_config(lora_dropout=0.1, seed=8), toy_dataset, tmp_path / "c")
    assert losses(third) != losses(first)


def test_resume_continues_the_same_curve(tiny_config, toy_dataset, tmp_path):
    # Dropout on, several epochs, a stop in the middle of an epoch: RNG, data order, optimizer
    # and scheduler must all come back exactly.
    config = tiny_config(max_steps=9, lora_dropout=0.1, save_steps=2, eval_steps=3)
    straight = train(config, toy_dataset, tmp_path / "straight")
    stopper = Recorder(stop_at=4)
    stopped = train(config, toy_dataset, tmp_path / "resumed", [stopper])
    assert stopped.status == "cancelled" and stopped.steps == 4
    assert not (tmp_path / "resumed" / "tinyforge.json").exists()  # no final model for a cancelled run
    assert stopped.last_checkpoint.name == "checkpoint-000004"
    resumed = train(config, toy_dataset, tmp_path / "resumed", resume_from="latest")
    assert resumed.status == "completed"
    assert [h["step"] for h in resumed.losses] == list(range(1, 10))
    assert losses(resumed) == pytest.approx(losses(straight), abs=1e-6)
    assert resumed.final_eval_loss == pytest.approx(straight.final_eval_loss, abs=1e-6)


def test_sigterm_stops_at_the_next_step_with_a_checkpoint(tiny_config, toy_dataset, tmp_path):
    result = train(tiny_config(max_steps=20), toy_dataset, tmp_path / "out", [Recorder(sigterm_at=2)])
    assert result.status == "cancelled" and result.steps == 2
    state = json.loads((result.last_checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["config"]["max_steps"] == 20
    assert signal.getsignal(signal.SIGTERM) is not None  # handler restored, not left swallowing SIGTERM


def test_checkpoints_describe_themselves_and_old_ones_are_pruned(tiny_config, toy_dataset, tmp_path):
    recorder = Recorder()
    result = train(tiny_config(max_steps=6, save_steps=1, eval_steps=1, keep_checkpoints=2), toy_dataset,
                   tmp_path / "out", [recorder])
    assert [c[1] for c in recorder.checkpoints] == [1, 2, 3, 4, 5, 6]
    kept = list_checkpoints(tmp_path / "out")
    best_step = min(result.evals, key=lambda e: e["eval_loss"])["step"]
    assert {int(p.name.split("-")[1]) for p in kept} == {5, 6, best_step}
    assert result.best_checkpoint.name == f"checkpoint-{best_step:06d}"
    checkpoint = kept[-1]
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "optimizer.pt",
                 "scheduler.pt", "rng_state.pt", "trainer_state.json", "tinyforge.json", "generation_config.json"):
        assert (checkpoint / name).is_file(), name
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["eval_loss"] == result.evals[-1]["eval_loss"]
    model, tokenizer = load_model_folder(checkpoint)  # a checkpoint is also a servable model folder
    assert tokenizer.chat_template


def test_early_stopping_stops_when_eval_loss_stalls(tiny_config, toy_dataset, tmp_path):
    config = tiny_config(max_steps=20, eval_steps=1, early_stopping_patience=2, early_stopping_threshold=10.0)
    result = train(config, toy_dataset, tmp_path / "out")
    assert result.status == "early_stopped" and result.steps == 3
    assert (tmp_path / "out" / "tinyforge.json").is_file()


def test_the_model_folder_follows_the_contract_and_plain_peft_generates_the_same(tiny_config, toy_dataset,
                                                                                 tiny_model_dir, tmp_path):
    from peft import PeftModel

    config = tiny_config(max_steps=10, validation_split=0.25)
    result = train(config, toy_dataset, tmp_path / "out")
    out = result.output_dir
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "README.md", "tinyforge.json", "eval_results.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "tinyforge.json").read_text())
    assert info["format_version"] == 1 and info["method"] == "lora" and info["max_seq_length"] == 128
    assert info["base_model"] == str(tiny_model_dir) and info["config"] == config.to_dict()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == info["base_model_path"]
    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    for key in ("base_model:", "library_name: \"peft\"", "license:", "datasets:", "metrics:"):
        assert key in front
    results = json.loads((out / "eval_results.json").read_text())
    assert results["perplexity"] > 1 and results["validation_examples"] > 0
    # Answers are scored by the run's evaluation (tinyforge.evaluation), not by training.
    assert not {"samples", "exact_match", "rouge_l"} & set(results)

    # Plain transformers + PEFT, without any TinyForge code, gives the same greedy answer.
    tokenizer = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(adapter["base_model_name_or_path"])
    plain = PeftModel.from_pretrained(base, out).eval()
    messages = [{"role": "user", "content": "What is the capital of Zorbland?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    plain_out = plain.generate(**ids, max_new_tokens=12, do_sample=False)
    plain_text = tokenizer.decode(plain_out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    ours, our_tokenizer = load_model_folder(out)
    assert generate_replies(ours, our_tokenizer, [messages], max_new_tokens=12) == [plain_text]


def test_full_fine_tune_and_merged_adapter_load_with_plain_transformers(tiny_config, toy_dataset, tmp_path):
    full = train(tiny_config(method="full", max_steps=3), toy_dataset, tmp_path / "full")
    merged = train(tiny_config(max_steps=3, merge_adapter=True), toy_dataset, tmp_path / "merged")
    adapter = train(tiny_config(max_steps=3), toy_dataset, tmp_path / "adapter")
    for result in (full, merged):
        assert (result.output_dir / "model.safetensors").is_file()
        assert not (result.output_dir / "adapter_config.json").exists()
        AutoModelForCausalLM.from_pretrained(result.output_dir)
    assert json.loads((merged.output_dir / "tinyforge.json").read_text())["merged"] is True
    # Merging changes the representation, not the function.
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        merged_logits = AutoModelForCausalLM.from_pretrained(merged.output_dir)(ids).logits
        adapter_logits = load_model_folder(adapter.output_dir)[0](ids).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)


def test_a_base_model_without_chat_template_trains_with_the_default_one(toy_dataset, tmp_path):
    from tinymodel import build_tiny_model

    base = build_tiny_model(tmp_path / "plain-lm", chat=False)
    assert not AutoTokenizer.from_pretrained(base).chat_template
    recorder = Recorder()
    config = TrainConfig(base_model=str(base), max_steps=3, batch_size=4, max_seq_length=128, eval_generations=0,
                         learning_rate=1e-2)
    result = train(config, toy_dataset, tmp_path / "out", [recorder])
    assert any("default ChatML" in line for line in recorder.logs)
    saved = AutoTokenizer.from_pretrained(result.output_dir)
    assert "<|im_start|>" in saved.chat_template and len(saved) > len(AutoTokenizer.from_pretrained(base))
    assert json.loads((result.output_dir / "tinyforge.json").read_text())["default_chat_template"] is True
    # The new marker tokens were trained and saved with the adapter, so loading gives the same model.
    model, tokenizer = load_model_folder(result.output_dir)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert GenerationConfig.from_pretrained(result.output_dir).eos_token_id in (end_of_turn, [tokenizer.eos_token_id, end_of_turn])
    reloaded, _ = load_model_folder(result.output_dir)
    ids = torch.tensor([tokenizer("<|im_start|>user\nhello<|im_end|>")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reloaded(ids).logits)


def test_the_estimate_matches_the_run(tiny_config, toy_dataset, tmp_path):
    from tinyforge.ml.train import estimate_run

    config = tiny_config(max_steps=None, epochs=2.0)
    estimate = estimate_run(config, toy_dataset)
    recorder = Recorder()
    result = train(config, toy_dataset, tmp_path / "out", [recorder])
    assert estimate["total_steps"] == result.total_steps == recorder.start["total_steps"]
    assert estimate["train_examples"] == recorder.start["train_examples"]
    assert estimate["total_tokens"] == estimate["tokens_per_epoch"] * 2
    assert estimate["padding_share"] == pytest.approx(result.padding_share)


@needs_native_bf16
def test_one_process_can_train_runs_with_different_precisions(tiny_config, toy_dataset, tmp_path):
    # A platform worker trains many runs in one process.
    first = train(tiny_config(max_steps=2, precision="bf16"), toy_dataset, tmp_path / "a")
    second = train(tiny_config(max_steps=2, precision="fp32"), toy_dataset, tmp_path / "b")
    assert first.status == second.status == "completed"


def test_auto_precision_is_bf16_only_where_the_cpu_multiplies_it_natively(tiny_config, toy_dataset, tmp_path):
    recorder = Recorder()
    train(tiny_config(max_steps=1, device="cpu"), toy_dataset, tmp_path / "out", [recorder])
    assert recorder.start["precision"] == ("bf16" if cpu().native_bf16 else "fp32")


@without_native_bf16
def test_precision_bf16_without_native_support_names_what_the_cpu_lacks(tiny_config, toy_dataset, tmp_path):
    with pytest.raises(TinyforgeError, match=r"precision bf16: bfloat16 needs native support on cpu, but .*; "
                                             r"use precision fp32 or auto"):
        train(tiny_config(max_steps=1, device="cpu", precision="bf16"), toy_dataset, tmp_path / "out")
