"""Serving runtimes after export: ONNX Runtime fp32 and int8 against the PyTorch runtime.

Same model (SmolLM2-135M-Instruct from the offline preset), same prompts, same machine, one
run. Each runtime runs in its own subprocess behind the serving Runtime interface (the one the
inference engine batches through), so its resident memory is its own:

  torch-fp32   tinyforge.serving.torch_runtime.TorchRuntime on the safetensors folder
  ort-fp32     tinyforge.serving.onnx_runtime.OnnxRuntime on the verified ONNX export
  ort-int8     the same on the int8 export (dynamic quantization)

Reported: single-stream decode tokens/s (one request, greedy, after its prefill), aggregate
decode tokens/s with 8 requests decoding together in one batch (what 8 concurrent clients
get from the engine), resident memory after loading and after decoding, and, from the exports'
own verification reports, held-out loss and greedy-generation agreement against PyTorch.
Floor: ort-int8 >= 1.5x torch-fp32 single-stream decode, with held-out loss within 2% of fp32.

    .venv/bin/python bench/export_runtime.py                # exports are cached in --work
    .venv/bin/python bench/export_runtime.py --steps 32     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "backend")]

SPEED_FLOOR, LOSS_CEILING = 1.5, 0.02
PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a database index is.",
    "List three tips for writing clear e-mails.",
    "How do I reset my password?",
    "Summarise the plot of Romeo and Juliet.",
    "What are the benefits of regular exercise?",
    "Describe how a bicycle works.",
]


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def measure(runtime_name: str, folder: str, steps: int, repeats: int, threads: int) -> dict:
    """In the child process: load one runtime, decode single-stream and batch-of-8."""
    import torch
    from transformers import AutoTokenizer

    from tinyforge.serving.runtime import BASE_ADAPTER

    torch.set_num_threads(threads)
    started = rss_mb()
    if runtime_name == "torch-fp32":
        from tinyforge.serving.torch_runtime import TorchRuntime

        runtime = TorchRuntime.from_folder(folder, max_slots=8, max_context=512, device="cpu", dtype="float32")
    else:
        from tinyforge.serving.onnx_runtime import OnnxRuntime

        runtime = OnnxRuntime.from_folder(folder, max_slots=8, max_context=512, intra_op_threads=threads)
    loaded = rss_mb()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                             tokenize=False) for p in PROMPTS]
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

    def decode(rows: int) -> tuple[float, list[list[int]]]:
        batch = prompts[:rows]
        logits = runtime.prefill(0, batch, [BASE_ADAPTER] * rows)
        positions = [len(p) for p in batch]
        generated = [[] for _ in batch]
        started = time.perf_counter()
        for _ in range(steps):
            tokens = logits.argmax(-1).tolist()
            for row, token in enumerate(tokens):
                generated[row].append(token)
            logits = runtime.decode(tokens, positions, [BASE_ADAPTER] * rows)
            positions = [p + 1 for p in positions]
        return rows * steps / (time.perf_counter() - started), generated

    single = max(decode(1)[0] for _ in range(repeats))
    batched, generated = max((decode(8) for _ in range(repeats)), key=lambda r: r[0])
    return {
        "single_stream_tok_s": round(single, 2),
        "batch8_tok_s": round(batched, 2),
        "rss_loaded_mb": round(loaded - started, 1),
        "rss_peak_mb": round(rss_mb(), 1),
        "weights_mb": round(runtime.info.weights_bytes / 1e6, 1),
        "first_generation": generated[0][:16],
    }


def ensure_exports(work: Path) -> tuple[Path, dict, Path, dict]:
    from tinyforge.exports import export_model
    from tinyforge.ml.models import resolve_base_model

    base = resolve_base_model("smollm2-135m-instruct")
    exports = {}
    for name, quantize in (("onnx-fp32", None), ("onnx-int8", "int8")):
        folder = work / name
        if not (folder / "verification.json").is_file():
            print(f"exporting {name} (traced, verified against PyTorch)...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            export_model(base, "onnx", folder, quantize=quantize)
            print(f"  {time.perf_counter() - started:.0f} s", file=sys.stderr)
        exports[name] = (folder, json.loads((folder / "verification.json").read_text()))
    return base, exports["onnx-fp32"], exports["onnx-int8"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=64, help="decode steps per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per child process (best is kept)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="child processes per runtime, interleaved across runtimes so that a burst of "
                             "load from elsewhere hits all of them alike (best is kept)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per runtime (1: comparable on a shared machine; raise it on a quiet one)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "tinyforge" / "bench-export",
                        help="where the ONNX exports are written (and reused by later runs)")
    parser.add_argument("--child", nargs=2, metavar=("RUNTIME", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.steps, args.repeats, args.threads)))
        return 0

    from tinyforge.hardware import machine_summary

    print(machine_summary(), flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    base, (fp32_dir, fp32_report), (int8_dir, int8_report) = ensure_exports(args.work)
    results: dict[str, dict] = {}
    for round_number in range(args.rounds):
        for name, folder in (("torch-fp32", base), ("ort-fp32", fp32_dir), ("ort-int8", int8_dir)):
            print(f"round {round_number + 1}: measuring {name}...", file=sys.stderr, flush=True)
            child = subprocess.run([sys.executable, __file__, "--child", name, str(folder), "--steps", str(args.steps),
                                    "--repeats", str(args.repeats), "--threads", str(args.threads)],
                                   capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "backend")})
            if child.returncode:
                print(child.stderr[-3000:], file=sys.stderr)
                return 1
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            best = results.setdefault(name, measured)
            for key in ("single_stream_tok_s", "batch8_tok_s"):
                best[key] = max(best[key], measured[key])

    fp32, int8 = fp32_report["fp32"], int8_report["int8"]
    torch_single = results["torch-fp32"]["single_stream_tok_s"]
    torch_batch = results["torch-fp32"]["batch8_tok_s"]
    print(f"\nSmolLM2-135M-Instruct, {args.steps} greedy decode steps, best of {args.rounds} x {args.repeats}, "
          f"{args.threads} thread(s) per runtime, {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| runtime | single-stream tok/s | vs torch | batch-of-8 tok/s | vs torch | weights MB | RSS after load MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['single_stream_tok_s']:.1f} | {r['single_stream_tok_s'] / torch_single:.2f}x | "
              f"{r['batch8_tok_s']:.1f} | {r['batch8_tok_s'] / torch_batch:.2f}x | {r['weights_mb']:.0f} | "
              f"{r['rss_loaded_mb']:.0f} |")
    print("\nQuality against PyTorch fp32 (the exports' verification reports; "
          f"{fp32_report['prompts']} prompts x {fp32_report['max_new_tokens']} tokens, held-out: "
          f"{fp32_report['heldout_source']}):\n")
    print("| model | held-out loss | change vs torch fp32 | identical greedy generations | token agreement | max abs logit diff |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| torch-fp32 | {fp32['heldout_loss_pytorch']:.4f} | - | - | - | - |")
    for name, q in (("ort-fp32", fp32), ("ort-int8", int8)):
        print(f"| {name} | {q['heldout_loss']:.4f} | {100 * q['heldout_loss_change']:+.2f}% | "
              f"{q['identical_generations']}/{q['generations']} | {100 * q['token_agreement']:.1f}% | "
              f"{q['max_abs_logit_diff']:.2e} |")
    speedup = results["ort-int8"]["single_stream_tok_s"] / torch_single
    loss_change = abs(int8["heldout_loss_change"])
    print(f"\nfloor: ort-int8 single-stream {speedup:.2f}x torch-fp32 (>= {SPEED_FLOOR}x: "
          f"{'met' if speedup >= SPEED_FLOOR else 'NOT met'}); held-out loss change {100 * loss_change:.2f}% "
          f"(<= {100 * LOSS_CEILING:.0f}%: {'met' if loss_change <= LOSS_CEILING else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
