"""The capability probe (tinyforge.hardware), and the AVX2 path run on whatever CPU runs the suite."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from tinyforge.cli import main
from tinyforge.hardware import CpuCapabilities, cpu, pick_device

ROOT = Path(__file__).resolve().parents[1]
# oneDNN's and ATen's own caps: PyTorch then behaves as on an AVX2-only CPU. ONNX Runtime has no such
# cap: tests/ml/test_export.py runs it under an emulated AVX2 CPU (qemu-user) instead.
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
CAPPED = os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2"
# What depends on the instruction set: the torch runtime's dtypes, int8 and prepacked matrices, training
# precision, the fp32 ONNX export checked against PyTorch's (AVX2) kernels, and this probe.
AVX2_TESTS = [
    "tests/test_hardware.py",
    "tests/serving/test_torch_runtime.py",
    "tests/serving/test_precision.py",
    "tests/ml/test_train.py::test_auto_precision_is_bf16_only_where_the_cpu_multiplies_it_natively",
    "tests/ml/test_train.py::test_precision_bf16_without_native_support_names_what_the_cpu_lacks",
    "tests/ml/test_train.py::test_one_process_can_train_runs_with_different_precisions",
    "tests/ml/test_export.py::test_onnx_export_generates_token_for_token_what_pytorch_generates",
    "tests/training/test_runs_api.py::test_it_refuses_bf16_on_a_cpu_without_it_naming_the_missing_feature",
]
# Must pass, not skip, under the cap: the fallbacks themselves.
FALLBACK_TESTS = {
    "test_explicit_bfloat16_without_native_support_names_what_the_cpu_lacks",
    "test_precision_bf16_without_native_support_names_what_the_cpu_lacks",
    "test_auto_takes_bfloat16_only_where_the_cpu_has_it_natively",
    "test_prepacked_cpu_matrices_compute_what_row_major_ones_do[float32]",
    "test_the_probe_answers_as_the_capped_cpu",
    "test_onnx_export_generates_token_for_token_what_pytorch_generates",
    "test_it_refuses_bf16_on_a_cpu_without_it_naming_the_missing_feature",
    "test_the_cli_refuses_bfloat16_naming_what_the_cpu_lacks",
    # int8 without VNNI: 7-bit weights, gate/up in float (serving.torch_runtime._Int8Matrix).
    "test_int8_matrices_follow_float32_and_a_rows_answer_does_not_depend_on_its_batch",
    "test_a_batch_whose_rows_use_different_adapters_and_precisions",
    "test_a_cpu_without_the_int8_kernels_gets_float_and_says_why",
    # float16 weights: what auto serves on an AVX2-only CPU (serving.torch_runtime._HalfMatrix).
    "test_float16_weights_one_row_and_batches_compute_the_same_product",
    "test_auto_on_an_avx2_cpu_serves_float16_when_the_model_keeps_the_budget",
}


def probe(flags, usable=None, cap=None, capability="AVX512", onednn_bf16=True) -> CpuCapabilities:
    return CpuCapabilities(model="Test CPU", flags=tuple(flags), usable=tuple(flags if usable is None else usable),
                           onednn_max_isa=cap, torch_capability=capability, onednn_bf16=onednn_bf16)


def test_native_bf16_needs_the_instructions_and_no_cap_below_them():
    avx512 = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"]
    assert probe(avx512 + ["avx512_bf16"]).native_bf16
    assert probe(avx512 + ["amx_tile", "amx_bf16"]).native_bf16
    assert "no bfloat16 matrix instructions (AVX512-BF16 or AMX-BF16)" in probe(avx512).bf16_missing
    assert "Test CPU" in probe(["avx2", "fma"], onednn_bf16=False).bf16_missing
    capped = probe(avx512 + ["avx512_bf16"], usable=["avx2", "fma"], cap="AVX2", capability="AVX2")
    assert capped.bf16_missing == "oneDNN is capped below AVX512-BF16 (ONEDNN_MAX_CPU_ISA=AVX2)"
    assert "ATEN_CPU_CAPABILITY" in probe(avx512 + ["avx512_bf16"], capability="AVX2").bf16_missing


def test_float16_weights_need_f16c_and_avx2_not_avx512_fp16():
    assert probe(["f16c", "avx2", "fma"], capability="AVX2").fp16_missing is None
    assert "has no F16C and AVX2" in probe(["avx2", "fma"]).fp16_missing
    assert "has no F16C and AVX2" in probe(["f16c"], capability="DEFAULT").fp16_missing
    assert probe(["f16c", "avx2"], capability="DEFAULT").fp16_missing == (
        "PyTorch's kernels are capped below AVX2 (ATEN_CPU_CAPABILITY=default)")


def test_int8_dot_products_are_named_by_the_best_instructions_present():
    assert probe(["avx2", "fma"]).int8_dot_product == "AVX2 (no VNNI)"
    assert probe(["avx2", "avx_vnni"]).int8_dot_product == "AVX-VNNI"
    assert probe(["avx2", "avx512f", "avx512_vnni"]).int8_dot_product == "AVX512-VNNI"
    assert probe(["avx2", "avx512_vnni", "amx_int8"]).int8_dot_product == "AMX"


def test_the_probe_agrees_with_what_pytorch_dispatches_to():
    here = cpu()
    assert here.torch_capability == torch.backends.cpu.get_cpu_capability()
    assert here.model and here.model in here.summary()
    if here.native_bf16:
        assert torch.ops.mkldnn._is_mkldnn_bf16_supported()
        assert set(here.usable) & {"avx512_bf16", "amx_bf16"}


@pytest.mark.skipif(not CAPPED, reason="runs in the AVX2-capped run (test_the_avx2_path_passes_on_this_cpu_too)")
def test_the_probe_answers_as_the_capped_cpu():
    here = cpu()
    assert here.onednn_max_isa == "AVX2" and here.torch_capability == "AVX2"
    assert not {"avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"} & set(here.usable)
    assert not here.native_bf16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported()


def test_a_missing_cuda_device_is_named():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert pick_device("auto") == "cpu"
    with pytest.raises(Exception, match="--device cuda:1: no CUDA device is available"):
        pick_device("cuda:1", "--device")


@pytest.mark.skipif(cpu().native_bf16, reason="covers CPUs without native bfloat16; the AVX2-capped run covers it here")
def test_the_cli_refuses_bfloat16_naming_what_the_cpu_lacks(tiny_model_dir, capsys, tmp_path):
    assert main(["serve", "--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "bfloat16"]) == 2
    err = capsys.readouterr().err
    assert "--dtype bfloat16: bfloat16 needs native support on cpu" in err and "Traceback" not in err


@pytest.mark.skipif(CAPPED or not set(cpu().usable) - {"avx2", "fma"},
                    reason="this run is the AVX2 path already (capped, or an AVX2-only CPU)")
def test_the_avx2_path_passes_on_this_cpu_too(tmp_path):
    report = tmp_path / "avx2.xml"
    # Its own SQLite and embedded Redis: the suite's PostgreSQL test database and queues stay this run's.
    env = {**{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}, **AVX2_ONLY}
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0", f"--junitxml={report}",
         *AVX2_TESTS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    passed = {case.get("name") for case in ET.parse(report).iter("testcase")
              if not any(child.tag in ("skipped", "failure", "error") for child in case)}
    assert FALLBACK_TESTS <= passed, sorted(FALLBACK_TESTS - passed)
