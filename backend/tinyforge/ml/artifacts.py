"""Model folders on disk: the shared contract between training, serving and export.

A model folder is a Hugging Face folder (full weights or a LoRA adapter, tokenizer with its chat
template, generation_config.json) plus README.md (model card) and tinyforge.json. Folders are
written into a `.partial` sibling and renamed into place, so a crash or a full disk never leaves
a folder that looks complete; a failed write removes the partial folder.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinyforge.errors import TinyforgeError

FORMAT_VERSION = 1
INFO_FILE = "tinyforge.json"


def write_atomically(target: Path, fill: Callable[[Path], None], what: str) -> Path:
    """Create folder `target` by calling fill(staging) and renaming staging into place.

    An existing `target` is replaced. On any error the staging folder is removed; a full disk
    becomes a TinyforgeError that says so.
    """
    target = Path(target)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        fill(staging)
        _fsync_tree(staging)
        if target.exists():
            old = target.with_name(target.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if _is_disk_full(exc):
            raise TinyforgeError(
                f"the disk filled up while saving {what} to {target}; the partial folder was removed. "
                "Free some space, then resume from the last checkpoint"
            ) from exc
        # Whatever interrupted the write (a job timeout, say) also tells what it left behind: nothing.
        exc.add_note(f"{what} was not saved: its partial folder {staging.name} was removed")
        raise
    return target


def _is_disk_full(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return True
        # safetensors and torch wrap the OSError in their own exceptions
        text = str(exc)
        if "No space left on device" in text or "File too large" in text or "os error 28" in text or "os error 27" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def save_weights(model, tokenizer, folder: Path, generation_config=None) -> None:
    """Weights (adapter or full) and tokenizer files in Hugging Face layout."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if generation_config is not None:
        generation_config.save_pretrained(folder)


def model_info(*, base_model: str, base_model_path: str, method: str, max_seq_length: int,
               config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "base_model": base_model, "base_model_path": base_model_path,
            "method": method, "max_seq_length": max_seq_length, "config": config, **extra}


def write_info(folder: Path, info: dict[str, Any]) -> None:
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")


def read_info(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        raise TinyforgeError(f"{folder} is not a TinyForge model folder (no {INFO_FILE})")
    return json.loads(path.read_text())


def model_card(info: dict[str, Any], metrics: dict[str, Any], *, license: str, base_model_id: str,
               dataset_name: str, library: str) -> str:
    """README.md with the YAML front matter the Hugging Face Hub reads."""
    front = {
        "base_model": base_model_id,
        "library_name": library,
        "license": license,
        "datasets": [dataset_name],
        "metrics": ["loss", "perplexity"],
        "tags": ["tinyforge", info["method"], "text-generation"],
        "pipeline_tag": "text-generation",
    }
    yaml_lines = ["---"]
    for key, value in front.items():
        if isinstance(value, list):
            yaml_lines.append(f"{key}:")
            yaml_lines.extend(f"  - {json.dumps(v)}" for v in value)
        else:
            yaml_lines.append(f"{key}: {json.dumps(value)}")
    yaml_lines.append("---")
    config = info["config"]
    rows = [(name, metrics[name]) for name in ("eval_loss", "perplexity", "train_loss", "steps",
                                               "train_tokens_per_second")
            if metrics.get(name) is not None]
    table = "\n".join(f"| {name} | {value:.4g} |" if isinstance(value, float) else f"| {name} | {value} |"
                      for name, value in rows)
    how = ("a LoRA adapter: load it with PEFT (`PeftModel.from_pretrained`) on top of the base model"
           if library == "peft" else "full weights: load with `AutoModelForCausalLM.from_pretrained`")
    return "\n".join(yaml_lines) + f"""

# Fine-tuned {info['base_model']}

Fine-tuned with TinyForgeAI ({info['method']}) from `{base_model_id}` on `{dataset_name}`.
This folder holds {how}. The tokenizer carries the chat template used in training; render
prompts with `tokenizer.apply_chat_template(messages, add_generation_prompt=True)`.

## Metrics

| metric | value |
| --- | --- |
{table}

## Training configuration

```json
{json.dumps(config, indent=2)}
```
"""
