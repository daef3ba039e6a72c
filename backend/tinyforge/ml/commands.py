"""`tinyforge train | generate | validate`: the ML engine from the command line.

Registration imports nothing heavy (no torch), so `tinyforge --help` stays fast; each handler
imports what it needs. User mistakes raise TinyforgeError, which the dispatcher prints and turns
into exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from tinyforge.errors import TinyforgeError
from tinyforge.ml.config import PRESETS, TrainConfig

# Short spellings the issue and the README use.
ALIASES = {"base_model": ["--base"], "max_seq_length": ["--max-length"]}
# How the progress line names each batch layout of TrainConfig.packing.
LAYOUTS = {"on": "packed sequences", "batch": "random batches packed into rows", "off": "length-grouped batches"}
# Settings of the platform's evaluation after a run, not of training: the CLI evaluates with
# `tinyforge eval`, whose --max-new-tokens and eval set say the same.
PLATFORM_ONLY = ("eval_generations", "max_new_tokens")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training options (override the preset)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in PLATFORM_ONLY:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = {"learning_rate": "1e-3 for lora, 2e-5 for full", "max_steps": "unset",
                 "lora_target_modules": "per architecture"}.get(f.name, default)
        help_text = f"{f.metadata['help']} (default: {shown})"
        kind = hints[f.name]
        names = [flag, *ALIASES.get(f.name, [])]
        if kind is bool:
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name == "lora_target_modules":
            group.add_argument(*names, dest=f.name, nargs="+", metavar="NAME", default=None, help=help_text)
        else:
            base = next(t for t in typing.get_args(kind) or (kind,) if t is not type(None))
            group.add_argument(*names, dest=f.name, type=base, default=None, help=help_text,
                               choices=f.metadata.get("choices"), metavar=None if f.metadata.get("choices") else base.__name__.upper())


def register(subparsers) -> None:
    """Add this area's subcommands to the `tinyforge` parser."""
    train = subparsers.add_parser(
        "train", help="fine-tune a model on a JSONL dataset",
        description="Fine-tune a base model (LoRA or full) on a JSONL dataset and write a Hugging Face model folder.",
    )
    train.add_argument("--data", required=True, type=Path, help="training rows (JSONL, instruction or chat form)")
    train.add_argument("--validation-data", type=Path, default=None,
                       help="held-out rows (default: hold out --validation-split of --data)")
    train.add_argument("--out", required=True, type=Path, help="output model folder (checkpoints go in OUT/checkpoints)")
    train.add_argument("--preset", choices=list(PRESETS), default="balanced",
                       help="hyperparameter preset: quick, balanced or thorough (default: balanced)")
    train.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                       help="resume from a checkpoint folder, or the latest one in OUT/checkpoints when no folder is given")
    train.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    _add_config_options(train)
    train.set_defaults(func=run_train)

    generate = subparsers.add_parser("generate", help="answer a prompt with a model folder",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    generate.add_argument("prompt", help="the user message")
    generate.add_argument("--model", required=True, type=Path, help="model folder (or a base model name)")
    generate.add_argument("--system", default=None, help="optional system message")
    generate.add_argument("--max-new-tokens", type=int, default=128, help="longest answer")
    generate.set_defaults(func=run_generate)

    validate = subparsers.add_parser("validate", help="check a JSONL dataset and report problems by line",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    validate.add_argument("file", type=Path, help="the JSONL dataset")
    validate.add_argument("--base", default=None,
                          help="also count tokens with this base model's tokenizer (preset, HF id or folder)")
    validate.add_argument("--max-seq-length", type=int, default=1024, help="context limit checked with --base")
    validate.add_argument("--json", action="store_true", help="print the full report as JSON")
    validate.set_defaults(func=run_validate)


class ProgressBar:
    """A rich progress bar fed by training callbacks (a TrainerCallback)."""

    def __init__(self):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.progress = None
        self.task = None

    def on_start(self, info):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        processes = f" x {info['processes']} processes" if info["processes"] > 1 else ""
        self.console.print(
            f"training {info['train_examples']} examples ({info['validation_examples']} held out) on "
            f"{info['device']}{processes} ({info['precision']}), {info['total_steps']} steps, "
            f"{info['trainable_parameters']:,} trainable parameters, "
            f"{LAYOUTS[info['packing']]} with {info['padding_share']:.0%} padding"
        )
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=self.console)
        self.progress.start()
        self.task = self.progress.add_task("train", total=info["total_steps"], completed=info["start_step"], status="")

    def _status(self, p):
        parts = [f"loss {p.loss:.4f}"]
        if p.eval_loss is not None:
            parts.append(f"eval {p.eval_loss:.4f}")
        parts.append(f"lr {p.learning_rate:.2e}")
        parts.append(f"{p.tokens_per_second:.0f} tok/s")
        return "  ".join(parts)

    def on_step(self, p):
        self.progress.update(self.task, completed=p.step, status=self._status(p))

    def on_evaluate(self, p):
        self.progress.console.print(f"step {p.step}: eval loss {p.eval_loss:.4f}")

    def on_checkpoint(self, path, step, eval_loss, is_best):
        pass

    def on_log(self, message):
        self.console.print(message)

    def on_end(self, result):
        if self.progress:
            self.progress.stop()

    def should_stop(self):
        return False


def _config_from_args(args) -> TrainConfig:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in PLATFORM_ONLY}
    return TrainConfig.from_preset(args.preset, **overrides)


def _quiet_libraries() -> None:
    # Our own progress bar is the only one; transformers' per-file loading bars are noise here.
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def run_train(args) -> int:
    config = _config_from_args(args)
    _quiet_libraries()
    from tinyforge.ml.train import TrainerCallback, train

    class Quiet(TrainerCallback):
        def on_log(self, message):
            print(message, file=sys.stderr)

    callbacks = [Quiet()] if args.quiet else [ProgressBar()]
    try:
        result = train(config, args.data, args.out, callbacks, validation=args.validation_data, resume_from=args.resume)
    except BaseException:
        for cb in callbacks:
            if isinstance(cb, ProgressBar) and cb.progress:
                cb.progress.stop()
        raise
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under torchrun / accelerate launch, one summary
        return 1 if result.status == "cancelled" else 0
    m = result.metrics
    print(f"{result.status}: {result.steps}/{result.total_steps} steps in {result.elapsed_s:.0f}s, "
          f"{result.train_tokens_per_second:.0f} tok/s")
    if result.final_eval_loss is not None:
        print(f"eval loss {result.final_eval_loss:.4f}" + (f", perplexity {m['perplexity']:.2f}" if "perplexity" in m else ""))
    if result.status == "cancelled":
        print(f"cancelled; resume with: tinyforge train ... --out {args.out} --resume")
        return 1
    print(f"model folder: {result.output_dir}")
    # Answers are scored by the evaluation machinery, not by training (on the platform, an eval job).
    print(f"score its answers against its base model: tinyforge eval --model {config.base_model} "
          f"--against {result.output_dir} --data <eval set .jsonl or .csv> (or --general)")
    return 0


def run_generate(args) -> int:
    from tinyforge.ml.evaluate import generate_replies
    from tinyforge.ml.models import load_model_folder, resolve_base_model

    _quiet_libraries()
    model, tokenizer = load_model_folder(resolve_base_model(str(args.model)))
    if not tokenizer.chat_template:
        raise TinyforgeError(f"{args.model} has no chat template; train it with tinyforge first")
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}]
    print(generate_replies(model, tokenizer, [messages], max_new_tokens=args.max_new_tokens)[0])
    return 0


def run_validate(args) -> int:
    from tinyforge.ml.schema import format_problems, validate_file

    counter = None
    if args.base:
        from functools import partial

        from tinyforge.ml.formatting import count_tokens
        from tinyforge.ml.models import load_training_tokenizer, resolve_base_model

        tokenizer, _ = load_training_tokenizer(resolve_base_model(args.base))
        counter = partial(count_tokens, tokenizer)
    report = validate_file(args.file, counter, max_seq_length=args.max_seq_length if counter else None)
    if args.json:
        data = report.to_dict()
        data.pop("token_lengths")
        print(json.dumps(data, indent=2))
    else:
        print(format_problems(report))
    if report.total_rows == 0:
        raise TinyforgeError(f"{args.file}: the file is empty")
    return 0 if report.invalid_count == 0 and report.ok else 2
