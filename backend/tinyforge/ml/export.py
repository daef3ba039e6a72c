"""Exports of a model folder: a Hugging Face folder, a verified ONNX model, a standalone bundle.

`export_model(model_dir, format, out)` is the one entry point (the CLI and the platform's export
job both call it). `out` ending in `.zip` gets a zip archive holding one top-level folder named
after it (what the dashboard offers for download); any other `out` gets a folder. Either is
written beside its final name and renamed into place, so a crash, a failed verification or a
full disk never leaves something that looks like a finished export.

- hf: a LoRA adapter as it is (or merged into its base with `merge=True`), or full weights, with
  tokenizer, chat template, generation config, tinyforge.json and a model card.
- onnx: merged weights traced to ONNX with the KV cache, verified against PyTorch, optionally
  int8 (tinyforge.ml.onnx_export).
- bundle: the model (HF or ONNX) plus the serving code, pinned requirements, a Dockerfile and a
  compose file: it runs without the platform (tinyforge.ml.bundle).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tinyforge import __version__
from tinyforge.errors import TinyforgeError
from tinyforge.ml.artifacts import INFO_FILE, _is_disk_full, write_atomically
from tinyforge.ml.quality_budget import QualityBudget

FORMATS = ("hf", "onnx", "bundle")
QUANTIZATIONS = ("int8",)
BUNDLE_RUNTIMES = ("torch", "onnxruntime")

# Weights are incompressible; deflating them only burns CPU.
STORED_SUFFIXES = (".safetensors", ".onnx", ".bin", ".gguf", ".data")

ProgressCallback = Callable[[str], None]


@dataclass
class ExportResult:
    format: str
    path: Path  # the folder or zip archive written
    size_bytes: int
    merged: bool
    quantize: str | None = None
    runtime: str | None = None  # bundles only
    verification: dict[str, Any] | None = None  # onnx (and ONNX bundles) only
    files: list[str] = field(default_factory=list)

    @property
    def warning(self) -> str | None:
        """Set when a quantized model missed its quality budget and was kept anyway."""
        return (self.verification or {}).get("warning")


def is_adapter_folder(model_dir: Path) -> bool:
    return (model_dir / "adapter_config.json").is_file()


def export_model(model_dir: str | os.PathLike, format: str, out: str | os.PathLike, *,
                 merge: bool = False, quantize: str | None = None, runtime: str | None = None,
                 heldout_data: str | os.PathLike | None = None, budget: QualityBudget | None = None,
                 keep_anyway: bool = False, progress: ProgressCallback | None = None) -> ExportResult:
    """Export `model_dir` (a model folder written by training) as `format` into `out`.

    Raises TinyforgeError for bad input, OnnxExportError (with the numbers) when an ONNX export
    fails verification or a quantized one misses its quality `budget` (unless `keep_anyway`: then
    the result's `warning` says so). `heldout_data` (JSONL rows) feeds the held-out loss of ONNX
    exports; without it a few built-in texts are used and the report says so.
    """
    model_dir = Path(model_dir)
    out = Path(out)
    say = progress or (lambda message: None)
    if format not in FORMATS:
        raise TinyforgeError(f"--format: unknown export format {format!r} (choose from {', '.join(FORMATS)})")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise TinyforgeError(f"--quantize: unknown value {quantize!r} (supported: {', '.join(QUANTIZATIONS)})")
    if quantize and format == "hf":
        raise TinyforgeError("--quantize int8 applies to ONNX exports (--format onnx, or a bundle with "
                             "--runtime onnxruntime); a Hugging Face export keeps the trained weights")
    if keep_anyway and not quantize:
        raise TinyforgeError("--keep-anyway applies to quantized exports (--quantize int8): an fp32 ONNX "
                             "export that does not reproduce PyTorch is never kept")
    if format == "bundle":
        runtime = runtime or ("onnxruntime" if quantize else "torch")
        if runtime not in BUNDLE_RUNTIMES:
            raise TinyforgeError(f"--runtime: unknown runtime {runtime!r} (choose from {', '.join(BUNDLE_RUNTIMES)})")
        if quantize and runtime != "onnxruntime":
            raise TinyforgeError("--quantize int8 needs --runtime onnxruntime (int8 is an ONNX model)")
    elif runtime is not None:
        raise TinyforgeError("--runtime applies to bundles only (--format bundle)")
    if not model_dir.is_dir() or not ((model_dir / "config.json").is_file() or is_adapter_folder(model_dir)):
        raise TinyforgeError(f"--model: {model_dir} is not a model folder (no config.json or adapter_config.json)")
    if heldout_data is not None and not Path(heldout_data).is_file():
        raise TinyforgeError(f"--heldout: {heldout_data} is not a file")
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise TinyforgeError(f"--out: {out} is inside the model folder {model_dir}; choose another place")

    result = ExportResult(format=format, path=out, size_bytes=0, quantize=quantize, runtime=runtime,
                          merged=format != "hf" or merge or not is_adapter_folder(model_dir))

    def fill(folder: Path) -> None:
        if format == "hf":
            write_hf_folder(model_dir, folder, merge=merge, progress=say)
        elif format == "onnx":
            result.verification = write_onnx_folder(model_dir, folder, quantize=quantize,
                                                    heldout_data=heldout_data, budget=budget,
                                                    keep_anyway=keep_anyway, progress=say)
        else:
            from tinyforge.ml.bundle import write_bundle

            result.verification = write_bundle(model_dir, folder, runtime=runtime, quantize=quantize,
                                               heldout_data=heldout_data, budget=budget,
                                               keep_anyway=keep_anyway, progress=say)
        result.files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    what = f"the {format} export"
    if out.suffix == ".zip":
        _write_zip(out, fill, what, say)
    else:
        write_atomically(out, fill, what)
    result.size_bytes = (out.stat().st_size if out.is_file()
                         else sum(p.stat().st_size for p in out.rglob("*") if p.is_file()))
    say(f"wrote {out} ({result.size_bytes / 1e6:.1f} MB)")
    return result


def _write_zip(out: Path, fill: Callable[[Path], None], what: str, say: ProgressCallback) -> None:
    """fill() a folder named after the archive, then zip it into `out` via a partial file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}-", dir=out.parent) as work:
        folder = write_atomically(Path(work) / out.stem, fill, what)
        say("writing the zip archive")
        partial = out.with_name(out.name + ".partial")
        try:
            with zipfile.ZipFile(partial, "w", allowZip64=True) as archive:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        stored = path.suffix in STORED_SUFFIXES
                        archive.write(path, Path(out.stem) / path.relative_to(folder),
                                      zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
            partial.replace(out)
        except BaseException as exc:
            partial.unlink(missing_ok=True)
            if _is_disk_full(exc):
                raise TinyforgeError(f"the disk filled up while writing {what} to {out}; "
                                     "the partial file was removed. Free some space and export again") from exc
            raise


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
                      merged: bool, verification: dict[str, Any] | None = None) -> None:
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


# --- command line -----------------------------------------------------------------------------


def add_export_command(subparsers) -> None:
    """`tinyforge export`: registered by tinyforge.ml.commands (imports nothing heavy)."""
    parser = subparsers.add_parser(
        "export", help="export a model folder as Hugging Face, ONNX or a standalone bundle",
        description="Export a model folder written by `tinyforge train`. OUT ending in .zip gets a zip "
                    "archive, anything else a folder. ONNX exports are verified against PyTorch.",
    )
    parser.add_argument("--model", required=True, type=Path, help="model folder (full weights or LoRA adapter)")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--out", required=True, type=Path, help="output folder, or a .zip file")
    parser.add_argument("--merge", action="store_true",
                        help="hf: merge a LoRA adapter into its base weights (ONNX and bundles always merge)")
    parser.add_argument("--quantize", default=None, metavar="int8", help="ONNX only: dynamic int8 quantization")
    parser.add_argument("--runtime", default=None, metavar="|".join(BUNDLE_RUNTIMES),
                        help="bundle only: the runtime inside (default: torch, or onnxruntime with --quantize)")
    parser.add_argument("--heldout", type=Path, default=None,
                        help="JSONL rows for the held-out loss of ONNX exports (default: built-in texts)")
    parser.add_argument("--max-loss-increase", type=float, default=QualityBudget.max_loss_increase,
                        help="quality budget of --quantize: held-out loss may rise by this share of "
                             "PyTorch fp32's (default: %(default)s, i.e. 2%%)")
    parser.add_argument("--min-token-agreement", type=float, default=QualityBudget.min_token_agreement,
                        help="quality budget of --quantize: share of greedily generated tokens that must agree "
                             "with PyTorch fp32 before the first divergence (default: %(default)s)")
    parser.add_argument("--keep-anyway", action="store_true",
                        help="keep a quantized model that misses its quality budget, with a loud warning in "
                             "its report, card and README (default: such an export fails)")
    parser.set_defaults(func=run_export)


def run_export(args) -> int:
    import sys

    def progress(message: str) -> None:
        print(f"export: {message}", file=sys.stderr, flush=True)

    budget = QualityBudget(max_loss_increase=args.max_loss_increase, min_token_agreement=args.min_token_agreement)
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
