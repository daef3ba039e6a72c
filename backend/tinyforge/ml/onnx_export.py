"""ONNX export of a causal language model with its KV cache, and its verification against PyTorch
(the model that runs the exported file is tinyforge.ml.onnx_model.OnnxCausalLM).

Why torch.onnx's TorchScript exporter and not optimum-onnx: the only optimum-onnx release
(0.1.0) pins transformers<4.58 and we ship transformers 5; torch's dynamo exporter needs
onnxscript, which we do not ship. Tracing is only as good as the inputs it saw, so every export
is checked against PyTorch before it is offered (`export_onnx`): greedy generations must match
token for token and logits must agree within `LOGITS_ATOL`.

The exported graph takes `input_ids`, `attention_mask` (past + new positions), `position_ids`
and one `past.{layer}.key` / `past.{layer}.value` tensor per layer
([batch, kv_heads, past_len, head_dim]; past_len may be 0 for the prompt) and returns `logits`
and `present.{layer}.key|value` (the past with the new positions appended).
"""

from __future__ import annotations

import io
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tinyforge.errors import TinyforgeError
from tinyforge.ml.formatting import TokenizedExample, render
from tinyforge.ml.onnx_model import ONNX_CONFIG_FILE, ONNX_MODEL_FILE, OnnxCausalLM, mean_labelled_loss
from tinyforge.ml.quality_budget import QualityBudget, VerificationFailed, hold_to_budget, require_architecture

VERIFICATION_FILE = "verification.json"
ONNX_FORMAT_VERSION = 1
OPSET = 17

# Architectures whose export has been verified end to end (SmolLM2 is a Llama). Others may trace
# fine but we do not offer what we have not checked.
ONNX_EXPORTABLE_ARCHITECTURES = ("LlamaForCausalLM",)

# fp32 ONNX Runtime against fp32 PyTorch: the two reorder floating-point sums differently, which
# moves logits by ~1e-5 on SmolLM2-135M; 1e-3 leaves room and still catches a wrong graph (a
# traced-in shape or a dropped mask moves them by whole units).
LOGITS_ATOL = 1e-3

VERIFICATION_PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List three colours.",
    "Explain what a database index is, briefly.",
)

# Held-out loss texts for when the caller has no validation rows of its own.
DEFAULT_HELDOUT_TEXTS = (
    "The library opens at nine in the morning and closes at six in the evening.",
    "To reset your password, open the settings page and choose 'Forgot password'.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The invoice lists three items: a keyboard, a mouse and a monitor.",
    "Our support team answers e-mails within one working day.",
    "A recipe for bread needs flour, water, salt and yeast.",
)


class OnnxExportError(VerificationFailed):
    """The ONNX export ran but its result failed verification; `verification` holds the numbers."""


ProgressCallback = Callable[[str], None]


def check_architecture(config) -> None:
    require_architecture(config, ONNX_EXPORTABLE_ARCHITECTURES, "ONNX")


def _cache_geometry(config) -> dict:
    text = config.get_text_config(decoder=True)
    heads = text.num_attention_heads
    return {
        "num_layers": text.num_hidden_layers,
        "num_key_value_heads": getattr(text, "num_key_value_heads", None) or heads,
        "head_dim": getattr(text, "head_dim", None) or text.hidden_size // heads,
        "vocab_size": text.vocab_size,
        "max_position_embeddings": text.max_position_embeddings,
    }


def _io_names(num_layers: int) -> tuple[list[str], list[str], list[str]]:
    past = [f"past.{i}.{kv}" for i in range(num_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(num_layers) for kv in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", *past], ["logits", *present], past


def _flat_cache_module(model, num_layers: int):
    """Wrap `model` so the KV cache goes in and out as flat tensors, which ONNX can carry."""
    import torch
    from transformers import DynamicCache

    class CausalLMWithFlatCache(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(
                [(past[2 * i], past[2 * i + 1]) for i in range(num_layers)], config=model.config
            )
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
            )
            present = []
            for layer in out.cache.layers:
                present += [layer.keys, layer.values]
            return (out.logits, *present)

    return CausalLMWithFlatCache().eval()


def export_onnx_graph(model, path: Path) -> dict:
    """Trace `model` (a supported causal LM, fp32) into an ONNX file at `path`; return its IO spec.

    The file is serialised in memory and written with one Python write, so a full disk surfaces
    as an OSError the caller can clean up after rather than a half-written protobuf.
    """
    import torch

    check_architecture(model.config)
    geometry = _cache_geometry(model.config)
    layers = geometry["num_layers"]
    # Eager attention builds the mask from attention_mask on every call; SDPA's fast paths
    # decide from the traced example whether a mask is needed, which would bake in "no padding".
    model.set_attn_implementation("eager")
    model = model.float().eval()
    wrapper = _flat_cache_module(model, layers)
    input_names, output_names, past_names = _io_names(layers)

    # Example shapes above 1 so the tracer cannot specialise batch, sequence or past length.
    batch, seq, past_len = 2, 3, 4
    kv_shape = (batch, geometry["num_key_value_heads"], past_len, geometry["head_dim"])
    past = [torch.zeros(kv_shape) for _ in past_names]
    input_ids = torch.ones((batch, seq), dtype=torch.long)
    attention_mask = torch.ones((batch, past_len + seq), dtype=torch.long)
    position_ids = torch.arange(past_len, past_len + seq).expand(batch, seq)

    dynamic_axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "total_sequence"},
        "position_ids": {0: "batch", 1: "sequence"},
        "logits": {0: "batch", 1: "sequence"},
    }
    dynamic_axes.update({name: {0: "batch", 2: "past_sequence"} for name in past_names})
    dynamic_axes.update({name: {0: "batch", 2: "total_sequence"} for name in output_names[1:]})

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python branch it freezes; export_onnx's verification is what tells
        # whether one of them mattered, so the warnings only bury the export's own messages.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        # Deprecated, and chosen knowingly: see the module docstring.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        torch.onnx.export(
            wrapper,
            (input_ids, attention_mask, position_ids, *past),
            buffer,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    path.write_bytes(buffer.getvalue())
    return {
        "format_version": ONNX_FORMAT_VERSION,
        "architecture": model.config.architectures[0],
        "opset": OPSET,
        "precision": "fp32",
        "input_names": input_names,
        "output_names": output_names,
        **geometry,
    }


# --- verification against PyTorch -------------------------------------------------------------


def verification_prompts(tokenizer) -> list[list[int]]:
    """Token ids of the verification prompts, rendered with the model's chat template."""
    return [tokenizer(render(tokenizer, [{"role": "user", "content": text}],
                             add_generation_prompt=True), add_special_tokens=False)["input_ids"]
            for text in VERIFICATION_PROMPTS]


def default_heldout(tokenizer) -> list[TokenizedExample]:
    """Plain texts, every token labelled, for when the caller has no validation rows."""
    examples = []
    for text in DEFAULT_HELDOUT_TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        examples.append(TokenizedExample(input_ids=list(ids), labels=list(ids)))
    return examples


def eos_token_ids(model) -> list[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def torch_reference(model, prompts: Sequence[Sequence[int]], heldout: Sequence[TokenizedExample],
                    max_new_tokens: int) -> dict:
    """Greedy generations (with per-step logits), full-sequence logits and held-out loss from
    PyTorch, as plain transformers computes them."""
    import torch
    from transformers import GenerationConfig

    eos = eos_token_ids(model)
    greedy = GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=eos or None,
        pad_token_id=model.config.pad_token_id if model.config.pad_token_id is not None
        else (eos[0] if eos else 0),
        return_dict_in_generate=True, output_logits=True,
    )
    generations, step_logits, full_logits = [], [], []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([list(prompt)])
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), generation_config=greedy
            )
            new = out.sequences[0, ids.shape[1]:].tolist()
            generations.append(new)
            step_logits.append([logits[0].numpy() for logits in out.logits])
            full_logits.append(model(out.sequences).logits[0].numpy())
        heldout_logits = [model(torch.tensor([list(ex.input_ids)])).logits[0].numpy()
                          for ex in heldout]
    return {
        "generations": generations,
        "step_logits": step_logits,
        "full_logits": full_logits,
        "heldout_loss": mean_labelled_loss(heldout_logits, heldout),
        "eos": eos,
    }


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def generation_agreement(reference: list[list[int]], candidate: list[list[int]]) -> dict:
    matched = total = identical = 0
    for ref, cand in zip(reference, candidate):
        total += max(len(ref), len(cand))
        matched += _common_prefix(ref, cand)
        identical += ref == cand
    return {
        "identical_generations": identical,
        "generations": len(reference),
        # Share of generated tokens produced before the first divergence from PyTorch.
        "token_agreement": round(matched / total, 4) if total else 1.0,
    }


def compare_with_reference(runtime: OnnxCausalLM, reference: dict, prompts, heldout,
                           max_new_tokens: int) -> dict:
    """Run the ONNX model on the reference's inputs; return the comparison numbers."""
    generations, max_step_diff, max_full_diff, max_abs_logit = [], 0.0, 0.0, 0.0
    started = time.perf_counter()
    generated_tokens = 0
    for i, prompt in enumerate(prompts):
        tokens, logits = runtime.greedy_generate(prompt, max_new_tokens, reference["eos"])
        generations.append(tokens)
        generated_tokens += len(tokens)
        # Step k saw the same context in both runtimes only while the tokens before it agree;
        # after a divergence the two are answering different texts.
        same_context = _common_prefix(tokens, reference["generations"][i]) + 1
        for ours, theirs in list(zip(logits, reference["step_logits"][i]))[:same_context]:
            max_step_diff = max(max_step_diff, float(np.abs(ours - theirs).max()))
        full = runtime.full_logits(list(prompt) + reference["generations"][i])
        max_full_diff = max(max_full_diff, float(np.abs(full - reference["full_logits"][i]).max()))
        max_abs_logit = max(max_abs_logit, float(np.abs(reference["full_logits"][i]).max()))
    elapsed = time.perf_counter() - started
    loss = runtime.heldout_loss(heldout)
    ref_loss = reference["heldout_loss"]
    return {
        **generation_agreement(reference["generations"], generations),
        "max_abs_logit_diff": max(max_step_diff, max_full_diff),
        "max_abs_logit_diff_full_sequence": max_full_diff,
        "max_abs_logit_diff_decode_steps": max_step_diff,
        "max_abs_logit": max_abs_logit,
        "heldout_loss": round(loss, 6),
        "heldout_loss_pytorch": round(ref_loss, 6),
        "heldout_loss_change": round((loss - ref_loss) / ref_loss, 6) if ref_loss else 0.0,
        "generated_tokens": generated_tokens,
        "seconds": round(elapsed, 3),
    }


def quantize_int8(source: Path, target: Path) -> dict:
    """Dynamic int8 quantization (weights per output channel, activations per tensor at run
    time) of the model's MatMuls; returns the settings, for the report.

    Unsigned weights (ONNX Runtime's U8U8) because the export runs wherever it is downloaded to:
    with signed weights (U8S8) a CPU without VNNI (AVX2, AVX-512 before Cascade Lake) multiplies
    through VPMADDUBSW, whose 16-bit sums saturate; SmolLM2-135M's held-out loss then rose 80% on
    AVX2 against 0.4% with VNNI. U8U8 never saturates and gave the same numbers on both (+0.56%);
    it decodes about 15% slower than U8S8 on a VNNI CPU. 7-bit weights (reduce_range), ONNX
    Runtime's other remedy, cost +2.1% everywhere. Figures: docs/export.md.

    The MLP down projections stay float: their inputs (gate * up) carry outlier activations
    (max |x| in the thousands on SmolLM2-135M against ~10 elsewhere) that one per-tensor int8
    scale cannot represent; quantizing them moved held-out loss by ~11% against ~0.4% without.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(source, load_external_data=False).graph
    keep_float = [node.name for node in graph.node
                  if node.op_type == "MatMul" and "/mlp/down_proj/" in node.name]
    # quantize_dynamic logs a hint to run shape-inference pre-processing on the root logger; our
    # figures (docs/export.md) were measured without it, so the hint is only noise for the CLI.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QUInt8, per_channel=True, reduce_range=False,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=keep_float)
    finally:
        root.setLevel(level)
    return {"weights": "uint8, per output channel", "activations": "uint8, per tensor at run time",
            "matmuls_kept_float": len(keep_float)}


def export_onnx(model, out_dir: Path, *, quantize: str | None = None,
                prompts: Sequence[Sequence[int]], heldout: Sequence[TokenizedExample],
                heldout_source: str = "built-in", max_new_tokens: int = 16,
                budget: QualityBudget | None = None, keep_anyway: bool = False,
                progress: ProgressCallback | None = None) -> dict:
    """Export `model` into `out_dir` (which must exist), verify it, optionally quantize it.

    Returns the verification report (also written to verification.json). Raises OnnxExportError
    with the report when the fp32 graph does not reproduce PyTorch, or when a quantized model misses
    its quality `budget` (never held to token equality: quantization changes numbers by design) and
    `keep_anyway` is false; kept anyway, the report's `warning` says what it missed.
    """
    from tinyforge.hardware import cpu

    say = progress or (lambda message: None)
    if quantize not in (None, "int8"):
        raise TinyforgeError(f"--quantize: unknown value {quantize!r} (supported: int8)")
    budget = budget or QualityBudget()
    check_architecture(model.config)
    say("tracing the model to ONNX")
    onnx_config = export_onnx_graph(model, out_dir / ONNX_MODEL_FILE)

    say("running the PyTorch reference")
    reference = torch_reference(model, prompts, heldout, max_new_tokens)
    say("verifying ONNX Runtime fp32 against PyTorch")
    (out_dir / ONNX_CONFIG_FILE).write_text(json.dumps(onnx_config, indent=2))
    fp32 = compare_with_reference(OnnxCausalLM(out_dir), reference, prompts, heldout,
                                  max_new_tokens)
    fp32["logits_atol"] = LOGITS_ATOL
    fp32["passed"] = (fp32["identical_generations"] == fp32["generations"]
                      and fp32["max_abs_logit_diff"] <= LOGITS_ATOL)
    here = cpu()
    report = {
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "heldout_texts": len(heldout),
        "heldout_source": heldout_source,
        # Integer kernels differ by instruction set: the numbers hold for this kind of CPU.
        "cpu": {"model": here.model, "flags": list(here.flags), "int8_dot_product": here.int8_dot_product},
        "fp32": fp32,
        "passed": fp32["passed"],
    }
    if not fp32["passed"]:
        raise OnnxExportError(
            "ONNX export failed verification: "
            f"{fp32['identical_generations']}/{fp32['generations']} greedy generations equal "
            f"PyTorch's, max |logit difference| {fp32['max_abs_logit_diff']:.3g} "
            f"(allowed {LOGITS_ATOL:g})",
            report,
        )

    if quantize == "int8":
        say("quantizing to int8")
        fp32_path = out_dir / "model.fp32.onnx"
        (out_dir / ONNX_MODEL_FILE).rename(fp32_path)
        settings = quantize_int8(fp32_path, out_dir / ONNX_MODEL_FILE)
        fp32_path.unlink()
        onnx_config["precision"] = "int8"
        (out_dir / ONNX_CONFIG_FILE).write_text(json.dumps(onnx_config, indent=2))
        say("measuring int8 against PyTorch fp32")
        int8 = compare_with_reference(OnnxCausalLM(out_dir), reference, prompts, heldout,
                                      max_new_tokens)
        int8["heldout_loss_change_vs_onnx_fp32"] = round(
            (int8["heldout_loss"] - fp32["heldout_loss"]) / fp32["heldout_loss"], 6)
        int8.update(settings)
        hold_to_budget(report, "int8", int8, budget, keep_anyway=keep_anyway, error=OnnxExportError, say=say,
                       problem=f"the int8 model misses its quality budget on this CPU ({here.model}, int8 kernels "
                               f"{here.int8_dot_product})",
                       advice="export it without quantization, or keep it anyway knowing its answers are worse")
    report["precision"] = onnx_config["precision"]
    (out_dir / VERIFICATION_FILE).write_text(json.dumps(report, indent=2))
    say("ONNX export verified")
    return report
