"""The training configuration: one dataclass, every knob documented and checked.

Each field's `help` is what `tinyforge train --help` prints and what the platform shows next to
the field. `TrainConfig(...)` raises TinyforgeError with a message naming the field when a value
is out of range, so a bad config fails before any model is loaded. This module imports neither
torch nor transformers: the CLI and the web app import it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import typing
from dataclasses import dataclass, field
from typing import Any

from tinyforge.errors import TinyforgeError

METHODS = ("lora", "full")
OBJECTIVES = ("sft", "dpo", "orpo", "kto")
PREFERENCE_OBJECTIVES = ("dpo", "orpo", "kto")
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "robust")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
PACKING = ("auto", "on", "batch", "off")
DEVICES = ("auto", "cpu", "cuda")


class InvalidConfig(TinyforgeError):
    """A config the engine refuses; `problems` maps each field to what is wrong with it."""

    def __init__(self, problems: dict[str, list[str]]):
        self.problems = problems
        super().__init__("invalid training config: " + "; ".join(m for ms in problems.values() for m in ms))


def _f(default, help: str, **kwargs):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    """Everything that decides how a model is fine-tuned. Defaults are the "balanced" preset.

    Each number has its bounds here (`ge`, `gt`, `le`, `lt` in its metadata) and nowhere else: the
    API, the CLI and the OpenAI fine-tuning mirror all build this class, so they refuse the same
    values. The upper bounds are far past any useful run and stop the absurd ones (10^20 epochs)
    before anything is estimated, queued or allocated.
    """

    base_model: str = _f("smollm2-135m-instruct", "base model: a preset name, a Hugging Face id or a local folder",
                         max_length=500)
    method: str = _f("lora", "lora (train small adapter matrices) or full (train every weight)", choices=METHODS)
    objective: str = _f("sft", "what is learned: sft (the answers of supervised rows), dpo or orpo (prefer the chosen "
                        "answer of preference pairs over the rejected one), kto (unpaired answers labelled "
                        "desirable or not)", choices=OBJECTIVES)
    beta: float = _f(0.1, "dpo/kto: how far the model may move from the starting model (smaller: further); orpo: "
                     "the weight of the odds-ratio term against the chosen answer's loss", gt=0, le=100)
    dpo_loss: str = _f("sigmoid", "dpo loss variant: sigmoid (the DPO paper), hinge (SLiC), ipo (IPO, length-"
                       "normalised), robust (rDPO, for noisy preferences; set label_smoothing)", choices=DPO_LOSSES)
    label_smoothing: float = _f(0.0, "dpo robust: the assumed share of pairs whose preference is flipped", ge=0, lt=0.5)
    kto_desirable_weight: float = _f(1.0, "kto: weight of the desirable answers' loss", gt=0, le=100)
    kto_undesirable_weight: float = _f(1.0, "kto: weight of the undesirable answers' loss", gt=0, le=100)
    epochs: float = _f(5.0, "passes over the training data (ignored when max_steps is set)", gt=0, le=1000)
    max_steps: int | None = _f(None, "stop after this many optimizer steps (overrides epochs)", ge=1, le=10_000_000)
    learning_rate: float | None = _f(None, "peak learning rate after warmup", gt=0, lt=1)
    lr_schedule: str = _f("cosine", "learning-rate decay after warmup", choices=SCHEDULES)
    warmup_ratio: float = _f(0.05, "share of the steps spent warming the learning rate up from 0", ge=0, lt=1)
    batch_size: int = _f(8, "examples per forward pass (packing on: packed sequences; packing off: about "
                         "batch_size x the mean length in tokens, so more short examples and fewer long ones)",
                         ge=1, le=4096)
    gradient_accumulation_steps: int = _f(1, "forward passes per optimizer step; effective batch = batch_size x this",
                                          ge=1, le=1024)
    max_seq_length: int = _f(1024, "longest example in tokens; longer rows are skipped and reported", ge=16, le=131072)
    weight_decay: float = _f(0.0, "AdamW weight decay", ge=0, le=1)
    max_grad_norm: float = _f(1.0, "clip the gradient norm to this (0 disables clipping)", ge=0, le=1000)
    seed: int = _f(42, "seed for the data split, shuffling, adapter init and dropout", ge=0, le=2**32 - 1)
    validation_split: float = _f(0.1, "share of rows held out for evaluation when no validation file is given (0 disables)",
                                 ge=0, lt=1)
    eval_steps: int = _f(0, "evaluate every N steps (0: at the end of each epoch)", ge=0, le=10_000_000)
    save_steps: int = _f(0, "save a checkpoint every N steps (0: at the end of each epoch)", ge=0, le=10_000_000)
    keep_checkpoints: int = _f(2, "keep the last K checkpoints (the best one is always kept)", ge=1, le=100)
    early_stopping_patience: int = _f(0, "stop after N evaluations without eval-loss improvement (0 disables)",
                                      ge=0, le=1000)
    early_stopping_threshold: float = _f(0.0, "smallest eval-loss decrease that counts as an improvement", ge=0, le=100)
    precision: str = _f("auto", "fp32, bf16, or auto (bf16 on a GPU or CPU with native bfloat16 support, else fp32)", choices=PRECISIONS)
    packing: str = _f("auto", "pack examples into full max_seq_length sequences (on), pack each step's "
                      "batch_size random examples into rows as wide as their longest (batch), pad "
                      "length-grouped batches (off, least memory), or auto (on for CUDA, batch for CPU)",
                      choices=PACKING)
    train_on_prompt: bool = _f(False, "also take loss on system/user tokens, not only on the assistant's")
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass to save memory")
    lora_r: int = _f(16, "LoRA rank", ge=1, le=1024)
    lora_alpha: int = _f(32, "LoRA scaling numerator (scale = alpha / r)", ge=1, le=8192)
    lora_dropout: float = _f(0.05, "dropout on the LoRA branch", ge=0, lt=1)
    lora_target_modules: list[str] | None = _f(None, "module names to adapt; default: every attention and MLP "
                                               "projection for known architectures, else all linear layers",
                                               max_items=256, max_length=200)
    merge_adapter: bool = _f(False, "write merged full weights instead of a LoRA adapter")
    # The run's automatic evaluation (the platform's eval job after training, tinyforge.evals): the
    # names are kept from when training generated a few answers itself, since stored configs and
    # clients send them.
    eval_generations: int = _f(200, "validation rows the run's evaluation answers after training, by the run and "
                                    "its base model, scored with the default scorers (0: none)",
                               ge=0, le=10_000)
    max_new_tokens: int = _f(64, "longest answer in the run's evaluation (at most 4096 are used)", ge=1,
                             le=32768)  # older runs stored up to 32768
    device: str = _f("auto", "cpu, cuda, or auto (cuda when present)", choices=DEVICES)

    def __post_init__(self) -> None:
        if self.learning_rate is None and self.method in METHODS and self.objective in PREFERENCE_OBJECTIVES:
            # Preference objectives start from a model that already answers well and move it a
            # little: TRL's preference trainers default to 1e-6 for full weights; a fresh LoRA
            # adapter's updates are scaled down by its rank, so it takes a larger rate.
            self.learning_rate = 5e-5 if self.method == "lora" else 1e-6
        elif self.learning_rate is None and self.method in METHODS:
            # LoRA on the small models this product trains: 2e-4 (the usual figure for 7B models)
            # taught SmolLM2-135M none of the demo dataset's facts in 3 or 5 epochs; 1e-3 in 5
            # epochs taught it every fact asked (tests/ml/test_smollm2.py).
            self.learning_rate = 1e-3 if self.method == "lora" else 2e-5
        problems: dict[str, list[str]] = {}
        for f in dataclasses.fields(self):
            problem = _field_problem(f, getattr(self, f.name))
            if problem:
                problems[f.name] = [problem]
        if problems:
            raise InvalidConfig(problems)
        if not self.base_model.strip():
            problems["base_model"] = ["base_model must not be empty"]
        if self.lora_target_modules is not None and not (self.lora_target_modules and all(self.lora_target_modules)):
            problems["lora_target_modules"] = ["lora_target_modules must be a non-empty list of module names, or left "
                                               "unset for the default"]
        if self.merge_adapter and self.method == "full":
            problems["merge_adapter"] = ["merge_adapter only applies to method lora"]
        if self.train_on_prompt and self.objective in PREFERENCE_OBJECTIVES:
            problems["train_on_prompt"] = [f"train_on_prompt only applies to objective sft; {self.objective} "
                                           "compares answers to the same prompt"]
        if self.label_smoothing and self.dpo_loss != "robust":
            problems["label_smoothing"] = ["label_smoothing only applies to dpo_loss robust"]
        if problems:
            raise InvalidConfig(problems)

    @classmethod
    def from_preset(cls, preset: str = "balanced", **overrides: Any) -> TrainConfig:
        """A config from a named preset with some fields overridden (None values are ignored)."""
        if preset not in PRESETS:
            raise TinyforgeError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidConfig({name: [f"unknown field {name}"] for name in unknown})
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}


_TYPE_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def _field_problem(f: dataclasses.Field, value) -> str | None:
    """What is wrong with one field's value by its type, choices and bounds (None when nothing)."""
    meta = f.metadata
    kind = _FIELD_TYPES[f.name]
    if value is None:
        return None if kind.nullable else f"{f.name} must be set"
    if kind.base is list:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"{f.name} must be a list of names"
        if len(value) > meta["max_items"] or any(len(item) > meta["max_length"] for item in value):
            return f"{f.name} may hold at most {meta['max_items']} names of at most {meta['max_length']} characters"
        return None
    # bool is an int in Python, and an int is a fine float; nothing else converts silently.
    allowed = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}[kind.base]
    if isinstance(value, bool) is not (kind.base is bool) or not isinstance(value, allowed):
        return f"{f.name} must be {_TYPE_NAMES[kind.base]}, not {value!r}"
    if kind.base is str:
        if meta.get("choices") and value not in meta["choices"]:
            return f"{f.name} must be one of {', '.join(meta['choices'])}, not {value!r}"
        if len(value) > meta.get("max_length", 100):
            return f"{f.name} must be at most {meta.get('max_length', 100)} characters"
        return None
    if kind.base is bool:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{f.name} must be a finite number, not {value}"
    failed = [words for bound, fails, words in _BOUNDS if bound in meta and fails(value, meta[bound])]
    if not failed:
        return None
    if "ge" in meta and "lt" in meta:  # a share: [0, 1)
        return f"{f.name} must be in [{_number(meta['ge'])}, {_number(meta['lt'])}), not {_number(value)}"
    bound = next(b for b, _fails, words in _BOUNDS if words == failed[0])
    return f"{f.name} must be {failed[0]} {_number(meta[bound])}, not {_number(value)}"


_BOUNDS = (("gt", operator.le, "greater than"), ("ge", operator.lt, "at least"),
           ("lt", operator.ge, "less than"), ("le", operator.gt, "at most"))


def _number(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class _FieldType:
    base: type
    nullable: bool


def _field_types() -> dict[str, _FieldType]:
    types = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args and type(None) in args else hint
        types[name] = _FieldType(typing.get_origin(base) or base, type(None) in args)
    return types


_FIELD_TYPES = _field_types()


# Presets trade time for quality. "balanced" equals the dataclass defaults. None sets the learning
# rate, so each method keeps its own default (LoRA's would be far too high for a full fine-tune).
# Measured on the demo dataset (SmolLM2-135M, LoRA, 2 CPU cores): "balanced" answered the 3 facts
# asked in 2.3 minutes (held-out paraphrases: ROUGE-L 0.65, exact match 0.13); 3 epochs answered
# none (0.46); "thorough" stopped early at epoch 8 after 4.3 minutes (ROUGE-L 0.77, exact 0.50).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 1.0, "lora_r": 8, "lora_alpha": 16, "eval_generations": 50},
    "balanced": {},
    "thorough": {"epochs": 10.0, "lora_r": 32, "lora_alpha": 64, "early_stopping_patience": 3, "keep_checkpoints": 3},
    # Preference tuning: a few passes over pairs of answers, from a model that already answers
    # (a base instruct model or an earlier run). The betas are the papers' and TRL's defaults.
    "dpo": {"objective": "dpo", "epochs": 3.0, "beta": 0.1},
    "orpo": {"objective": "orpo", "epochs": 3.0, "beta": 0.1},
    "kto": {"objective": "kto", "epochs": 3.0, "beta": 0.1},
}
