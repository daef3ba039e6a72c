"""The training loop: `train(config, dataset, out_dir, callbacks) -> TrainResult`.

setup (data, model, optimizer) -> fit (steps, evaluation, checkpoints) -> final evaluation ->
save the model folder. Progress goes to callbacks (`TrainerCallback`); the loop does not know
whether it feeds a progress bar or a database.

Output layout of `out_dir`:
    <model folder files>            written at the end (see tinyforge.ml.artifacts)
    eval_results.json               loss and perplexity (answers are scored by tinyforge.evaluation)
    checkpoints/checkpoint-000120/  self-describing: a loadable model folder plus trainer_state.json,
                                    optimizer.pt, scheduler.pt, rng_state.pt

The step is the unit of everything: the batches of step s are a pure function of (seed, s), so a
run resumed from a checkpoint at step s replays exactly the batches an uninterrupted run would.

Under torchrun / accelerate launch (one process per GPU) each process trains on its share of every
step's batches and DDP averages the gradients; the main process alone calls the callbacks and
writes files while the others wait, and the processes agree after every step on whether to stop,
so they always run the same number of steps.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import shutil
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from tinyforge.errors import TinyforgeError
from tinyforge.ml.checkpoints import (CHECKPOINTS_DIR, STATE_FILE, find_checkpoint, list_checkpoints, rng_state,
                                      set_rng_state)
from tinyforge.ml.config import TrainConfig
from tinyforge.ml.dataprep import prepare_data



@dataclass
class Progress:
    """What callbacks receive after every optimizer step (and after each evaluation)."""

    step: int
    total_steps: int
    epoch: float
    loss: float | None
    eval_loss: float | None  # the latest evaluation's, None before the first
    learning_rate: float
    grad_norm: float | None
    tokens_per_second: float  # non-padding tokens processed per second of training
    elapsed_s: float
    eta_s: float | None
    # The objective's own curves: after a step, the step's (preference objectives: reward_chosen,
    # reward_rejected, reward_margin, preference_accuracy); after an evaluation, the evaluation's.
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    status: str  # "completed", "early_stopped" or "cancelled"
    output_dir: Path
    steps: int
    total_steps: int
    losses: list[dict[str, float]] = field(default_factory=list)  # {"step", "loss", "learning_rate", ...}
    evals: list[dict[str, float]] = field(default_factory=list)  # {"step", "eval_loss"}
    final_eval_loss: float | None = None
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    train_tokens_per_second: float = 0.0
    train_tokens: int = 0  # non-padding tokens processed by this call's training steps
    padding_share: float = 0.0
    elapsed_s: float = 0.0


class TrainerCallback:
    """Base class for progress receivers; override what you need. Every method is optional.

    Exceptions raised by a callback stop training (they are the caller's errors, not ours).
    Under a multi-process launch only the main process calls its callbacks.
    """

    def on_start(self, info: dict[str, Any]) -> None:
        """Once, before the first step: total_steps, examples, packing, device, processes, resumed_from..."""

    def on_step(self, progress: Progress) -> None:
        """After every optimizer step."""

    def on_evaluate(self, progress: Progress) -> None:
        """After each evaluation; progress.eval_loss is the new value."""

    def on_checkpoint(self, path: Path, step: int, eval_loss: float | None, is_best: bool) -> None:
        """After a checkpoint folder was written completely."""

    def on_log(self, message: str) -> None:
        """A human-readable line (warnings, skipped rows, phase changes)."""

    def on_end(self, result: TrainResult) -> None:
        """Once, after the model folder was written (or after cancellation)."""

    def should_stop(self) -> bool:
        """Polled after every step; True cancels the run after saving a checkpoint."""
        return False


class _Callbacks:
    def __init__(self, callbacks: Iterable[TrainerCallback]):
        self.items = list(callbacks)

    def __getattr__(self, name):
        def call(*args, **kwargs):
            for cb in self.items:
                getattr(cb, name)(*args, **kwargs)
        return call

    def stop_requested(self) -> bool:
        return any(cb.should_stop() for cb in self.items)


@contextlib.contextmanager
def _sigterm_requests_stop():
    """While training, SIGTERM asks for a clean stop (checkpoint saved) instead of killing us."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------
# model


@functools.cache
def _destroy_process_group_at_exit() -> None:
    # A torchrun process that exits without destroy_process_group() leaves gloo's threads holding
    # work objects whose tensors are freed during interpreter finalisation, taking the GIL of an
    # interpreter being torn down: SIGABRT, a rank "failed" after a run that had finished or been
    # cancelled cleanly (seen once in the suite; pytorch/pytorch#179291). atexit runs while the
    # interpreter is whole, after the caller's last collective; the group outlives train() because a
    # launched script may train again in the same process.
    import atexit

    from accelerate import PartialState

    atexit.register(lambda: PartialState().destroy_process_group())


def _pick_device(config: TrainConfig) -> str:
    from tinyforge.hardware import pick_device

    return pick_device(config.device)


def _packing_mode(config: TrainConfig, device_type: str) -> str:
    """"on", "batch" or "off" (see ml/packing.py): auto packs whole sequences on CUDA, where
    variable-length attention makes them cheap, and each random batch on its own on a CPU."""
    if config.packing != "auto":
        return config.packing
    return "on" if device_type == "cuda" else "batch"


def _pick_precision(config: TrainConfig, device: str) -> str:
    """bf16 autocast where the device multiplies bfloat16 natively (a GPU with bf16, a CPU with
    AVX512-BF16 or AMX: about twice as fast as fp32, 14 s against 45 s per SmolLM2 step measured on
    AMD EPYC Zen 4); emulated bf16 is slower than fp32, so auto never picks it and asking for it is
    an error naming what the machine lacks."""
    from tinyforge.hardware import native_bf16, require_native

    if config.precision == "bf16":
        require_native(device, "bfloat16", "precision bf16", "precision fp32 or auto")
        return "bf16"
    if config.precision == "fp32":
        return "fp32"
    return "bf16" if native_bf16(device) else "fp32"


def _build_model(config: TrainConfig, base_path: Path, tokenizer, added_tokens: list[int]):
    import torch
    from transformers import set_seed

    from tinyforge.ml.models import load_merged_model, lora_target_modules

    model = load_merged_model(base_path, torch.float32)  # an earlier LoRA run: merged into its base
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    if config.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    targets = lora_target_modules(model, config.lora_target_modules)
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=targets, task_type="CAUSAL_LM",
        # Tokens added for the default chat template need trained embeddings saved with the adapter.
        trainable_token_indices=added_tokens or None,
    )
    set_seed(config.seed)  # the adapter's initial weights depend on it
    with warnings.catch_warnings():
        # PEFT calls a transformers method deprecated in 5.x; nothing for our users to act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora)


# ---------------------------------------------------------------------------------------------
# the run


class _Run:
    def __init__(self, config: TrainConfig, dataset, out_dir, callbacks, validation, resume_from):
        self.config = config
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.cb = _Callbacks(callbacks)
        self.validation = validation
        self.resume_from = resume_from

    # ---- setup
    def setup(self) -> None:
        import torch
        from accelerate import Accelerator
        from transformers import get_scheduler, set_seed

        from tinyforge.ml.models import load_tokenizer, load_training_tokenizer, resolve_base_model
        from tinyforge.ml.packing import padding_share, plan_epoch

        config = self.config
        device = _pick_device(config)
        self.precision = _pick_precision(config, device)
        # Accelerate keeps its mixed-precision choice in process-wide state and refuses a second
        # Accelerator with another one; a worker process trains many runs, so forget the last
        # run's choice (the process-group state, needed under multi-GPU launches, is kept).
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(cpu=device == "cpu", mixed_precision="bf16" if self.precision == "bf16" else "no")
        self.device = self.accelerator.device
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        if self.world > 1:
            _destroy_process_group_at_exit()
        if not self.accelerator.is_main_process:
            # Under a multi-process launch the main process alone reports (one progress bar, one
            # set of database rows) and alone polls should_stop(); fit() shares its decision.
            self.cb = _Callbacks([])

        set_seed(config.seed)
        with self.accelerator.main_process_first():  # one process converts or downloads a base model
            self.base_path = resolve_base_model(config.base_model)
        self.tokenizer, self.default_template = load_training_tokenizer(self.base_path)
        base_vocabulary = len(load_tokenizer(self.base_path)) if self.default_template else len(self.tokenizer)
        added = list(range(base_vocabulary, len(self.tokenizer)))
        if self.default_template:
            self.cb.on_log("the base model has no chat template; using TinyForge's default ChatML template")
        from tinyforge.ml.objectives import objective_for

        self.objective = objective_for(config)
        self.data = prepare_data(config, self.tokenizer, self.dataset, self.validation, self.cb.on_log)
        self.packing = _packing_mode(config, self.device.type)

        model = _build_model(config, self.base_path, self.tokenizer, added)
        decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.learning_rate,
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

        self.lengths = [len(ex) for ex in self.data.train]
        first_plan = plan_epoch(self.lengths, packing=self.packing, batch_size=config.batch_size,
                                max_seq_length=config.max_seq_length, seed=config.seed, epoch=0)
        self.padding_share = padding_share(self.lengths, first_plan)
        local_batches = len(first_plan) // self.world
        if local_batches == 0:
            raise TinyforgeError(f"{len(self.data.train)} training rows make fewer batches than the {self.world} processes")
        self.steps_per_epoch = max(1, local_batches // config.gradient_accumulation_steps)
        self.total_steps = config.max_steps or math.ceil(config.epochs * self.steps_per_epoch)
        warmup = int(config.warmup_ratio * self.total_steps)
        self.scheduler = get_scheduler(config.lr_schedule, self.optimizer, num_warmup_steps=warmup,
                                       num_training_steps=self.total_steps)

        self.step = 0
        self._plan_epoch: int | None = None
        self._plan: list = []
        self.history: list[dict[str, float]] = []
        self.evals: list[dict[str, float]] = []
        self.best_eval: float | None = None
        self.best_step: int | None = None
        self.evals_without_improvement = 0
        self.elapsed_before = 0.0
        self.tokens_before = 0
        self.resumed_from = None
        self.autocast_dtype = torch.bfloat16 if self.precision == "bf16" else None
        # Before a checkpoint's weights are loaded: the reference is the starting model.
        for units in (self.data.train, self.data.validation):
            self.objective.prepare_reference(self.accelerator.unwrap_model(self.model), units,
                                             batch_size=config.batch_size, pad_token_id=self.tokenizer.pad_token_id,
                                             device=self.device, autocast_dtype=self.autocast_dtype)
        if self.resume_from:
            self._restore(self._resolve_resume(self.resume_from))
        self.session_start_step = self.step

    def _resolve_resume(self, resume_from) -> Path:
        if str(resume_from) in ("latest", "best"):
            found = find_checkpoint(self.out_dir, str(resume_from))
            if found is None:
                raise TinyforgeError(f"no checkpoint to resume from in {self.out_dir / CHECKPOINTS_DIR}")
            return found
        path = Path(resume_from)
        if not (path / STATE_FILE).is_file():
            raise TinyforgeError(f"{path} is not a checkpoint folder (no {STATE_FILE})")
        return path

    def _restore(self, checkpoint: Path) -> None:
        import torch
        from safetensors.torch import load_file

        state = json.loads((checkpoint / STATE_FILE).read_text())
        if state["config"] != self.config.to_dict():
            changed = sorted(k for k, v in state["config"].items() if self.config.to_dict().get(k) != v)
            self.cb.on_log(f"resuming with a config that differs from the checkpoint's in: {', '.join(changed)}")
        model = self.accelerator.unwrap_model(self.model)
        if self.config.method == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors"))
        else:
            weights = load_file(checkpoint / "model.safetensors")
            missing, unexpected = model.load_state_dict(weights, strict=False)
            # Tied output weights are saved once; anything else missing means a different model.
            if unexpected or [m for m in missing if "lm_head" not in m]:
                raise TinyforgeError(f"checkpoint {checkpoint} does not match base model {self.config.base_model}")
        self.optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=False))
        self.scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=False))
        states = torch.load(checkpoint / "rng_state.pt", weights_only=False)
        states = [states] if isinstance(states, dict) else states  # one process's state, as first written
        set_rng_state(states[self.rank % len(states)])
        if state.get("processes", 1) != self.world:
            self.cb.on_log(f"{checkpoint.name} was written by {state.get('processes', 1)} processes and this run has "
                           f"{self.world}: each step's batches are split differently from here on")
        self.step = state["step"]
        self.history = state["history"]
        self.evals = state["evals"]
        self.best_eval = state["best_eval_loss"]
        self.best_step = state["best_step"]
        self.evals_without_improvement = state["evals_without_improvement"]
        self.elapsed_before = state["elapsed_s"]
        self.tokens_before = state["tokens"]
        self.resumed_from = checkpoint
        if self.step >= self.total_steps:
            self.cb.on_log(f"checkpoint {checkpoint.name} is already at the last step ({self.step})")

    # ---- fit
    def batches_for_step(self, step: int):
        from tinyforge.ml.packing import plan_epoch

        config = self.config
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._plan_epoch != epoch:  # planned once per epoch: with many rows planning takes a moment
            self._plan = plan_epoch(self.lengths, packing=self.packing, batch_size=config.batch_size,
                                    max_seq_length=config.max_seq_length, seed=config.seed, epoch=epoch)
            self._plan_epoch = epoch
        plan = self._plan
        # Process r takes every world-th batch from r: together the processes cover exactly the
        # batches one process would take with gradient_accumulation_steps x world.
        local = plan[self.rank::self.world]
        accum = config.gradient_accumulation_steps
        micro = local[index * accum:(index + 1) * accum]
        pad = self.tokenizer.pad_token_id
        return [self.objective.collate(self.data.train, p, pad) for p in micro]

    def train_step(self, step: int) -> tuple[float, float | None, int, dict[str, float]]:
        from tinyforge.ml.objectives import merge_metrics, metric_means

        batches = self.batches_for_step(step)
        # What the step's loss is a mean over: labelled tokens (sft), pairs or answers (preference).
        (step_tokens,) = self._all_reduce([sum(b.weight for b in batches)])
        total = 0.0
        metric_totals: dict[str, list[float]] = {}
        for i, batch in enumerate(batches):
            batch = batch.to(self.device)
            sync = contextlib.nullcontext() if i == len(batches) - 1 else self.accelerator.no_sync(self.model)
            with sync, self.accelerator.autocast():
                s, metrics = self.objective.loss(self.model, batch)
                # step_tokens counts the labelled tokens of every process's batches; DDP averages
                # the processes' gradients, and the factor world turns that average back into the
                # sum, so the gradient is the mean over all of the step's tokens, as with one process.
                loss = s * self.world / max(step_tokens, 1)
            self.accelerator.backward(loss)
            total += float(s.detach())
            merge_metrics(metric_totals, metrics)
        max_norm = self.config.max_grad_norm or float("inf")
        grad_norm = self.accelerator.clip_grad_norm_(self.trainable, max_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        names = sorted(metric_totals)
        total, real_tokens, *flat = self._all_reduce([total, sum(b.real_tokens for b in batches),
                                                      *(v for name in names for v in metric_totals[name])])
        loss_value = total / max(step_tokens, 1)  # the same value, and the same decision below, everywhere
        if not math.isfinite(loss_value):
            raise TinyforgeError(f"the loss became {loss_value} at step {step + 1}; lower the learning rate")
        norm = float(grad_norm) if grad_norm is not None and math.isfinite(float(grad_norm)) else None
        metrics = metric_means({name: flat[2 * i:2 * i + 2] for i, name in enumerate(names)})
        return loss_value, norm, int(real_tokens), metrics

    def _all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """The sum (or with op "max", the largest) of each value over the processes, the same list
        in every process; the values as they are with one process."""
        if self.world == 1:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return tensor.tolist()

    def evaluate(self) -> tuple[float, dict[str, float]] | None:
        """(eval loss, the objective's eval metrics), or None without validation rows."""
        if not self.data.validation:
            return None
        # Each process scores every world-th row with its own (identical) copy of the weights,
        # outside the DDP wrapper, and the sums are combined: every process gets the same value.
        return self.objective.evaluate(
            self.accelerator.unwrap_model(self.model), self.data.validation[self.rank::self.world],
            batch_size=self.config.batch_size, pad_token_id=self.tokenizer.pad_token_id,
            device=self.device, autocast_dtype=self.autocast_dtype, combine=self._all_reduce)

    def fit(self) -> str:
        config = self.config
        self.started = time.monotonic()
        self.train_seconds = 0.0
        self.tokens = 0
        self.cb.on_start({
            "total_steps": self.total_steps, "start_step": self.step, "steps_per_epoch": self.steps_per_epoch,
            "train_examples": len(self.data.train), "validation_examples": len(self.data.validation),
            "skipped_rows": self.data.skipped_long, "packing": self.packing,
            "padding_share": self.padding_share, "device": str(self.device), "precision": self.precision,
            "trainable_parameters": sum(p.numel() for p in self.trainable),
            "resumed_from": str(self.resumed_from) if self.resumed_from else None, "processes": self.world,
        })
        eval_every = config.eval_steps or self.steps_per_epoch
        save_every = config.save_steps or self.steps_per_epoch
        status = "completed"
        saved_at = self.step if self.resumed_from else None
        with _sigterm_requests_stop() as sigterm:
            self.model.train()
            while self.step < self.total_steps:
                tick = time.perf_counter()
                loss, grad_norm, real_tokens, metrics = self.train_step(self.step)
                self.train_seconds += time.perf_counter() - tick
                self.tokens += real_tokens
                self.step += 1
                lr = self.scheduler.get_last_lr()[0]
                self.history.append({"step": self.step, "epoch": self.step / self.steps_per_epoch,
                                     "loss": loss, "learning_rate": lr, "grad_norm": grad_norm, **metrics})
                self.cb.on_step(self._progress(loss, lr, grad_norm, metrics))
                last = self.step == self.total_steps
                if self.step % eval_every == 0 or last:
                    evaluated = self.evaluate()
                    if evaluated is not None:
                        self._record_eval(*evaluated)
                        self.cb.on_evaluate(self._progress(loss, lr, grad_norm, evaluated[1]))
                stop = self.cb.stop_requested() or sigterm.is_set()
                patience_out = bool(config.early_stopping_patience
                                    and self.evals_without_improvement >= config.early_stopping_patience)
                # Every process must take the same branch at the same step, or the next collective
                # operation hangs: stop when any process was asked to (the main one polls the
                # callbacks; SIGTERM may reach any of them).
                stop, patience_out = (bool(v) for v in self._all_reduce([stop, patience_out], "max"))
                if self.step % save_every == 0 or last or stop or patience_out:
                    self.save_checkpoint()
                    saved_at = self.step
                if stop:
                    self.cb.on_log(f"stopped at step {self.step} on request; checkpoint saved")
                    status = "cancelled"
                    break
                if patience_out:
                    self.cb.on_log(f"early stopping at step {self.step}: eval loss did not improve for "
                                   f"{config.early_stopping_patience} evaluations")
                    status = "early_stopped"
                    break
        if saved_at != self.step and status == "completed":
            self.save_checkpoint()
        return status

    def _record_eval(self, value: float, metrics: dict[str, float]) -> None:
        self.evals.append({"step": self.step, "eval_loss": value, **{f"eval_{k}": v for k, v in metrics.items()}})
        threshold = self.config.early_stopping_threshold
        if self.best_eval is None or value < self.best_eval - threshold:
            self.best_eval, self.best_step = value, self.step
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1

    def _progress(self, loss, lr, grad_norm, metrics) -> Progress:
        per_step = self.train_seconds / max(1, self.step - self.session_start_step)
        return Progress(
            step=self.step, total_steps=self.total_steps, epoch=self.step / self.steps_per_epoch,
            loss=loss, eval_loss=self.evals[-1]["eval_loss"] if self.evals else None, learning_rate=lr,
            grad_norm=grad_norm, tokens_per_second=self.tokens / self.train_seconds if self.train_seconds else 0.0,
            elapsed_s=time.monotonic() - self.started, eta_s=per_step * (self.total_steps - self.step),
            metrics=metrics,
        )

    # ---- saving
    def _info(self, **extra) -> dict[str, Any]:
        from tinyforge.ml.artifacts import model_info

        return model_info(base_model=self.config.base_model, base_model_path=str(self.base_path),
                          method=self.config.method, max_seq_length=self.config.max_seq_length,
                          config=self.config.to_dict(), default_chat_template=self.default_template, **extra)

    def _generation_config(self):
        from transformers import GenerationConfig

        try:
            generation = GenerationConfig.from_pretrained(self.base_path)
        except OSError:
            generation = GenerationConfig()
        end_of_turn = self.tokenizer.convert_tokens_to_ids("<|im_end|>") if self.default_template else None
        eos = generation.eos_token_id if generation.eos_token_id is not None else self.tokenizer.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        if end_of_turn is not None and end_of_turn not in eos_ids:
            eos_ids.append(end_of_turn)
        generation.eos_token_id = eos_ids[0] if len(eos_ids) == 1 else eos_ids
        generation.pad_token_id = self.tokenizer.pad_token_id
        return generation

    def save_checkpoint(self) -> Path:
        import torch

        from tinyforge.ml.artifacts import save_weights, write_atomically, write_info

        eval_loss = self.evals[-1]["eval_loss"] if self.evals and self.evals[-1]["step"] == self.step else None
        target = self.out_dir / CHECKPOINTS_DIR / f"checkpoint-{self.step:06d}"
        model = self.accelerator.unwrap_model(self.model)
        state = {
            "step": self.step, "total_steps": self.total_steps, "epoch": self.step / self.steps_per_epoch,
            "eval_loss": eval_loss, "best_eval_loss": self.best_eval, "best_step": self.best_step,
            "evals_without_improvement": self.evals_without_improvement, "history": self.history,
            "evals": self.evals, "elapsed_s": self.elapsed_before + time.monotonic() - self.started,
            "tokens": self.tokens_before + self.tokens, "config": self.config.to_dict(), "processes": self.world,
        }
        # Random state differs between processes (dropout draws on batches of different shapes):
        # the checkpoint keeps one per process, in rank order.
        rng_states = [rng_state()]
        if self.world > 1:
            from accelerate.utils import gather_object

            rng_states = gather_object(rng_states)

        def fill(folder: Path) -> None:
            save_weights(model, self.tokenizer, folder, self._generation_config())
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
            torch.save(rng_states, folder / "rng_state.pt")
            write_info(folder, self._info(step=self.step, eval_loss=eval_loss, checkpoint=True))
            (folder / STATE_FILE).write_text(json.dumps(state, indent=2))

        if self.accelerator.is_main_process:
            write_atomically(target, fill, f"the checkpoint at step {self.step}")
            self._prune_checkpoints()
            is_best = self.best_step == self.step and eval_loss is not None
            self.cb.on_checkpoint(target, self.step, eval_loss, is_best)
        self.accelerator.wait_for_everyone()
        return target

    def _prune_checkpoints(self) -> None:
        checkpoints = list_checkpoints(self.out_dir)
        keep = set(checkpoints[-self.config.keep_checkpoints:])
        if self.best_step is not None:
            keep |= {p for p in checkpoints if int(p.name.split("-")[1]) == self.best_step}
        for path in checkpoints:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def final_metrics(self) -> dict[str, Any]:
        from tinyforge.ml.evaluate import perplexity

        metrics: dict[str, Any] = {
            "steps": self.step, "train_loss": self.history[-1]["loss"] if self.history else None,
            "train_tokens_per_second": self.tokens / self.train_seconds if self.train_seconds else None,
            # Over every attempt of a resumed run, like the curve: what the run trained on in all.
            "train_tokens": self.tokens_before + self.tokens,
            "padding_share": self.padding_share, "train_examples": len(self.data.train),
            "validation_examples": len(self.data.validation),
        }
        if self.evals:
            metrics.update({k: v for k, v in self.evals[-1].items() if k != "step"})
            if self.objective.name == "sft":
                metrics["perplexity"] = perplexity(metrics["eval_loss"])
            metrics["best_eval_loss"] = self.best_eval
            metrics["best_step"] = self.best_step
        if self.world > 1:  # throughput differs between processes: every process returns the main one's
            from accelerate.utils import broadcast_object_list

            metrics = broadcast_object_list([metrics])[0]
        return metrics

    def save_model(self, metrics: dict[str, Any]) -> None:
        """Write the final model folder into out_dir (its checkpoints/ subfolder is left alone)."""
        from tinyforge.ml.artifacts import INFO_FILE, model_card, save_weights, write_atomically, write_info
        from tinyforge.ml.evaluate import RESULTS_FILE
        from tinyforge.ml.models import preset_info

        model = self.accelerator.unwrap_model(self.model)
        merged = self.config.method == "lora" and self.config.merge_adapter
        if merged:
            model = model.merge_and_unload()
        library = "peft" if self.config.method == "lora" and not merged else "transformers"
        preset = preset_info(self.config.base_model)
        info = self._info(step=self.step, eval_loss=metrics.get("eval_loss"), merged=merged, metrics=metrics)
        dataset_name = Path(self.dataset).name if isinstance(self.dataset, (str, Path)) else "in-memory rows"
        card = model_card(info, metrics, license=preset.license if preset else "other",
                          base_model_id=preset.hf_id if preset else self.config.base_model,
                          dataset_name=dataset_name, library=library)

        def fill(folder: Path) -> None:
            save_weights(model, self.tokenizer, folder, self._generation_config())
            (folder / "README.md").write_text(card)
            (folder / RESULTS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
            write_info(folder, info)

        staging_root = self.out_dir / ".final"
        write_atomically(staging_root, fill, "the final model")
        # Move the finished files into out_dir; tinyforge.json goes last, so its presence means
        # the folder is complete. Files of a previous final model that this one lacks are removed.
        previous = self.out_dir / INFO_FILE
        if previous.exists():
            previous.unlink()
        for stale in ("model.safetensors", "adapter_model.safetensors", "adapter_config.json", "config.json"):
            if (self.out_dir / stale).exists() and not (staging_root / stale).exists():
                (self.out_dir / stale).unlink()
        for path in sorted(staging_root.iterdir(), key=lambda p: p.name == INFO_FILE):
            path.replace(self.out_dir / path.name)
        staging_root.rmdir()


def train(config: TrainConfig, dataset, out_dir: str | Path, callbacks: Sequence[TrainerCallback] = (), *,
          validation=None, resume_from: str | Path | None = None) -> TrainResult:
    """Fine-tune `config.base_model` on `dataset` and write the model folder to `out_dir`.

    dataset / validation: a JSONL path, or a list of rows (dicts or schema rows). Without a
        validation set, `config.validation_split` of the rows is held out (seeded).
    callbacks: TrainerCallback instances; `should_stop()` returning True cancels after saving a
        checkpoint (so does SIGTERM when called from the main thread).
    resume_from: a checkpoint folder, or "latest" / "best" to pick one in out_dir/checkpoints.
        The run continues the same loss curve as if it had never stopped.

    Returns a TrainResult; status "cancelled" leaves no final model folder, only checkpoints.
    Raises TinyforgeError for anything the user can fix (bad data, unknown model, full disk).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(config, dataset, out_dir, callbacks, validation, resume_from)
    run.setup()
    status = run.fit()
    metrics: dict[str, Any] = {}
    if status != "cancelled":
        metrics = run.final_metrics()
        if run.accelerator.is_main_process:
            run.save_model(metrics)
        run.accelerator.wait_for_everyone()
    checkpoints = list_checkpoints(out_dir)
    result = TrainResult(
        status=status, output_dir=out_dir, steps=run.step, total_steps=run.total_steps,
        losses=run.history, evals=run.evals, final_eval_loss=run.evals[-1]["eval_loss"] if run.evals else None,
        best_checkpoint=find_checkpoint(out_dir, "best"), last_checkpoint=checkpoints[-1] if checkpoints else None,
        metrics=metrics, train_tokens_per_second=run.tokens / run.train_seconds if run.train_seconds else 0.0,
        train_tokens=run.tokens,
        padding_share=run.padding_share, elapsed_s=time.monotonic() - run.started,
    )
    run.cb.on_end(result)
    return result


def estimate_run(config: TrainConfig, dataset, validation=None) -> dict[str, Any]:
    """What a run would do, without loading the model: rows kept, steps and tokens.

    For the platform's estimate before starting (duration = tokens / a measured tokens-per-second).
    """
    from tinyforge.ml.models import load_training_tokenizer, resolve_base_model
    from tinyforge.ml.packing import padding_share, plan_epoch

    tokenizer, _ = load_training_tokenizer(resolve_base_model(config.base_model))
    logs: list[str] = []
    data = prepare_data(config, tokenizer, dataset, validation, logs.append)
    lengths = [len(ex) for ex in data.train]
    packing = _packing_mode(config, _pick_device(config))
    plan = plan_epoch(lengths, packing=packing, batch_size=config.batch_size,
                      max_seq_length=config.max_seq_length, seed=config.seed, epoch=0)
    steps_per_epoch = max(1, len(plan) // config.gradient_accumulation_steps)
    total_steps = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    return {"train_examples": len(data.train), "validation_examples": len(data.validation),
            "skipped_rows": data.skipped_long, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
            "tokens_per_epoch": sum(lengths), "total_tokens": round(sum(lengths) * total_steps / steps_per_epoch),
            "packing": packing, "padding_share": padding_share(lengths, plan), "notes": logs}


def result_summary(result: TrainResult) -> dict[str, Any]:
    data = asdict(result)
    for key in ("output_dir", "best_checkpoint", "last_checkpoint"):
        data[key] = str(data[key]) if data[key] is not None else None
    return data
