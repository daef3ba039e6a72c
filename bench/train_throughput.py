"""Training throughput: TinyForge's engine against TRL's SFTTrainer and the plain transformers Trainer.

Same base model (SmolLM2-135M-Instruct from the offline preset), same data (the demo dataset
plus a deterministic instruction set of realistic, varied lengths: 400 chat rows, 40 of them held
out), same LoRA (r16, alpha 32, dropout 0.05, every attention and MLP projection), same
optimisation (AdamW, lr 2e-4, cosine, no warmup in these short runs, clip 1.0, seed 0), batch 8, same number of
optimizer steps, same machine, one run. Each contender runs in its own subprocess so its peak
memory is its own.

Contenders:
  ours           tinyforge.ml.train as a CPU runs it by default (packing "batch": 8 random rows a
                 step, packed into rows as wide as the longest of them)
  ours-packed    tinyforge.ml.train with packing on (the GPU default), max length 512
  ours-grouped   tinyforge.ml.train with packing off: length-grouped padded batches (least memory)
  trl-default    trl.SFTTrainer with SFTConfig defaults (random batches padded to the longest,
                 gradient checkpointing on, bf16 where supported, loss on every token)
  trl-packing    trl.SFTTrainer with packing=True, max_length 512 (given fewer steps so that it
                 processes about as many tokens as the others: one packed batch holds ~8x512 tokens)
  hf-trainer     transformers.Trainer with dynamic padding (DataCollatorForSeq2Seq), our labels

With --dpo, preference tuning instead (issue 20's benchmark): the same rows made pairs (the prompt,
its own answer chosen, the next row's answer rejected; 40 pairs held out), the same LoRA, beta 0.1,
lr 5e-5 (ours' LoRA default for preference runs; TRL's default 1e-6 would barely move in a few
steps, so both get 5e-5), batch 8 pairs, the same number of steps:
  ours-dpo       tinyforge.ml.train with objective dpo as a CPU runs it (reference log-probabilities of
                 the starting model computed once, before the first step, included in the time)
  trl-dpo        trl.DPOTrainer with DPOConfig's defaults otherwise (reference forward every step with
                 the adapter switched off, gradient checkpointing on, bf16 where supported)
Reported: non-pad tokens per second of the training forwards (chosen and rejected sequences, over
the whole train call), peak memory, and preference accuracy on the held-out pairs, measured the same
way for both: the share of pairs whose chosen answer gains more log-probability over the base model
than the rejected one (the sign of DPO's implicit reward margin).

Reported per contender: non-pad tokens per second (tokens of real examples, padding excluded,
counted at each one's model forward), non-pad tokens per CPU-second (all threads; far less
sensitive than wall time when other jobs share the cores), seconds per epoch (training-set tokens /
that rate), peak resident memory, padding share, and the final eval loss, measured for every
contender by the same function on the same held-out rows (assistant tokens only), and model
FLOPs utilisation against this machine's measured fp32 matmul peak.

    .venv/bin/python bench/train_throughput.py --steps 12
    .venv/bin/python bench/train_throughput.py --dpo --steps 12
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "data" / "demo_dataset.jsonl"
BATCH = 8
LR = 2e-4
SEED = 0
MAX_LENGTH = 512
TOTAL_ROWS = 400
HELD_OUT = 40
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])

TOPICS = ["billing", "shipping", "sync", "battery", "the pen", "export", "accounts", "security", "firmware", "returns"]
VERBS = ["explain", "summarise", "describe", "walk me through", "clarify", "outline"]
WORDS = ("the device customer order account note page screen battery cloud sync export file folder template "
         "warranty refund shipping invoice password setting update pen tip charge light colour storage team "
         "share offline backup calendar reminder meeting project draft archive search tag label").split()


def _sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n_words)]
    return (" ".join(words)).capitalize() + "."


def build_rows() -> list[dict]:
    """The demo rows plus generated support conversations with a long-tailed length mix."""
    rows = []
    for line in DEMO.read_text().splitlines():
        data = json.loads(line)
        if "messages" in data:
            rows.append({"messages": data["messages"]})
        else:
            prompt = data["instruction"] + (f"\n\n{data['input']}" if data.get("input") else "")
            rows.append({"messages": [{"role": "user", "content": prompt},
                                      {"role": "assistant", "content": data["output"]}]})
    rng = random.Random(1234)
    while len(rows) < TOTAL_ROWS:
        # Log-normal sentence counts: most answers short, some long, as in real support data.
        context = " ".join(_sentence(rng, rng.randint(6, 16)) for _ in range(min(12, int(rng.lognormvariate(0.7, 0.8)))))
        answer = " ".join(_sentence(rng, rng.randint(6, 18)) for _ in range(max(1, min(20, int(rng.lognormvariate(1.2, 0.9))))))
        question = f"Please {rng.choice(VERBS)} how {rng.choice(TOPICS)} works for ticket {rng.randint(1000, 9999)}."
        user = question + (f"\n\nContext: {context}" if context else "")
        rows.append({"messages": [{"role": "system", "content": "You are a support assistant."},
                                  {"role": "user", "content": user}, {"role": "assistant", "content": answer}]})
    rng.shuffle(rows)
    return rows


def split_rows(rows):
    return rows[HELD_OUT:], rows[:HELD_OUT]


DPO_LR = 5e-5


def build_pairs(limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """(training pairs, held-out pairs): each row's prompt with its own answer chosen and the next
    row's answer rejected; `limit` keeps the first training and held-out pairs (a smoke run)."""
    rows = build_rows()
    pairs = [{"messages": row["messages"][:-1], "chosen": row["messages"][-1]["content"],
              "rejected": rows[(i + 1) % len(rows)]["messages"][-1]["content"]} for i, row in enumerate(rows)]
    train_pairs, held_out = split_rows(pairs)
    return (train_pairs[:limit], held_out[:limit]) if limit else (train_pairs, held_out)


# ------------------------------------------------------------------------------------------------
# measurements shared by all contenders (run inside each subprocess)


def held_out_loss(model, tokenizer, held_out) -> float:
    from tinyforge.ml.evaluate import eval_loss
    from tinyforge.ml.formatting import tokenize_messages

    examples = [tokenize_messages(tokenizer, r["messages"]) for r in held_out]
    return eval_loss(model, examples, batch_size=BATCH, pad_token_id=tokenizer.pad_token_id, device="cpu")


def held_out_preference_accuracy(model, tokenizer, pairs) -> float:
    """Share of pairs whose chosen answer gains more log-probability over the base model (the
    reference both contenders start from) than the rejected one: the sign of DPO's reward margin."""
    import torch
    from transformers import AutoModelForCausalLM

    from tinyforge.ml.formatting import tokenize_messages
    from tinyforge.ml.models import resolve_base_model

    base = AutoModelForCausalLM.from_pretrained(resolve_base_model("smollm2-135m-instruct")).eval()
    model.eval()

    def logp(network, messages) -> float:
        example = tokenize_messages(tokenizer, messages)
        ids, labels = torch.tensor([example.input_ids]), torch.tensor([example.labels])[:, 1:]
        with torch.no_grad():
            logits = network(input_ids=ids).logits[:, :-1].float()
        taken = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return float((taken * (labels != -100)).sum())

    right = 0
    for pair in pairs:
        chosen = pair["messages"] + [{"role": "assistant", "content": pair["chosen"]}]
        rejected = pair["messages"] + [{"role": "assistant", "content": pair["rejected"]}]
        margin = (logp(model, chosen) - logp(base, chosen)) - (logp(model, rejected) - logp(base, rejected))
        right += margin > 0
    return right / len(pairs)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engine_cpu_clock():
    """A TinyForge callback adding up the CPU seconds (all threads) of the training steps."""
    from tinyforge.ml.train import TrainerCallback

    class CpuClock(TrainerCallback):
        cpu_seconds = 0.0
        mark = 0.0

        def on_start(self, info):
            self.mark = time.process_time()

        def on_step(self, progress):
            now = time.process_time()
            self.cpu_seconds += now - self.mark
            self.mark = now

    return CpuClock()


def trainer_cpu_clock():
    """A transformers callback measuring the CPU seconds (all threads) of Trainer.train's loop."""
    from transformers import TrainerCallback

    class CpuClock(TrainerCallback):
        cpu_seconds = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.process_time()

        def on_train_end(self, args, state, control, **kwargs):
            self.cpu_seconds = time.process_time() - self.start

    return CpuClock()


class TokenCounter:
    """Counts the real (non-pad) tokens of every training forward pass of a model.

    Hooked on the model rather than the data collator, because the Trainer's data loader fetches
    one batch ahead of the one it trains on.
    """

    def __init__(self, model):
        self.real = 0
        self.total = 0
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        # Reference passes (DPO's, under no_grad with the adapter off) train nothing: not counted.
        if not module.training or not torch_grad_enabled():
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        # Padding-free packed batches carry no attention mask and no padding.
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        self.total += ids.numel()


def torch_grad_enabled() -> bool:
    import torch

    return torch.is_grad_enabled()


def run_ours_dpo(steps: int, workdir: Path, precision: str = "auto", seed: int = SEED, limit: int | None = None) -> dict:
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.models import load_model_folder
    from tinyforge.ml.train import train

    train_pairs, held_out = build_pairs(limit)
    config = TrainConfig(base_model="smollm2-135m-instruct", method="lora", objective="dpo", beta=0.1, max_steps=steps,
                         learning_rate=DPO_LR, lr_schedule="cosine", warmup_ratio=0.0, batch_size=BATCH,
                         max_seq_length=MAX_LENGTH * 2, lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"],
                         lora_dropout=LORA["lora_dropout"], lora_target_modules=LORA["target_modules"], seed=seed,
                         validation_split=0.0, eval_generations=0, precision=precision)
    start = time.perf_counter()
    result = train(config, train_pairs, workdir / "out")
    seconds = time.perf_counter() - start
    model, tokenizer = load_model_folder(result.output_dir)
    return {"tok_s": result.train_tokens / seconds, "tokens": result.train_tokens, "steps": result.steps,
            "accuracy": held_out_preference_accuracy(model, tokenizer, held_out)}


def run_trl_dpo(steps: int, workdir: Path, seed: int = SEED, limit: int | None = None) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from tinyforge.ml.models import resolve_base_model

    train_pairs, held_out = build_pairs(limit)
    base = resolve_base_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    dataset = Dataset.from_list([{"prompt": p["messages"], "chosen": [{"role": "assistant", "content": p["chosen"]}],
                                  "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in train_pairs])
    args = DPOConfig(output_dir=str(workdir / "trl-dpo"), per_device_train_batch_size=BATCH, max_steps=steps,
                     learning_rate=DPO_LR, lr_scheduler_type="cosine", warmup_steps=0, seed=seed, report_to=[],
                     save_strategy="no", eval_strategy="no", logging_steps=10_000, dataloader_num_workers=0,
                     use_cpu=True, beta=0.1)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    counter = TokenCounter(trainer.model)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"tok_s": counter.real / seconds, "tokens": counter.real, "steps": steps,
            "accuracy": held_out_preference_accuracy(trainer.model, tokenizer, held_out)}


def run_ours(steps: int, packing: str, workdir: Path, precision: str = "auto", seed: int = SEED) -> dict:
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.models import load_model_folder
    from tinyforge.ml.train import train

    train_rows, held_out = split_rows(build_rows())
    config = TrainConfig(base_model="smollm2-135m-instruct", method="lora", max_steps=steps, learning_rate=LR,
                         lr_schedule="cosine", warmup_ratio=0.0, batch_size=BATCH, max_seq_length=MAX_LENGTH,
                         lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"],
                         lora_target_modules=LORA["target_modules"], seed=seed, validation_split=0.0,
                         eval_generations=0, packing=packing, precision=precision)
    clock = engine_cpu_clock()
    result = train(config, train_rows, workdir / "out", [clock])
    model, tokenizer = load_model_folder(result.output_dir)
    return {"tok_s": result.train_tokens_per_second, "padding": result.padding_share,
            "tok_cpu_s": result.train_tokens / clock.cpu_seconds,
            "eval_loss": held_out_loss(model, tokenizer, held_out), "steps": result.steps}


def _trl_dataset(rows):
    from datasets import Dataset

    return Dataset.from_list([{"messages": r["messages"]} for r in rows])


def run_trl(steps: int, packing: bool, workdir: Path, seed: int = SEED) -> dict:
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tinyforge.ml.models import resolve_base_model

    train_rows, held_out = split_rows(build_rows())
    base = resolve_base_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    extra = {"packing": True, "max_length": MAX_LENGTH} if packing else {}
    args = SFTConfig(output_dir=str(workdir / "trl"), per_device_train_batch_size=BATCH, max_steps=steps,
                     learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=0, seed=seed, report_to=[],
                     save_strategy="no", eval_strategy="no", logging_steps=10_000, dataloader_num_workers=0, use_cpu=True,
                     **extra)
    trainer = SFTTrainer(model=model, args=args, train_dataset=_trl_dataset(train_rows), processing_class=tokenizer,
                         peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    counter = TokenCounter(trainer.model)
    clock = trainer_cpu_clock()
    trainer.add_callback(clock)
    output = trainer.train()
    runtime = output.metrics["train_runtime"]
    return {"tok_s": counter.real / runtime, "padding": 1 - counter.real / max(counter.total, 1),
            "tok_cpu_s": counter.real / clock.cpu_seconds,
            "eval_loss": held_out_loss(trainer.model, tokenizer, held_out), "steps": steps, "tokens": counter.real}


def run_hf(steps: int, workdir: Path, seed: int = SEED) -> dict:
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    from tinyforge.ml.formatting import tokenize_messages
    from tinyforge.ml.models import resolve_base_model

    train_rows, held_out = split_rows(build_rows())
    base = resolve_base_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(task_type="CAUSAL_LM", **LORA))
    examples = [tokenize_messages(tokenizer, r["messages"]) for r in train_rows]
    dataset = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e)}
                                 for e in examples])
    args = TrainingArguments(output_dir=str(workdir / "hf"), per_device_train_batch_size=BATCH, max_steps=steps,
                             learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=0, seed=seed, report_to=[],
                             save_strategy="no", eval_strategy="no", logging_steps=10_000, dataloader_num_workers=0)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    counter = TokenCounter(trainer.model)
    clock = trainer_cpu_clock()
    trainer.add_callback(clock)
    runtime = trainer.train().metrics["train_runtime"]
    return {"tok_s": counter.real / runtime, "padding": 1 - counter.real / max(counter.total, 1),
            "tok_cpu_s": counter.real / clock.cpu_seconds,
            "eval_loss": held_out_loss(model, tokenizer, held_out), "steps": steps, "tokens": counter.real}


def matmul_peak_gflops(dtype) -> float:
    """Best matmul rate of this process's threads in `dtype` (what MFU is measured against)."""
    import torch

    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = max(best, 4 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def child(name: str, steps: int, precision: str, seed: int, limit: int | None = None) -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if name == "ours":
            result = run_ours(steps, "batch", workdir, precision, seed)
        elif name == "ours-grouped":
            result = run_ours(steps, "off", workdir, precision, seed)
        elif name == "ours-packed":
            result = run_ours(steps, "on", workdir, precision, seed)
        elif name == "trl-default":
            result = run_trl(steps, False, workdir, seed)
        elif name == "trl-packing":
            result = run_trl(steps, True, workdir, seed)
        elif name == "hf-trainer":
            result = run_hf(steps, workdir, seed)
        elif name == "ours-dpo":
            result = run_ours_dpo(steps, workdir, precision, seed, limit)
        elif name == "trl-dpo":
            result = run_trl_dpo(steps, workdir, seed, limit)
        else:
            raise SystemExit(f"unknown contender {name}")
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per contender")
    parser.add_argument("--only", nargs="+", default=None, help="run only these contenders")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="precision of our contenders (auto: bf16 on CPUs with native bfloat16)")
    parser.add_argument("--seed", type=int, default=SEED, help="training seed of every contender (adapter init, "
                        "batch order, dropout); the data and its split stay the same")
    parser.add_argument("--dpo", action="store_true", help="preference tuning: ours-dpo against trl-dpo")
    parser.add_argument("--pairs", type=int, default=None,
                        help="--dpo: only this many training and held-out pairs (a smoke run; figures need all)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.precision, args.seed, args.pairs)
        return

    from tinyforge.hardware import machine_summary

    print(machine_summary(), flush=True)
    if args.dpo:
        compare_dpo(args)
        return

    from transformers import AutoTokenizer

    from tinyforge.ml.formatting import tokenize_messages
    from tinyforge.ml.models import resolve_base_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model("smollm2-135m-instruct"))
    train_rows, _ = split_rows(build_rows())
    lengths = [len(tokenize_messages(tokenizer, r["messages"])) for r in train_rows]
    epoch_tokens = sum(lengths)
    mean_batch_tokens = epoch_tokens / len(lengths) * BATCH
    packed_steps = max(1, round(args.steps * mean_batch_tokens / (BATCH * MAX_LENGTH)))
    print(f"data: {len(train_rows)} training rows, {epoch_tokens} tokens, lengths {min(lengths)}-{max(lengths)} "
          f"(median {sorted(lengths)[len(lengths) // 2]}); steps {args.steps} (packed contenders {packed_steps})")

    import torch

    torch.set_num_threads(torch.get_num_threads())
    # MFU against the faster of the fp32 and bf16 peaks, so bf16 runs are not flattered.
    peak_fp32, peak_bf16 = matmul_peak_gflops(torch.float32), matmul_peak_gflops(torch.bfloat16)
    peak = max(peak_fp32, peak_bf16)
    # Model FLOPs per trained token: forward 2N plus backward through the activations 2N; frozen
    # weights need no weight gradients under LoRA (adapter FLOPs are negligible at r16).
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(resolve_base_model("smollm2-135m-instruct"))
    with torch.device("meta"):
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    flops_per_token = 4 * n_params
    print(f"measured matmul peak: fp32 {peak_fp32:.1f}, bf16 {peak_bf16:.1f} GFLOP/s on {torch.get_num_threads()} threads; "
          f"{config.num_hidden_layers} layers, {flops_per_token / 1e9:.2f} GFLOP per token")

    contenders = args.only or ["ours", "trl-default", "hf-trainer", "trl-packing", "ours-packed", "ours-grouped"]
    results = {}
    for name in contenders:
        steps = packed_steps if name.endswith("packing") or name.endswith("packed") else args.steps
        result = run_child(name, args, steps)
        if result is None:
            continue
        result["s_per_epoch"] = epoch_tokens / result["tok_s"]
        result["mfu"] = result["tok_s"] * flops_per_token / (peak * 1e9)
        results[name] = result
        print(f"{name:13s} {result['tok_s']:7.1f} non-pad tok/s  {result['tok_cpu_s']:6.1f} tok/CPU-s  "
              f"{result['s_per_epoch']:7.0f} s/epoch  "
              f"peak {result['peak_rss_mb']:6.0f} MB  padding {result['padding']:5.1%}  "
              f"eval loss {result['eval_loss']:.4f}  MFU {result['mfu']:5.1%}  steps {result['steps']}  "
              f"load {result['load']:.1f}", flush=True)

    ours = results.get("ours")
    if ours:
        print("\nratios (ours / other):")
        for name, r in results.items():
            if name == "ours":
                continue
            print(f"  vs {name:13s} throughput {ours['tok_s'] / r['tok_s']:.2f}x  "
                  f"per CPU-second {ours['tok_cpu_s'] / r['tok_cpu_s']:.2f}x  "
                  f"eval loss {ours['eval_loss'] - r['eval_loss']:+.4f}  "
                  f"memory {ours['peak_rss_mb'] / r['peak_rss_mb']:.2f}x")


def run_child(name: str, args, steps: int) -> dict | None:
    """One contender in its own process (its peak memory its own), with the load around it."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    command = [sys.executable, __file__, "--child", name, "--steps", str(steps), "--precision", args.precision,
               "--seed", str(args.seed)] + (["--pairs", str(args.pairs)] if getattr(args, "pairs", None) else [])
    proc = subprocess.run(command, capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"{name}: FAILED\n{proc.stderr[-3000:]}")
        return None
    result = json.loads(line[len("RESULT "):])
    result["wall_s"] = time.perf_counter() - start
    result["load"] = (load_before + os.getloadavg()[0]) / 2
    return result


def compare_dpo(args) -> None:
    pairs, held_out = build_pairs(args.pairs)
    print(f"data: {len(pairs)} training pairs, {len(held_out)} held out; {args.steps} steps of {BATCH} pairs; "
          f"lr {DPO_LR}, beta 0.1, LoRA r{LORA['r']}", flush=True)
    results = {}
    for name in ("ours-dpo", "trl-dpo"):
        result = run_child(name, args, args.steps)
        if result is None:
            continue
        results[name] = result
        print(f"{name:9s} {result['tok_s']:7.1f} non-pad tok/s  peak {result['peak_rss_mb']:6.0f} MB  "
              f"held-out preference accuracy {result['accuracy']:.3f}  tokens {result['tokens']}  "
              f"steps {result['steps']}  wall {result['wall_s']:.0f} s  load {result['load']:.1f}", flush=True)
    if len(results) == 2:
        ours, trl = results["ours-dpo"], results["trl-dpo"]
        print(f"\nours / TRL DPOTrainer: throughput {ours['tok_s'] / trl['tok_s']:.2f}x (floor 1.3x), "
              f"memory {ours['peak_rss_mb'] / trl['peak_rss_mb']:.2f}x, "
              f"accuracy {ours['accuracy'] - trl['accuracy']:+.3f} (must not be below)")


if __name__ == "__main__":
    main()
