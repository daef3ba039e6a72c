"""The ONNX Runtime runtime gives the PyTorch runtime's logits through the same slot interface."""

from __future__ import annotations

import pytest
import torch

from tinyforge.exports import export_model
from tinyforge.serving.onnx_runtime import OnnxRuntime
from tinyforge.serving.runtime import BASE_ADAPTER, AdapterNotShareable
from tinyforge.serving.torch_runtime import TorchRuntime

ATOL = 1e-4


@pytest.fixture(scope="module")
def runtimes(tiny_model_dir, tmp_path_factory):
    onnx_dir = export_model(tiny_model_dir, "onnx", tmp_path_factory.mktemp("ort") / "onnx").path
    return (TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64),
            OnnxRuntime.from_folder(onnx_dir, max_slots=4, max_context=64))


def test_prefill_and_decode_at_different_positions_match_pytorch(runtimes):
    reference, onnx = runtimes
    prompts = [[5, 17, 40, 9, 3], [8, 2], [30, 31, 32, 33, 34, 35, 36]]
    base = [BASE_ADAPTER] * len(prompts)
    expected, got = reference.prefill(0, prompts, base), onnx.prefill(0, prompts, base)
    assert torch.allclose(got, expected, atol=ATOL)
    positions = [len(p) for p in prompts]
    for _ in range(5):
        tokens = expected.argmax(-1).tolist()
        assert got.argmax(-1).tolist() == tokens
        expected = reference.decode(tokens, positions, base)
        got = onnx.decode(tokens, positions, base)
        assert torch.allclose(got, expected, atol=ATOL)
        positions = [p + 1 for p in positions]


def test_a_request_moved_into_a_freed_slot_continues_where_it_was(runtimes):
    reference, onnx = runtimes
    prompts = [[1, 2, 3], [4, 5, 6, 7]]
    for runtime in runtimes:
        runtime.prefill(0, prompts, [BASE_ADAPTER] * 2)
        runtime.move_slot(1, 0, 4)  # the first request finished; the second takes slot 0
    assert torch.allclose(onnx.decode([9], [4], [BASE_ADAPTER]), reference.decode([9], [4], [BASE_ADAPTER]), atol=ATOL)


def test_it_describes_itself_and_refuses_adapters(runtimes, tmp_path):
    _, onnx = runtimes
    assert onnx.info.name == "onnxruntime" and onnx.info.dtype == "float32"
    assert onnx.info.max_context == 64 and onnx.info.max_slots == 4 and onnx.info.weights_bytes > 0
    with pytest.raises(AdapterNotShareable, match="merged"):
        onnx.add_adapter(tmp_path)
