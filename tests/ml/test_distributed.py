"""Several processes (torchrun): the multi-GPU path, run on the CPU with 2 processes over gloo.

Two processes with batch 4 must train exactly like one process with batch 4 and gradient
accumulation 2: process r takes every second batch of the same plan from r, so the two cover the
batches one process accumulates, and DDP's averaged gradient, scaled by the process count, is the
gradient of the mean over all of the step's tokens. Losses are compared with a relative tolerance of
1e-5: the same tokens are summed in fp32 and only the order of a few additions may differ (each
process scores its share of the validation rows; gradients meet in DDP's all-reduce rather than
in one .grad), which moves a value by about 1e-7 (training losses here come out bit-identical, eval
losses 1e-7 apart). Training both processes on the same batches moves the first step's loss by 2e-3;
not averaging their gradients moves its gradient norm by 20% (both mutations were tried and fail
this test).

Run as a script, this file is the program each torchrun process executes for the cancellation
test: train() with a callback that asks the main process to stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

TOLERANCE = 1e-5
# fp32: a CPU with native bfloat16 would otherwise pick bf16 autocast, whose rounding is coarser.
# The CPU even where a GPU is present: two processes cannot share one GPU under NCCL.
# No LoRA dropout in the comparison with one process: its masks are drawn per process.
# A full fine-tune here (it learns the toy task within 18 steps), LoRA in the cancellation test.
OPTIONS = dict(method="full", max_steps=18, batch_size=4, learning_rate=5e-3, max_seq_length=128, lora_dropout=0.0,
               seed=7, precision="fp32", device="cpu")


def torchrun(*args, timeout=300) -> subprocess.CompletedProcess:
    # --standalone: a rendezvous on a free local port, so parallel test sessions do not collide.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def flags(options: dict) -> list[str]:
    # The CLI has no flags for what only the platform acts on (the run's evaluation after training).
    from tinyforge.ml.commands import PLATFORM_ONLY

    return [f"--{name.replace('_', '-')}={value}" for name, value in options.items() if name not in PLATFORM_ONLY]


def trainer_state(out: Path, step: int) -> dict:
    return json.loads((out / "checkpoints" / f"checkpoint-{step:06d}" / "trainer_state.json").read_text())


def assert_complete(out: Path) -> None:
    """A finished model folder, and nothing half-written left by any process."""
    from tinyforge.ml.models import load_model_folder

    assert (out / "tinyforge.json").is_file() and (out / "eval_results.json").is_file()
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith((".partial", ".old")) or p.name == ".final"]
    assert not leftovers
    model, tokenizer = load_model_folder(out)
    assert tokenizer.chat_template and sum(p.numel() for p in model.parameters()) > 0


def test_two_processes_train_like_one_process_accumulating_their_batches(tiny_model_dir, toy_dataset, tmp_path):
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.train import train

    out = tmp_path / "two"
    run = torchrun("-m", "tinyforge.cli", "train", "--data", toy_dataset, "--base", tiny_model_dir, "--out", out,
                   *flags(OPTIONS))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("model folder:") == 1  # one summary, from the main process
    assert "x 2 processes" in run.stderr  # and one progress report
    assert_complete(out)
    info = json.loads((out / "tinyforge.json").read_text())
    assert info["metrics"]["steps"] == 18 and info["metrics"]["eval_loss"] is not None

    state = trainer_state(out, 18)
    two = state["history"]
    one = train(TrainConfig(base_model=str(tiny_model_dir), gradient_accumulation_steps=2, **OPTIONS),
                toy_dataset, tmp_path / "one")
    for mine, theirs in zip(two, one.losses, strict=True):
        for key in ("loss", "grad_norm", "learning_rate"):
            assert mine[key] == pytest.approx(theirs[key], rel=TOLERANCE), (key, mine, theirs)
    assert [e["eval_loss"] for e in state["evals"]] == pytest.approx([e["eval_loss"] for e in one.evals],
                                                                       rel=TOLERANCE)
    curve = [h["loss"] for h in two]
    assert sum(curve[-3:]) < sum(curve[:3]) * 0.8, curve
    assert state["evals"][-1]["eval_loss"] < state["evals"][0]["eval_loss"]

    # Which batches a step trains on shows far above the tolerance: one process without
    # accumulation (half of each step's batches) is more than 1e-3 off at every step.
    half = train(TrainConfig(base_model=str(tiny_model_dir), **{**OPTIONS, "max_steps": 2, "eval_generations": 0}),
                 toy_dataset, tmp_path / "half")
    assert all(abs(h["loss"] - t["loss"]) > 1e-3 * t["loss"] for h, t in zip(half.losses, two))


def test_a_cancel_on_the_main_process_stops_every_process_and_the_run_resumes(tiny_model_dir, toy_dataset,
                                                                             tmp_path):
    # LoRA dropout on: each process draws its own masks, so resuming must restore each one's RNG.
    options = {**OPTIONS, "method": "lora", "learning_rate": 3e-3, "lora_dropout": 0.1, "max_steps": 9,
               "save_steps": 4, "eval_generations": 0}
    config = json.dumps({"base_model": str(tiny_model_dir), **options})
    straight = tmp_path / "straight"
    run = torchrun(__file__, config, toy_dataset, straight, 0, tmp_path / "straight-ranks")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    out = tmp_path / "stopped"
    cancel = torchrun(__file__, config, toy_dataset, out, 5, tmp_path / "ranks")
    assert cancel.returncode == 0, cancel.stdout[-3000:] + cancel.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ranks" / f"{rank}.json").read_text()) for rank in (0, 1)]
    # Only the main process's callback asked; both stopped after the same step.
    assert ranks == [{"status": "cancelled", "steps": 5, "polled": True},
                     {"status": "cancelled", "steps": 5, "polled": False}]
    # Each process destroyed its process group before the interpreter's teardown: left to that,
    # gloo's threads crashed a rank with SIGABRT now and then (train._destroy_process_group_at_exit).
    assert [json.loads((tmp_path / "ranks" / f"{rank}.at-exit").read_text()) for rank in (0, 1)] == [
        {"process_group": False}] * 2
    assert not (out / "tinyforge.json").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-000004", "checkpoint-000005"]

    resume = torchrun("-m", "tinyforge.cli", "train", "--data", toy_dataset, "--base", tiny_model_dir, "--out", out,
                      *flags(options), "--resume", "--quiet")
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    assert_complete(out)
    resumed, expected = trainer_state(out, 9)["history"], trainer_state(straight, 9)["history"]
    assert [h["step"] for h in resumed] == list(range(1, 10))
    assert [h["loss"] for h in resumed] == pytest.approx([h["loss"] for h in expected], abs=1e-6)


def _main(config: str, data: str, out: str, stop_at: str, report_dir: str) -> None:
    """One torchrun process: train, with a callback that stops at step `stop_at` (0: never)."""
    import atexit

    import torch

    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.train import TrainerCallback, train

    class StopAt(TrainerCallback):
        step = 0
        polled = False

        def on_step(self, progress):
            self.step = progress.step

        def should_stop(self):
            self.polled = True
            return 0 < int(stop_at) <= self.step

    stopper = StopAt()
    Path(report_dir).mkdir(exist_ok=True)
    # Registered before train() registers its own: atexit runs this one after it.
    atexit.register(lambda: (Path(report_dir) / f"{os.environ['RANK']}.at-exit").write_text(
        json.dumps({"process_group": torch.distributed.is_initialized()})))
    result = train(TrainConfig(**json.loads(config)), data, out, [stopper])
    report = {"status": result.status, "steps": result.steps, "polled": stopper.polled}
    (Path(report_dir) / f"{os.environ['RANK']}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    _main(*sys.argv[1:])
