"""Skip markers for tests that need a CPU feature, from the product's own probe (tinyforge.hardware),
or a tool that CI installs (llama.cpp, Go).

A test that needs a feature skips with the reason when it is absent; its counterpart that covers the
fallback runs there instead. tests/test_hardware.py runs those tests again with the instruction set
capped at AVX2, so a machine with the feature exercises both paths.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tinyforge.hardware import cpu

needs_native_bf16 = pytest.mark.skipif(
    not cpu().native_bf16, reason=f"needs native bfloat16: {cpu().bf16_missing}")
without_native_bf16 = pytest.mark.skipif(
    cpu().native_bf16, reason="covers CPUs without native bfloat16; this one has it (tests/test_hardware.py "
                              "runs it again with the instruction set capped at AVX2)")


def _llama_cpp_missing() -> str | None:
    from tinyforge.llama_cpp import LlamaCppMissing, converter_script, find_tool

    try:
        converter_script()
        find_tool("llama-server")
        find_tool("llama-quantize")
    except LlamaCppMissing as exc:
        return str(exc)
    return None


# CI builds llama.cpp and installs Go before the tests (.ci/run), so there a missing one fails the
# test that needs it; elsewhere the test skips and says what to install.
IN_CI = bool(os.environ.get("CI"))
needs_llama_cpp = pytest.mark.skipif(
    not IN_CI and _llama_cpp_missing() is not None, reason=f"needs llama.cpp: {_llama_cpp_missing()}")
needs_go = pytest.mark.skipif(
    not IN_CI and shutil.which("go") is None,
    reason="needs Go (apt-get install golang-go) to render Ollama templates with Go's own text/template")


def require_llama_cpp() -> None:
    """needs_llama_cpp for a fixture (a parametrised runtime): skip where llama.cpp is missing, except in
    CI, where the test goes on and fails on LlamaCppMissing."""
    missing = _llama_cpp_missing()
    if missing is not None and not IN_CI:
        pytest.skip(f"needs llama.cpp: {missing}")
