"""Standalone inference bundles: a model plus the server that runs it, without the platform.

Layout of a bundle folder:

    README.md            how to run and call it
    serve.py             entry point: checks the model files, then `tinyforge serve` on ./model
    bundle.json          model name, runtime, the model files with their sizes, versions
    requirements.txt     exact versions of what the serving code imports, as tested here
    Dockerfile  docker-compose.yml  .dockerignore
    app/tinyforge/       the serving code: a copy of this installation's tinyforge.serving and
                         tinyforge.ml, never the Django platform
    model/               merged Hugging Face weights (runtime torch) or a verified ONNX export
                         (runtime onnxruntime)

Why a copy of the source rather than a wheel of the tinyforge package: the wheel carries the
platform's dependencies (Django, psycopg, ...) that a bundle must not need, and a copy runs
from the folder as it is, with nothing to install but requirements.txt.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import shutil
import sys
from pathlib import Path
from string import Template
from typing import Any, Callable

import tinyforge
from tinyforge.errors import TinyforgeError
from tinyforge.ml.export import write_hf_folder, write_onnx_folder
from tinyforge.ml.quality_budget import QualityBudget

TEMPLATES = Path(__file__).resolve().parent / "templates" / "bundle"
BUNDLE_FORMAT_VERSION = 1

# Distributions the serving code imports (tinyforge.serving, and the parts of tinyforge.ml it
# loads: models, formatting, schema, onnx_model), pinned to the versions installed here.
SERVING_REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "numpy",
                        "jinja2", "pydantic", "starlette", "anyio", "uvicorn", "prometheus_client")
RUNTIME_REQUIREMENTS = {"torch": (), "onnxruntime": ("onnxruntime",)}
VENDORED_SUBPACKAGES = ("ml", "serving")


def pinned_requirements(runtime: str) -> list[str]:
    lines = []
    for name in (*SERVING_REQUIREMENTS, *RUNTIME_REQUIREMENTS[runtime]):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise TinyforgeError(f"cannot build a bundle: {name} is not installed here, and the bundle pins "
                                 "the versions it was tested with") from None
        # torch 2.13.0+cpu: the local label names a build, which the Dockerfile picks by index.
        lines.append(f"{name}=={version.split('+')[0]}")
    return lines


def vendor_serving_code(app_dir: Path) -> None:
    """Copy tinyforge's pure-Python serving layers (not the Django platform) into app_dir."""
    package = Path(tinyforge.__file__).resolve().parent
    target = app_dir / "tinyforge"
    target.mkdir(parents=True)
    for name in ("__init__.py", "errors.py", "hardware.py"):
        shutil.copy2(package / name, target / name)
    for sub in VENDORED_SUBPACKAGES:
        shutil.copytree(package / sub, target / sub,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "templates"))


def _model_description(runtime: str, verification: dict[str, Any] | None) -> str:
    if runtime == "torch":
        return "Hugging Face safetensors, adapter merged, run by PyTorch"
    precision = (verification or {}).get("precision", "fp32")
    return f"ONNX {precision}, verified against PyTorch, run by ONNX Runtime"


def _verification_section(verification: dict[str, Any] | None) -> str:
    if not verification:
        return ""
    fp32 = verification["fp32"]
    text = (f"\n## Verification\n\nThe ONNX model was checked against PyTorch when it was exported: "
            f"{fp32['identical_generations']}/{fp32['generations']} greedy generations identical, max |logit "
            f"difference| {fp32['max_abs_logit_diff']:.2e}.")
    if verification.get("warning"):
        text = (f"\n## WARNING\n\n**{verification['warning']}.** Its answers are measurably worse than the "
                f"trained model's; use it only if you accept that.\n{text}")
    int8 = verification.get("int8")
    if int8:
        text += (f" int8: held-out loss {100 * int8['heldout_loss_change_vs_onnx_fp32']:+.2f}% against fp32, "
                 f"{100 * int8['token_agreement']:.1f}% of generated tokens agree with PyTorch.")
    return text + " `model/verification.json` has every number.\n"


def write_bundle(model_dir: Path, folder: Path, *, runtime: str, quantize: str | None,
                 heldout_data: str | os.PathLike | None, progress: Callable[[str], None],
                 budget: QualityBudget | None = None, keep_anyway: bool = False) -> dict[str, Any] | None:
    """Fill `folder` with a bundle of `model_dir`; return the ONNX verification report, if any."""
    name = folder.name.removesuffix(".partial")
    model_folder = folder / "model"
    model_folder.mkdir()
    verification = None
    if runtime == "torch":
        write_hf_folder(model_dir, model_folder, merge=True, progress=progress)
    else:
        verification = write_onnx_folder(model_dir, model_folder, quantize=quantize, heldout_data=heldout_data,
                                         budget=budget, keep_anyway=keep_anyway, progress=progress)
    progress("adding the serving code")
    vendor_serving_code(folder / "app")
    requirements = pinned_requirements(runtime)
    (folder / "requirements.txt").write_text(
        "# Exact versions this bundle was built and tested with (see README.md for torch's CPU index).\n"
        + "\n".join(requirements) + "\n")
    manifest = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "model_name": name,
        "runtime": runtime,
        "precision": (verification or {}).get("precision", "fp32"),
        "model_files": {str(p.relative_to(model_folder)): p.stat().st_size
                        for p in sorted(model_folder.rglob("*")) if p.is_file()},
        "tinyforge_version": tinyforge.__version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (folder / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    values = {
        "name": name,
        "runtime": {"torch": "PyTorch", "onnxruntime": "ONNX Runtime"}[runtime],
        "model_description": _model_description(runtime, verification),
        "python_version": manifest["python"],
        "tinyforge_version": tinyforge.__version__,
        "created": manifest["created"],
        "torch_requirement": next(r for r in requirements if r.startswith("torch==")),
        "verification": _verification_section(verification),
    }
    for template, target in (("README.md", "README.md"), ("Dockerfile", "Dockerfile"),
                             ("docker-compose.yml", "docker-compose.yml")):
        (folder / target).write_text(Template((TEMPLATES / template).read_text()).substitute(values))
    shutil.copy2(TEMPLATES / "dockerignore", folder / ".dockerignore")
    shutil.copy2(TEMPLATES / "serve.py", folder / "serve.py")
    return verification
