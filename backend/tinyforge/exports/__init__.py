"""Exports of a model folder: a Hugging Face folder, a verified ONNX model, a GGUF verified in
llama.cpp (with an Ollama Modelfile), a standalone bundle.

`export_model(model_dir, format, out)` is the one entry point (the CLI's `tinyforge export` and
the platform's export job both call it). `out` ending in `.zip` gets a zip archive holding one
top-level folder named after it (what the dashboard offers for download); any other `out` gets a
folder. Either is written beside its final name and renamed into place, so a crash, a failed
verification or a full disk never leaves something that looks like a finished export.

- hf: tinyforge.ml.export.write_hf_folder (an adapter as it is, or merged; or full weights).
- onnx: tinyforge.ml.export.write_onnx_folder (verified against PyTorch, optionally int8).
- gguf: tinyforge.ml.export.write_gguf_folder (f16, or q8_0 / q4_k_m within a quality budget).
- gguf_lora: tinyforge.ml.export.write_gguf_lora_folder (a LoRA adapter for llama.cpp's --lora).
- bundle: the model (HF, ONNX, or a GGUF for llama.cpp) plus the serving code, pinned requirements, a
  Dockerfile and a compose file: it runs without the platform (tinyforge.exports.bundle).

This package sits above the engine (tinyforge.ml) and the inference server (tinyforge.serving):
a bundle carries both, so neither of them knows about bundles. Pure Python, no Django.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tinyforge.errors import TinyforgeError
from tinyforge.exports.bundle import write_bundle
from tinyforge.ml.artifacts import _is_disk_full, write_atomically
from tinyforge.ml.export import (is_adapter_folder, write_gguf_folder, write_gguf_lora_folder, write_hf_folder,
                                 write_onnx_folder)
from tinyforge.ml.quality_budget import QualityBudget

FORMATS = ("hf", "onnx", "gguf", "gguf_lora", "bundle")
ONNX_QUANTIZATIONS = ("int8",)
GGUF_QUANTIZATIONS = ("q8_0", "q4_k_m")  # without one, a GGUF is f16
QUANTIZATIONS = ONNX_QUANTIZATIONS + GGUF_QUANTIZATIONS
BUNDLE_RUNTIMES = ("torch", "onnxruntime", "llama.cpp")
# What --quantize means inside a bundle, by runtime: its model's precision, or None where none applies.
BUNDLE_QUANTIZATIONS = {"torch": (), "onnxruntime": ONNX_QUANTIZATIONS, "llama.cpp": GGUF_QUANTIZATIONS}

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
    verification: dict[str, Any] | None = None  # onnx, gguf (and ONNX and llama.cpp bundles) only
    files: list[str] = field(default_factory=list)

    @property
    def warning(self) -> str | None:
        """Set when a quantized model missed its quality budget and was kept anyway."""
        return (self.verification or {}).get("warning")


def export_model(model_dir: str | os.PathLike, format: str, out: str | os.PathLike, *,
                 merge: bool = False, quantize: str | None = None, runtime: str | None = None,
                 heldout_data: str | os.PathLike | None = None, budget: QualityBudget | None = None,
                 keep_anyway: bool = False, progress: ProgressCallback | None = None) -> ExportResult:
    """Export `model_dir` (a model folder written by training) as `format` into `out`.

    Raises TinyforgeError for bad input, VerificationFailed (with the numbers) when an ONNX or GGUF
    export fails verification or a quantized one misses its quality `budget` (unless `keep_anyway`:
    then the result's `warning` says so). `heldout_data` (JSONL rows) feeds the held-out loss of
    ONNX and GGUF exports; without it a few built-in texts are used and the report says so.
    """
    model_dir = Path(model_dir)
    out = Path(out)
    say = progress or (lambda message: None)
    if format not in FORMATS:
        raise TinyforgeError(f"--format: unknown export format {format!r} (choose from {', '.join(FORMATS)})")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise TinyforgeError(f"--quantize: unknown value {quantize!r} (supported: {', '.join(QUANTIZATIONS)})")
    if quantize and format == "hf":
        raise TinyforgeError(f"--quantize {quantize} applies to ONNX exports (int8), GGUF exports "
                             f"({', '.join(GGUF_QUANTIZATIONS)}) and bundles; a Hugging Face export keeps the "
                             "trained weights")
    if quantize and format == "gguf_lora":
        raise TinyforgeError("--quantize does not apply to --format gguf_lora: the adapter is f16, and it runs "
                             "on a base GGUF of any precision")
    if quantize in GGUF_QUANTIZATIONS and format not in ("gguf", "bundle"):
        raise TinyforgeError(f"--quantize {quantize} applies to GGUF exports (--format gguf) and llama.cpp bundles "
                             "(--format bundle --runtime llama.cpp)")
    if quantize in ONNX_QUANTIZATIONS and format == "gguf":
        raise TinyforgeError(f"--quantize {quantize} applies to ONNX exports; a GGUF takes "
                             f"{' or '.join(GGUF_QUANTIZATIONS)} (or nothing, for f16)")
    if keep_anyway and not quantize:
        raise TinyforgeError("--keep-anyway applies to quantized exports (--quantize): an fp32 ONNX or f16 GGUF "
                             "export that does not reproduce PyTorch is never kept")
    if format == "bundle":
        # Without --runtime, the quantization says which: int8 is an ONNX model, q8_0 and q4_k_m a GGUF.
        runtime = runtime or next((r for r, types in BUNDLE_QUANTIZATIONS.items() if quantize in types), "torch")
        if runtime not in BUNDLE_RUNTIMES:
            raise TinyforgeError(f"--runtime: unknown runtime {runtime!r} (choose from {', '.join(BUNDLE_RUNTIMES)})")
        if quantize in ONNX_QUANTIZATIONS and runtime != "onnxruntime":
            also = (f"; a llama.cpp bundle's GGUF is f16 (no --quantize), {' or '.join(GGUF_QUANTIZATIONS)}"
                    if runtime == "llama.cpp" else "")
            raise TinyforgeError(f"--quantize {quantize} needs --runtime onnxruntime (int8 is an ONNX model){also}")
        if quantize in GGUF_QUANTIZATIONS and runtime != "llama.cpp":
            raise TinyforgeError(f"--quantize {quantize} is a GGUF type: it needs --runtime llama.cpp (a {runtime} "
                                 "bundle does not run a GGUF)")
    elif runtime is not None:
        raise TinyforgeError("--runtime applies to bundles only (--format bundle)")
    if not model_dir.is_dir() or not ((model_dir / "config.json").is_file() or is_adapter_folder(model_dir)):
        raise TinyforgeError(f"--model: {model_dir} is not a model folder (no config.json or adapter_config.json)")
    if heldout_data is not None and not Path(heldout_data).is_file():
        raise TinyforgeError(f"--heldout: {heldout_data} is not a file")
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise TinyforgeError(f"--out: {out} is inside the model folder {model_dir}; choose another place")

    result = ExportResult(format=format, path=out, size_bytes=0, quantize=quantize, runtime=runtime,
                          merged=format not in ("hf", "gguf_lora") or merge or not is_adapter_folder(model_dir))

    def fill(folder: Path) -> None:
        if format == "hf":
            write_hf_folder(model_dir, folder, merge=merge, progress=say)
        elif format == "gguf":
            result.verification = write_gguf_folder(model_dir, folder, gguf_type=quantize or "f16",
                                                    heldout_data=heldout_data, budget=budget,
                                                    keep_anyway=keep_anyway, progress=say)
        elif format == "gguf_lora":
            result.verification = write_gguf_lora_folder(model_dir, folder, heldout_data=heldout_data, progress=say)
        elif format == "onnx":
            result.verification = write_onnx_folder(model_dir, folder, quantize=quantize,
                                                    heldout_data=heldout_data, budget=budget,
                                                    keep_anyway=keep_anyway, progress=say)
        else:
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
