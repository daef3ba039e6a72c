"""Model folders written for export, from a model folder written by training (the engine's part;
tinyforge.exports puts them in zips and bundles):

- `write_hf_folder`: a LoRA adapter as it is (or merged into its base with `merge=True`), or full
  weights, with tokenizer, chat template, generation config, tinyforge.json and a model card.
- `write_onnx_folder`: merged weights traced to ONNX with the KV cache, verified against PyTorch,
  optionally int8 within a quality budget (tinyforge.ml.onnx_export).
- `write_gguf_folder`: merged weights as a GGUF (f16, q8_0 or q4_k_m) by llama.cpp's own tools,
  verified in llama.cpp against PyTorch, with an Ollama Modelfile (tinyforge.ml.gguf_export,
  tinyforge.ml.ollama).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from tinyforge import __version__
from tinyforge.errors import TinyforgeError
from tinyforge.ml.artifacts import INFO_FILE
from tinyforge.ml.quality_budget import QualityBudget

ProgressCallback = Callable[[str], None]


def is_adapter_folder(model_dir: Path) -> bool:
    return (model_dir / "adapter_config.json").is_file()


# --- Hugging Face -----------------------------------------------------------------------------


def _read_info(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / INFO_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TinyforgeError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def load_merged_model(model_dir: Path):
    """(model, tokenizer) with any LoRA adapter merged into the base weights, in float32."""
    from tinyforge.ml.models import load_model_folder

    model, tokenizer = load_model_folder(model_dir)
    if is_adapter_folder(model_dir):
        model = model.merge_and_unload()
    return model.eval(), tokenizer


def write_hf_folder(model_dir: Path, folder: Path, *, merge: bool, progress: ProgressCallback) -> None:
    info = _read_info(model_dir)
    adapter = is_adapter_folder(model_dir)
    if adapter and not merge:
        progress("copying the LoRA adapter")
        # Top-level files only: checkpoints/ and other working folders are not part of the model.
        for path in model_dir.iterdir():
            if path.is_file() and not path.name.startswith("."):
                shutil.copy2(path, folder / path.name)
    else:
        from tinyforge.ml.artifacts import save_weights

        progress("merging the LoRA adapter into the base weights" if adapter else "loading the model")
        model, tokenizer = load_merged_model(model_dir)
        progress("saving the Hugging Face folder")
        save_weights(model, tokenizer, folder, model.generation_config)
    _ensure_chat_template(folder)
    write_export_info(folder, info, format="hf", merged=not adapter or merge)
    write_export_card(folder, model_dir, info, format="hf", merged=not adapter or merge)


def _ensure_chat_template(folder: Path) -> None:
    from transformers import AutoTokenizer

    if not AutoTokenizer.from_pretrained(folder).chat_template:
        raise TinyforgeError(f"{folder}: the tokenizer has no chat template; the model folder is incomplete")


def write_export_info(folder: Path, info: dict[str, Any] | None, **export: Any) -> None:
    """tinyforge.json of the source, plus what this export did."""
    data = dict(info or {"format_version": 1})
    data["export"] = {"tinyforge_version": __version__, **export}
    (folder / INFO_FILE).write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_export_card(folder: Path, model_dir: Path, info: dict[str, Any] | None, *, format: str,
                      merged: bool, verification: dict[str, Any] | None = None,
                      modelfile_note: str | None = None) -> None:
    """README.md: the training card of the source (when it has one) and how to use this export."""
    source_card = model_dir / "README.md"
    card = source_card.read_text() if source_card.is_file() else (
        f"# {model_dir.name}\n\nA language model exported by TinyForgeAI.\n")
    base = (info or {}).get("base_model") or "its base model"
    if format == "hf" and not merged:
        usage = f"""This folder is a LoRA adapter. It needs its base model, `{base}`
(adapter_config.json's `base_model_name_or_path` says where it was loaded from when it was
trained; point it at your copy of the base model if that path does not exist here).

```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER")
tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")
```"""
    elif format == "hf":
        usage = """This folder holds full weights (any LoRA adapter merged into its base).

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER")
tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")
messages = [{"role": "user", "content": "Hello"}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                       return_dict=True)
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0]))
```"""
    elif format == "gguf":
        usage = _gguf_usage(verification or {}, modelfile_note)
    elif format == "gguf_lora":
        usage = _gguf_lora_usage(verification or {}, base, modelfile_note)
    else:
        usage = _onnx_usage(verification or {})
    text = card.rstrip() + f"\n\n## Export ({format})\n\n{usage}\n"
    (folder / "README.md").write_text(text)


def _onnx_usage(verification: dict[str, Any]) -> str:
    fp32 = verification.get("fp32", {})
    lines = [
        "`model.onnx` runs on ONNX Runtime with its KV cache as inputs and outputs "
        "(`onnx_config.json` names them); the tokenizer files and chat template sit beside it.",
        "",
        f"Verified against PyTorch on {fp32.get('generations', '?')} prompts: "
        f"{fp32.get('identical_generations', '?')} identical greedy generations, "
        f"max |logit difference| {fp32.get('max_abs_logit_diff', float('nan')):.2e} "
        f"(allowed {fp32.get('logits_atol', float('nan')):g}).",
    ]
    int8 = verification.get("int8")
    if verification.get("warning"):
        lines = [f"> **WARNING: {verification['warning']}.** Its answers are measurably worse than the "
                 "trained model's; use it only if you accept that.", "", *lines]
    if int8:
        lines += [
            "",
            f"This model is int8 (dynamic quantization). Against the fp32 model: held-out loss "
            f"{int8['heldout_loss']:.4f} vs {fp32['heldout_loss']:.4f} "
            f"({100 * int8['heldout_loss_change_vs_onnx_fp32']:+.2f}%), "
            f"{int8['identical_generations']}/{int8['generations']} identical greedy generations, "
            f"{100 * int8['token_agreement']:.1f}% of generated tokens agree.",
        ]
    lines += ["", "`verification.json` has every number. Load it in Python with "
              "`tinyforge.ml.onnx_model.OnnxCausalLM(folder)`."]
    return "\n".join(lines)


# --- ONNX -------------------------------------------------------------------------------------


def heldout_examples(tokenizer, heldout_data: str | os.PathLike | None, max_rows: int = 64):
    """Held-out examples for the loss: rows of `heldout_data` (labelled as in training) or the
    built-in texts. Returns (examples, source description)."""
    from tinyforge.ml.onnx_export import default_heldout

    if heldout_data is None:
        return default_heldout(tokenizer), "built-in texts"
    from tinyforge.ml.formatting import tokenize_row
    from tinyforge.ml.schema import read_rows

    rows = [row for _, row in read_rows(heldout_data)][:max_rows]
    if not rows:
        raise TinyforgeError(f"--heldout: {heldout_data} has no rows")
    return [tokenize_row(tokenizer, row) for row in rows], str(heldout_data)


def write_onnx_folder(model_dir: Path, folder: Path, *, quantize: str | None,
                      heldout_data: str | os.PathLike | None, progress: ProgressCallback,
                      budget: QualityBudget | None = None, keep_anyway: bool = False) -> dict[str, Any]:
    from tinyforge.ml.onnx_export import check_architecture, export_onnx, verification_prompts

    from transformers import AutoConfig

    info = _read_info(model_dir)
    if not is_adapter_folder(model_dir):
        check_architecture(AutoConfig.from_pretrained(model_dir))  # before loading any weights
    progress("loading the model")
    model, tokenizer = load_merged_model(model_dir)
    check_architecture(model.config)
    examples, source = heldout_examples(tokenizer, heldout_data)
    max_new_tokens = 16
    verification = export_onnx(model, folder, quantize=quantize, prompts=verification_prompts(tokenizer),
                               heldout=examples, heldout_source=source, max_new_tokens=max_new_tokens,
                               budget=budget, keep_anyway=keep_anyway, progress=progress)
    # What the ONNX Runtime side needs besides the graph: tokenizer, chat template, stop tokens.
    tokenizer.save_pretrained(folder)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    write_export_info(folder, info, format="onnx", merged=True, quantize=quantize,
                      precision=verification["precision"])
    write_export_card(folder, model_dir, info, format="onnx", merged=True, verification=verification)
    return verification


# --- GGUF -------------------------------------------------------------------------------------


def write_gguf_folder(model_dir: Path, folder: Path, *, gguf_type: str,
                      heldout_data: str | os.PathLike | None, progress: ProgressCallback,
                      budget: QualityBudget | None = None, keep_anyway: bool = False) -> dict[str, Any]:
    """model.gguf (verified in llama.cpp), verification.json, an Ollama Modelfile, README.md and
    tinyforge.json."""
    from transformers import AutoConfig

    from tinyforge.ml import gguf_export, ollama
    from tinyforge.ml.onnx_export import eos_token_ids, verification_prompts

    info = _read_info(model_dir)
    if not is_adapter_folder(model_dir):
        gguf_export.check_architecture(AutoConfig.from_pretrained(model_dir))  # before loading any weights
    progress("loading the model")
    model, tokenizer = load_merged_model(model_dir)
    gguf_export.check_architecture(model.config)
    examples, source = heldout_examples(tokenizer, heldout_data)
    verification = gguf_export.export_gguf(
        model, tokenizer, folder, source=None if is_adapter_folder(model_dir) else model_dir,
        gguf_type=gguf_type, prompts=verification_prompts(tokenizer), heldout=examples,
        heldout_source=source, budget=budget, keep_anyway=keep_anyway, progress=progress)
    turns = ollama.turn_format(tokenizer)
    if turns is not None:
        stops = ollama.stop_strings(tokenizer, eos_token_ids(model))
        (folder / ollama.MODELFILE).write_text(ollama.modelfile(gguf_export.GGUF_FILE, turns, stops))
        note = None
    else:
        note = ("This model's chat template is not a plain sequence of turns, so no Ollama Modelfile could "
                "render it exactly; llama.cpp and LM Studio read the template from the GGUF itself.")
    write_export_info(folder, info, format="gguf", merged=True, quantize=gguf_type, precision=gguf_type)
    write_export_card(folder, model_dir, info, format="gguf", merged=True, verification=verification,
                      modelfile_note=note)
    return verification


def _gguf_usage(verification: dict[str, Any], modelfile_note: str | None) -> str:
    gguf_type = verification.get("gguf_type", "f16")
    f16 = verification.get("f16", {})
    lines = []
    if verification.get("warning"):
        lines += [f"> **WARNING: {verification['warning']}.** Its answers are measurably worse than the "
                  "trained model's; use it only if you accept that.", ""]
    lines += [
        f"`model.gguf` is the merged model as GGUF {gguf_type}, with its tokenizer and chat template inside, "
        "for llama.cpp, Ollama and LM Studio.",
        "",
        f"Verified in llama.cpp against PyTorch on {f16.get('generations', '?')} prompts: the f16 file generated "
        f"{f16.get('identical_generations', '?')} of {f16.get('generations', '?')} greedy answers token for "
        "token as PyTorch does.",
    ]
    quantized = verification.get(gguf_type) if gguf_type != "f16" else None
    if quantized:
        lines += [
            "",
            f"This file is quantized ({gguf_type}). Against PyTorch fp32: held-out loss "
            f"{quantized['heldout_loss']:.4f} vs {quantized['heldout_loss_pytorch']:.4f} "
            f"({100 * quantized['heldout_loss_change']:+.2f}%), "
            f"{quantized['identical_generations']}/{quantized['generations']} identical greedy generations, "
            f"{100 * quantized['token_agreement']:.1f}% of generated tokens agree.",
        ]
    lines += ["", "llama.cpp:", "", "```sh", "llama-server -m model.gguf --port 8080   # OpenAI API on :8080/v1",
              "```", ""]
    if modelfile_note:
        lines.append(modelfile_note)
    else:
        lines += ["Ollama (the Modelfile renders the chat template this model was trained with, and stops at its "
                  "end-of-turn token):", "", "```sh", "ollama create my-model -f Modelfile", "ollama run my-model",
                  "```"]
    lines += ["", "`verification.json` has every number."]
    return "\n".join(lines)


def write_gguf_lora_folder(model_dir: Path, folder: Path, *, heldout_data: str | os.PathLike | None,
                           progress: ProgressCallback, base_gguf: Path | None = None) -> dict[str, Any]:
    """adapter.gguf (a LoRA for llama.cpp's --lora, verified on its base in llama.cpp: `base_gguf`,
    else an f16 conversion made for the check), verification.json, an Ollama Modelfile (FROM the
    base's GGUF, ADAPTER this one), README.md and tinyforge.json."""
    from transformers import AutoConfig

    from tinyforge.ml import gguf_export, ollama
    from tinyforge.ml.models import load_tokenizer, resolve_base_model
    from tinyforge.ml.onnx_export import eos_token_ids, verification_prompts

    if not is_adapter_folder(model_dir):
        raise TinyforgeError(f"--format gguf_lora: {model_dir} holds full weights, not a LoRA adapter; "
                             "export it with --format gguf")
    info = _read_info(model_dir)
    adapter_config = json.loads((model_dir / "adapter_config.json").read_text())
    base_folder = resolve_base_model(adapter_config.get("base_model_name_or_path") or "")
    base_config = AutoConfig.from_pretrained(base_folder)
    gguf_export.check_architecture(base_config)
    # A GGUF LoRA carries low-rank deltas of linear layers only; the base GGUF it is applied to has
    # the base's vocabulary and every other weight as they were.
    changed = [name for name in ("modules_to_save", "trainable_token_indices") if adapter_config.get(name)]
    if adapter_config.get("use_dora"):
        changed.append("use_dora")
    if len(load_tokenizer(model_dir)) > base_config.vocab_size:
        changed.append("tokens added to the vocabulary")
    if changed:
        raise TinyforgeError(f"this adapter changes more than low-rank deltas of its base ({', '.join(changed)}), "
                             "which a GGUF LoRA cannot carry; export it merged with --format gguf")
    progress("loading the model")
    model, tokenizer = load_merged_model(model_dir)
    examples, source = heldout_examples(tokenizer, heldout_data)
    verification = gguf_export.export_gguf_lora(
        model, model_dir, base_folder, folder, prompts=verification_prompts(tokenizer), heldout=examples,
        heldout_source=source, base_gguf=base_gguf, progress=progress)
    turns = ollama.turn_format(tokenizer)
    note = None
    if turns is not None:
        stops = ollama.stop_strings(tokenizer, eos_token_ids(model))
        (folder / ollama.MODELFILE).write_text(
            ollama.modelfile("base.gguf", turns, stops, adapter=gguf_export.LORA_FILE))
    else:
        note = ("This model's chat template is not a plain sequence of turns, so no Ollama Modelfile could "
                "render it exactly.")
    write_export_info(folder, info, format="gguf_lora", merged=False, precision="f16")
    write_export_card(folder, model_dir, info, format="gguf_lora", merged=False, verification=verification,
                      modelfile_note=note)
    return verification


def _gguf_lora_usage(verification: dict[str, Any], base: str, modelfile_note: str | None) -> str:
    lora = verification.get("lora", {})
    lines = [
        f"`adapter.gguf` is this run's LoRA adapter for llama.cpp (`--lora`), f16, on its base model `{base}`. "
        "It needs that base as a GGUF (any precision; an f16 one is `tinyforge export --format gguf` of the base "
        "folder).",
        "",
        f"Verified in llama.cpp on the f16 GGUF of its base against PyTorch on {lora.get('generations', '?')} "
        f"prompts: {lora.get('identical_generations', '?')} of {lora.get('generations', '?')} greedy answers "
        "equal token for token.",
        "", "llama.cpp:", "", "```sh", "llama-server -m base.gguf --lora adapter.gguf --port 8080", "```", "",
    ]
    if modelfile_note:
        lines.append(modelfile_note)
    else:
        lines += ["Ollama: put the base model's GGUF beside the Modelfile as `base.gguf`, then", "", "```sh",
                  "ollama create my-model -f Modelfile", "ollama run my-model", "```"]
    lines += ["", "`verification.json` has every number."]
    return "\n".join(lines)
