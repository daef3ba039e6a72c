"""GGUF export of a causal language model for llama.cpp, Ollama and LM Studio, verified in llama.cpp.

Conversion is llama.cpp's own `convert_hf_to_gguf.py` and quantization its `llama-quantize`, from
the same llama.cpp build as the `llama-server` that verifies the file (tinyforge.llama_cpp): the
GGUF's tensors, tokenizer and chat template are written by the tool that reads them.

Every export is loaded in llama-server and compared with PyTorch fp32 on fixed prompts:
- f16: greedy generations must equal PyTorch's token for token, or the export fails;
- q8_0 and q4_k_m: the held-out loss change and the greedy agreement are measured and held to a
  quality budget (tinyforge.ml.quality_budget), as the int8 ONNX export is.

llama-server has no endpoint for the loss of a given text, so the held-out loss is taken one token
at a time: the prefix is the prompt, the next token is forced (logit bias) and the server reports
its log-probability before sampling; the prompt cache makes each step one token of work.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from tinyforge.errors import TinyforgeError
from tinyforge.ml.formatting import IGNORE_INDEX, TokenizedExample
from tinyforge.ml.quality_budget import QualityBudget, VerificationFailed, hold_to_budget, require_architecture

GGUF_FILE = "model.gguf"
VERIFICATION_FILE = "verification.json"
# What the user picks, and the name llama-quantize knows it by.
GGUF_TYPES = {"f16": "F16", "q8_0": "Q8_0", "q4_k_m": "Q4_K_M"}
QUANTIZED_TYPES = ("q8_0", "q4_k_m")

# Architectures whose GGUF export has been verified end to end in llama.cpp (SmolLM2 is a Llama).
# The converter knows many more; we do not offer what we have not checked.
GGUF_EXPORTABLE_ARCHITECTURES = ("LlamaForCausalLM",)

# Converting and quantizing a small model takes seconds; a stuck tool should not hold a worker forever.
TOOL_TIMEOUT_SECONDS = 3600

ProgressCallback = Callable[[str], None]


class GgufExportError(VerificationFailed):
    """The GGUF was written but failed verification in llama.cpp; `verification` holds the numbers."""


def check_architecture(config) -> None:
    require_architecture(config, GGUF_EXPORTABLE_ARCHITECTURES, "GGUF")


def convert(hf_folder: Path, target: Path) -> None:
    """A Hugging Face folder (full weights, tokenizer, chat template) as an f16 GGUF."""
    _run_converter("convert_hf_to_gguf.py", [hf_folder], target)


def convert_lora(adapter_folder: Path, base_folder: Path, target: Path) -> None:
    """A PEFT LoRA adapter as an f16 GGUF LoRA for llama.cpp's --lora (the base's config names its tensors)."""
    _run_converter("convert_lora_to_gguf.py", [adapter_folder, "--base", base_folder], target)


def _run_converter(script: str, arguments: list, target: Path) -> None:
    from tinyforge.llama_cpp import converter_script, run_tool

    try:
        run_tool([sys.executable, converter_script(script), *arguments, "--outtype", "f16", "--outfile", target],
                 what=f"llama.cpp's converter ({script})", timeout=TOOL_TIMEOUT_SECONDS)
    except TinyforgeError as exc:
        # The converter writes tensors with numpy, which reports a full disk as a short write
        # ("N requested and M written") without the errno; say what it is, so the export's clean-up
        # reports a full disk rather than a converter bug.
        short_write = re.search(r"OSError: \d+ requested and \d+ written|No space left on device|File too large",
                                str(exc))
        if short_write:
            raise OSError(errno.ENOSPC, f"the converter could not write {target.name} ({short_write.group(0)})") from exc
        raise


def quantize(source: Path, target: Path, gguf_type: str) -> None:
    from tinyforge.llama_cpp import find_tool, run_tool, tool_env

    binary = find_tool("llama-quantize")
    run_tool([binary, source, target, GGUF_TYPES[gguf_type].upper()], what="llama-quantize",
             env=tool_env(binary), timeout=TOOL_TIMEOUT_SECONDS)


# --- measuring in llama.cpp --------------------------------------------------------------------


def _strip_eos(tokens: Sequence[int], eos: Sequence[int]) -> list[int]:
    tokens = list(tokens)
    while tokens and tokens[-1] in eos:
        tokens.pop()
    return tokens


def llama_greedy(http, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation of token ids `prompt`, as token ids."""
    response = http.post("/completion", json={
        "prompt": list(prompt), "n_predict": max_new_tokens, "temperature": 0, "top_k": 1,
        "samplers": ["top_k"], "return_tokens": True, "cache_prompt": True})
    response.raise_for_status()
    return list(response.json()["tokens"])


def llama_heldout_loss(http, heldout: Sequence[TokenizedExample]) -> float:
    """Mean negative log-likelihood of the labelled tokens, as tinyforge.ml.onnx_model.mean_labelled_loss
    takes it from PyTorch's logits: each token given the text before it."""
    total, count = 0.0, 0
    for example in heldout:
        ids = list(example.input_ids)
        for position in range(1, len(ids)):
            if example.labels[position] == IGNORE_INDEX:
                continue
            target = ids[position]
            response = http.post("/completion", json={
                "prompt": ids[:position], "n_predict": 1, "n_probs": 1, "post_sampling_probs": False,
                "logit_bias": [[target, 1e9]], "samplers": ["top_k"], "top_k": 1, "cache_prompt": True})
            response.raise_for_status()
            step = response.json()["completion_probabilities"][0]
            if step["id"] != target:
                raise TinyforgeError(f"llama-server did not take the forced token {target} (it chose {step['id']})")
            total -= step["logprob"]
            count += 1
    if count == 0:
        raise TinyforgeError("held-out examples: no labelled tokens to measure the loss on")
    return total / count


def measure_in_llama_cpp(gguf: Path, reference: dict, prompts: Sequence[Sequence[int]],
                         heldout: Sequence[TokenizedExample], max_new_tokens: int, lora: Sequence[Path] = ()) -> dict:
    """Load `gguf` in llama-server and compare it with the PyTorch reference
    (tinyforge.ml.onnx_export.torch_reference): greedy agreement and held-out loss."""
    import httpx

    from tinyforge.llama_cpp import LlamaServer
    from tinyforge.ml.onnx_export import generation_agreement

    longest = max([len(p) + max_new_tokens for p in prompts] + [len(e.input_ids) for e in heldout])
    started = time.perf_counter()
    with LlamaServer(gguf, context=max(256, longest + 8), lora=lora) as server, \
            httpx.Client(base_url=server.url, timeout=600) as http:
        generations = [_strip_eos(llama_greedy(http, prompt, max_new_tokens), reference["eos"])
                       for prompt in prompts]
        loss = llama_heldout_loss(http, heldout)
    ref_loss = reference["heldout_loss"]
    expected = [_strip_eos(tokens, reference["eos"]) for tokens in reference["generations"]]
    return {
        **generation_agreement(expected, generations),
        "heldout_loss": round(loss, 6),
        "heldout_loss_pytorch": round(ref_loss, 6),
        "heldout_loss_change": round((loss - ref_loss) / ref_loss, 6) if ref_loss else 0.0,
        "generated_tokens": sum(len(g) for g in generations),
        "seconds": round(time.perf_counter() - started, 3),
    }


# --- the export -------------------------------------------------------------------------------


def export_gguf(model, tokenizer, out_dir: Path, *, source: Path | None = None, gguf_type: str = "f16",
                prompts: Sequence[Sequence[int]], heldout: Sequence[TokenizedExample],
                heldout_source: str = "built-in", max_new_tokens: int = 16,
                budget: QualityBudget | None = None, keep_anyway: bool = False,
                progress: ProgressCallback | None = None) -> dict:
    """Write `model` (merged, fp32) and its tokenizer as out_dir/model.gguf of `gguf_type`, verify it
    in llama.cpp, and return the report (also written to verification.json). `source`: a Hugging
    Face folder holding exactly `model` (full weights), converted as it is instead of saved again.

    Raises GgufExportError with the report when the f16 file does not generate what PyTorch
    generates, or when a quantized one misses its quality `budget` and `keep_anyway` is false.
    """
    from tinyforge.hardware import cpu
    from tinyforge.llama_cpp import converter_script, find_tool
    from tinyforge.ml.artifacts import save_weights
    from tinyforge.ml.onnx_export import torch_reference

    say = progress or (lambda message: None)
    if gguf_type not in GGUF_TYPES:
        raise TinyforgeError(f"--quantize: unknown GGUF type {gguf_type!r} (choose from {', '.join(GGUF_TYPES)})")
    check_architecture(model.config)
    # Every llama.cpp part this export needs, before any work.
    converter_script()
    find_tool("llama-server")
    if gguf_type != "f16":
        find_tool("llama-quantize")
    budget = budget or QualityBudget()

    say("converting the model to GGUF (f16)")
    f16 = out_dir / ("model.f16.gguf" if gguf_type != "f16" else GGUF_FILE)
    if source is not None:
        convert(source, f16)
    else:  # a merged adapter exists only in memory: the converter reads a folder
        hf_folder = out_dir / ".hf"
        hf_folder.mkdir()
        save_weights(model, tokenizer, hf_folder, model.generation_config)
        convert(hf_folder, f16)
        shutil.rmtree(hf_folder)

    say("running the PyTorch reference")
    reference = torch_reference(model, prompts, heldout, max_new_tokens)
    say("verifying the f16 GGUF in llama.cpp against PyTorch")
    f16_numbers = measure_in_llama_cpp(f16, reference, prompts, heldout, max_new_tokens)
    f16_numbers["passed"] = f16_numbers["identical_generations"] == f16_numbers["generations"]
    here = cpu()
    report = {
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "heldout_texts": len(heldout),
        "heldout_source": heldout_source,
        "cpu": {"model": here.model, "flags": list(here.flags)},
        "f16": f16_numbers,
        "passed": f16_numbers["passed"],
        "gguf_type": gguf_type,
    }
    if not f16_numbers["passed"]:
        raise GgufExportError(
            "GGUF export failed verification: "
            f"{f16_numbers['identical_generations']}/{f16_numbers['generations']} greedy generations of the f16 "
            "file in llama.cpp equal PyTorch's", report)

    if gguf_type != "f16":
        say(f"quantizing to {gguf_type}")
        quantize(f16, out_dir / GGUF_FILE, gguf_type)
        f16.unlink()
        say(f"measuring {gguf_type} in llama.cpp against PyTorch fp32")
        numbers = measure_in_llama_cpp(out_dir / GGUF_FILE, reference, prompts, heldout, max_new_tokens)
        numbers["heldout_loss_change_vs_f16"] = round(
            (numbers["heldout_loss"] - f16_numbers["heldout_loss"]) / f16_numbers["heldout_loss"], 6)
        hold_to_budget(report, gguf_type, numbers, budget, keep_anyway=keep_anyway, error=GgufExportError, say=say,
                       problem=f"the {gguf_type} model misses its quality budget",
                       advice="export it with fewer bits (f16 or q8_0), or keep it anyway knowing its answers "
                              "are worse")
    report["precision"] = gguf_type
    (out_dir / VERIFICATION_FILE).write_text(json.dumps(report, indent=2))
    say("GGUF export verified in llama.cpp")
    return report


LORA_FILE = "adapter.gguf"


def export_gguf_lora(model, adapter_folder: Path, base_folder: Path, out_dir: Path, *,
                     prompts: Sequence[Sequence[int]], heldout: Sequence[TokenizedExample],
                     heldout_source: str = "built-in", max_new_tokens: int = 16, base_gguf: Path | None = None,
                     progress: ProgressCallback | None = None) -> dict:
    """Write the LoRA adapter in `adapter_folder` as out_dir/adapter.gguf, verify it in llama.cpp on
    an f16 GGUF of its base against `model` (the adapter merged, fp32), and return the report: greedy
    generations must equal PyTorch's token for token. The base's GGUF is `base_gguf` where the caller
    has one (the llama.cpp runtime keeps one per base), else it is made here and removed."""
    from tinyforge.hardware import cpu
    from tinyforge.llama_cpp import converter_script, find_tool
    from tinyforge.ml.onnx_export import torch_reference

    say = progress or (lambda message: None)
    check_architecture(model.config)
    converter_script()
    converter_script("convert_lora_to_gguf.py")
    find_tool("llama-server")
    say("converting the LoRA adapter to GGUF (f16)")
    convert_lora(adapter_folder, base_folder, out_dir / LORA_FILE)
    base_dir = out_dir / ".base"
    if base_gguf is None:
        say("converting its base model to GGUF (f16) to verify the adapter on")
        base_dir.mkdir()
        base_gguf = base_dir / "base.gguf"
        convert(base_folder, base_gguf)
    say("running the PyTorch reference")
    reference = torch_reference(model, prompts, heldout, max_new_tokens)
    say("verifying the GGUF LoRA on its base in llama.cpp against PyTorch")
    numbers = measure_in_llama_cpp(base_gguf, reference, prompts, heldout, max_new_tokens,
                                   lora=[out_dir / LORA_FILE])
    shutil.rmtree(base_dir, ignore_errors=True)
    numbers["passed"] = numbers["identical_generations"] == numbers["generations"]
    here = cpu()
    report = {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "heldout_texts": len(heldout),
              "heldout_source": heldout_source, "cpu": {"model": here.model, "flags": list(here.flags)},
              "lora": numbers, "passed": numbers["passed"], "gguf_type": "f16", "precision": "f16"}
    if not numbers["passed"]:
        raise GgufExportError(
            "GGUF LoRA export failed verification: "
            f"{numbers['identical_generations']}/{numbers['generations']} greedy generations of the adapter on its "
            "f16 base in llama.cpp equal PyTorch's", report)
    (out_dir / VERIFICATION_FILE).write_text(json.dumps(report, indent=2))
    say("GGUF LoRA verified in llama.cpp")
    return report
