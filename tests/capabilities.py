"""Skip markers for tests that need a CPU feature, from the product's own probe (tinyforge.hardware).

A test that needs a feature skips with the reason when it is absent; its counterpart that covers the
fallback runs there instead. tests/test_hardware.py runs those tests again with the instruction set
capped at AVX2, so a machine with the feature exercises both paths.
"""

from __future__ import annotations

import pytest

from tinyforge.hardware import cpu

needs_native_bf16 = pytest.mark.skipif(
    not cpu().native_bf16, reason=f"needs native bfloat16: {cpu().bf16_missing}")
without_native_bf16 = pytest.mark.skipif(
    cpu().native_bf16, reason="covers CPUs without native bfloat16; this one has it (tests/test_hardware.py "
                              "runs it again with the instruction set capped at AVX2)")
