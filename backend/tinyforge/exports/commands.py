"""`tinyforge export`: a model folder as a Hugging Face folder, a verified ONNX model, a GGUF or a
standalone bundle, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from tinyforge.exports import BUNDLE_RUNTIMES, FORMATS, GGUF_QUANTIZATIONS
from tinyforge.ml.quality_budget import QualityBudget


def register(subparsers) -> None:
    """Add `tinyforge export` to the `tinyforge` parser (imports nothing heavy)."""
    parser = subparsers.add_parser(
        "export", help="export a model folder as Hugging Face, ONNX, GGUF or a standalone bundle",
        description="Export a model folder written by `tinyforge train`. OUT ending in .zip gets a zip "
                    "archive, anything else a folder. ONNX exports are verified against PyTorch, GGUF "
                    "exports in llama.cpp against PyTorch.",
    )
    parser.add_argument("--model", required=True, type=Path, help="model folder (full weights or LoRA adapter)")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--out", required=True, type=Path, help="output folder, or a .zip file")
    parser.add_argument("--merge", action="store_true",
                        help="hf: merge a LoRA adapter into its base weights (ONNX, GGUF and bundles always merge; "
                             "gguf_lora writes the adapter alone)")
    parser.add_argument("--quantize", default=None, metavar="int8|" + "|".join(GGUF_QUANTIZATIONS),
                        help="ONNX (and bundles on onnxruntime): int8 (dynamic quantization); GGUF (and bundles on "
                             "llama.cpp): q8_0 or q4_k_m (default: f16)")
    parser.add_argument("--runtime", default=None, metavar="|".join(BUNDLE_RUNTIMES),
                        help="bundle only: the runtime inside (default: torch; onnxruntime with --quantize int8, "
                             "llama.cpp with --quantize q8_0 or q4_k_m; an f16 GGUF needs --runtime llama.cpp)")
    parser.add_argument("--heldout", type=Path, default=None,
                        help="JSONL rows for the held-out loss of ONNX and GGUF exports (default: built-in texts)")
    parser.add_argument("--max-loss-increase", type=float, default=None,
                        help="quality budget of --quantize: held-out loss may rise by this share of "
                             f"PyTorch fp32's (default: {QualityBudget.max_loss_increase}, i.e. 2%%; q4_k_m: "
                             f"{QualityBudget.default_max_loss_increase('q4_k_m')})")
    parser.add_argument("--min-token-agreement", type=float, default=QualityBudget.min_token_agreement,
                        help="quality budget of --quantize: share of greedily generated tokens that must agree "
                             "with PyTorch fp32 before the first divergence (default: %(default)s)")
    parser.add_argument("--keep-anyway", action="store_true",
                        help="keep a quantized model that misses its quality budget, with a loud warning in "
                             "its report, card and README (default: such an export fails)")
    parser.set_defaults(func=run_export)


def run_export(args) -> int:
    import sys

    from tinyforge.exports import export_model

    def progress(message: str) -> None:
        print(f"export: {message}", file=sys.stderr, flush=True)

    max_loss_increase = args.max_loss_increase
    if max_loss_increase is None:
        max_loss_increase = QualityBudget.default_max_loss_increase(args.quantize)
    budget = QualityBudget(max_loss_increase=max_loss_increase, min_token_agreement=args.min_token_agreement)
    result = export_model(args.model, args.format, args.out, merge=args.merge, quantize=args.quantize,
                          runtime=args.runtime, heldout_data=args.heldout, budget=budget,
                          keep_anyway=args.keep_anyway, progress=progress)
    summary = {"format": result.format, "path": str(result.path), "size_bytes": result.size_bytes,
               "merged": result.merged, "quantize": result.quantize, "runtime": result.runtime}
    if result.verification:
        summary["verification"] = result.verification
    print(json.dumps(summary, indent=2))
    if result.warning:
        print(f"\nexport: WARNING: {result.warning}\n", file=sys.stderr, flush=True)
    return 0
