"""Which precision serves a model on this machine, and why; int8's quality check at start-up.

`auto` takes what is fastest here and keeps the answers: bfloat16 weights where the CPU (or GPU)
multiplies them natively; on a CPU without, int8 weight matrices (tinyforge.serving.torch_runtime
._Int8Matrix) when the int8 kernels exist, else float16 weights (torch_runtime._HalfMatrix: F16C
and AVX2, every x86-64 CPU of the last decade), each only when the model keeps the quality budget;
float32 otherwise. A user's explicit choice is kept where the hardware can run it. int8 and float16
on the CPU are checked when the model loads, against float32 on the same inputs (greedy agreement
on the export's verification prompts, held-out loss on its built-in texts, the same budget as int8
exports: tinyforge.ml.quality_budget); a model that misses the budget is served in float32 (or the
native bfloat16) and the choice says so, with the numbers.

Other runtimes (ONNX Runtime, llama.cpp for GGUF models) report their own choice through the same
PrecisionChoice: the pool asks `runtime.precision_choice` whatever the runtime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from tinyforge.errors import TinyforgeError
from tinyforge.ml.quality_budget import QualityBudget

PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
QUALITY_NEW_TOKENS = 16  # greedy tokens per verification prompt, as the ONNX export's check


@dataclass(frozen=True)
class PrecisionChoice:
    requested: str  # what the user asked for: auto or a precision
    precision: str  # what serves: float32, bfloat16, float16, int8
    reason: str  # why, in words a user reads on the deployment
    fell_back: bool = False  # the wanted precision could not be used (missing kernels, quality budget)
    quality: dict | None = None  # int8's or float16's measured numbers against float32

    def to_dict(self) -> dict:
        return asdict(self)


def float_precision(device: str = "auto") -> str:
    """The fastest float precision on `device`: what measures a model itself, without int8's rounding
    (evaluations), and what int8 falls back to."""
    from tinyforge.hardware import native_bf16, pick_device

    return "bfloat16" if native_bf16(pick_device(device)) else "float32"


def choose_precision(requested: str, device: str) -> PrecisionChoice:
    """What the hardware allows, before loading. int8 chosen here is still subject to the quality
    check (load_torch_runtime). An explicit half precision the hardware lacks is left to the
    runtime, which refuses it naming the missing feature."""
    from tinyforge.hardware import cpu

    if requested not in PRECISIONS:
        raise TinyforgeError(f"precision {requested!r}: choose {', '.join(PRECISIONS)}")
    floating = float_precision(device)
    if device.startswith("cuda"):
        if requested == "int8":
            return PrecisionChoice(requested, floating, f"int8 matrices run on the CPU only; serving {floating} "
                                                        "on the GPU", fell_back=True)
        if requested == "auto":
            return PrecisionChoice(requested, floating, f"{floating}: what this GPU multiplies fastest")
        return PrecisionChoice(requested, requested, "chosen by the user")
    here = cpu()
    if requested == "auto":
        if floating == "bfloat16":
            native = ", ".join(f for f in ("avx512_bf16", "amx_bf16") if f in here.usable)
            return PrecisionChoice(requested, "bfloat16", f"this CPU multiplies bfloat16 natively ({native}): "
                                                          "half of float32's bytes per step at full speed")
        if here.int8_missing is None:
            return PrecisionChoice(requested, "int8", f"no native bfloat16 here ({here.bf16_missing}); int8 weight "
                                                      f"matrices ({here.int8_dot_product}) read a quarter of "
                                                      "float32's bytes per step")
        if here.fp16_missing is None:
            return PrecisionChoice(requested, "float16", f"no native bfloat16 ({here.bf16_missing}) and no int8 "
                                                         f"kernels ({here.int8_missing}) here; float16 weights: a "
                                                         "one-row step reads half of float32's bytes (F16C), "
                                                         "batches multiply float32 copies of the same values")
        return PrecisionChoice(requested, "float32", f"no native bfloat16 ({here.bf16_missing}), no int8 "
                                                     f"kernels ({here.int8_missing}) and no float16 kernels "
                                                     f"({here.fp16_missing}) here")
    if requested == "int8" and here.int8_missing:
        return PrecisionChoice(requested, "float32", f"int8 was asked for, but {here.int8_missing}; serving float32",
                               fell_back=True)
    return PrecisionChoice(requested, requested, "chosen by the user")


def load_torch_runtime(model, tokenizer, *, precision: str = "auto", budget: QualityBudget | None = None,
                       device: str = "auto", **options):
    """A TorchRuntime in the precision choose_precision picks, int8 and the CPU's float16 checked
    against the budget (float on a miss); the choice is on runtime.precision_choice."""
    from tinyforge.hardware import pick_device
    from tinyforge.serving.torch_runtime import TorchRuntime

    device = pick_device(device, "--device")
    choice = choose_precision(precision, device)
    runtime = TorchRuntime(model, device=device, dtype=choice.precision, **options)
    # Rounded weights are checked; float16 on a GPU is that GPU's native precision, as bfloat16 is.
    if choice.precision == "int8" or (choice.precision == "float16" and device == "cpu"):
        budget = budget or QualityBudget()
        numbers = quality_against_float32(model, tokenizer, runtime)
        summary = (f"greedy agreement with float32 {100 * numbers['token_agreement']:.1f}%, held-out loss "
                   f"{100 * numbers['heldout_loss_change']:+.2f}%")
        misses = budget.misses(numbers)
        if misses:
            runtime.close()
            floating = float_precision(device)
            runtime = TorchRuntime(model, device=device, dtype=floating, **options)
            choice = PrecisionChoice(choice.requested, floating, f"{choice.precision} missed the quality budget "
                                                                 f"({'; '.join(misses)}); serving {floating}",
                                     fell_back=True, quality=numbers)
        else:
            choice = replace(choice, reason=f"{choice.reason}; quality within budget: {summary}", quality=numbers)
    runtime.precision_choice = choice
    return runtime


def quality_against_float32(model, tokenizer, runtime) -> dict:
    """Greedy agreement with float32 and the held-out loss change of `runtime` (int8, float16), measured
    against a float32 TorchRuntime of the same model on the same inputs: the verification prompts
    and built-in held-out texts of the ONNX export's check (tinyforge.ml.onnx_export)."""
    import torch

    from tinyforge.ml.onnx_export import default_heldout, eos_token_ids, generation_agreement, verification_prompts
    from tinyforge.ml.onnx_model import mean_labelled_loss
    from tinyforge.serving.torch_runtime import TorchRuntime

    prompts = verification_prompts(tokenizer)
    heldout = default_heldout(tokenizer)
    eos = set(eos_token_ids(model))
    context = max([len(p) + QUALITY_NEW_TOKENS for p in prompts] + [len(e.input_ids) for e in heldout])
    candidate = runtime
    if context > runtime.max_context:
        # The served runtime keeps the context the user set (a deployment with --max-context 64 failed
        # to load here before); the check runs on the same weights and precision, sized for it.
        candidate = TorchRuntime(model, device=str(runtime.device), dtype=runtime.info.dtype, max_slots=1,
                                 max_context=context)
        if context > candidate.max_context:
            candidate.close()
            raise TinyforgeError(f"the {runtime.info.dtype} quality check needs {context} positions, "
                                 f"the model has {candidate.max_context}")
    reference = TorchRuntime(model, device=str(runtime.device), dtype="float32", max_slots=1, max_context=context)

    def measure(candidate):
        generations = [_greedy(candidate, prompt, eos) for prompt in prompts]
        logits = [candidate.sequence_logits(e.input_ids).to(torch.float64).numpy() for e in heldout]
        return generations, mean_labelled_loss(logits, heldout)

    try:
        want, want_loss = measure(reference)
    finally:
        reference.close()
    try:
        got, loss = measure(candidate)
    finally:
        if candidate is not runtime:
            candidate.close()
    return {**generation_agreement(want, got), "heldout_loss": round(loss, 6), "heldout_loss_float32": round(want_loss, 6),
            "heldout_loss_change": round((loss - want_loss) / want_loss, 6) if want_loss else 0.0}


def _greedy(runtime, prompt: list[int], eos: set[int]) -> list[int]:
    from tinyforge.serving.runtime import BASE_ADAPTER

    tokens = []
    logits = runtime.prefill(0, [list(prompt)], [BASE_ADAPTER])
    for step in range(QUALITY_NEW_TOKENS):
        token = int(logits[0].argmax())
        tokens.append(token)
        if token in eos or step == QUALITY_NEW_TOKENS - 1:
            break
        logits = runtime.decode([token], [len(prompt) + step], [BASE_ADAPTER])
    return tokens
