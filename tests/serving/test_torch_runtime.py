"""The PyTorch runtime computes what transformers (and PEFT, for adapters) compute."""

from __future__ import annotations

import pytest
import torch

from capabilities import needs_native_bf16, without_native_bf16
from serving.conftest import last_logits
from tinyforge.errors import TinyforgeError
from tinyforge.hardware import cpu
from tinyforge.serving.runtime import BASE_ADAPTER, AdapterNotShareable
from tinyforge.serving.torch_runtime import TorchRuntime

ATOL = 1e-5
PROMPTS = [[5, 17, 40, 9, 3, 11], [8, 2], [30, 31, 32, 33, 34, 35, 36, 37, 38]]


def test_it_matches_transformers_for_rows_at_different_positions(tiny_model_dir, reference):
    runtime = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype="float32")
    logits = runtime.prefill(0, PROMPTS, [BASE_ADAPTER] * 3)
    sequences = [list(p) for p in PROMPTS]
    for step in range(4):
        for row, ids in enumerate(sequences):
            assert torch.allclose(logits[row], last_logits(reference, ids), atol=ATOL), (step, row)
        tokens = logits.argmax(-1).tolist()
        positions = [len(ids) for ids in sequences]
        for ids, token in zip(sequences, tokens):
            ids.append(token)
        logits = runtime.decode(tokens, positions, [BASE_ADAPTER] * 3)


def test_a_row_moved_into_a_freed_slot_continues_where_it_was(tiny_model_dir, reference):
    runtime = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype="float32")
    runtime.prefill(0, PROMPTS, [BASE_ADAPTER] * 3)
    runtime.move_slot(2, 0, len(PROMPTS[2]))  # the first request finished; the last takes its slot
    logits = runtime.decode([7, 7], [len(PROMPTS[2]), len(PROMPTS[1])], [BASE_ADAPTER] * 2)
    assert torch.allclose(logits[0], last_logits(reference, PROMPTS[2] + [7]), atol=ATOL)
    assert torch.allclose(logits[1], last_logits(reference, PROMPTS[1] + [7]), atol=ATOL)


def test_adapters_apply_per_row_in_one_batch(tiny_model_dir, lora_adapter_dir, reference, peft_reference):
    runtime = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype="float32")
    adapter = runtime.add_adapter(lora_adapter_dir)
    rows = [adapter, BASE_ADAPTER, adapter]
    logits = runtime.prefill(0, PROMPTS, rows)
    tokens = [3, 4, 5]
    decoded = runtime.decode(tokens, [len(p) for p in PROMPTS], rows)
    for row, prompt in enumerate(PROMPTS):
        model = peft_reference if rows[row] == adapter else reference
        assert torch.allclose(logits[row], last_logits(model, prompt), atol=ATOL)
        assert torch.allclose(decoded[row], last_logits(model, prompt + [tokens[row]]), atol=ATOL)
    # The adapter really changes the answer (B is not zero).
    assert (last_logits(peft_reference, PROMPTS[0]) - last_logits(reference, PROMPTS[0])).abs().max() > 0.1
    # The adapter holds its own A and B in float32 and nothing more (no zero blocks for the
    # projections it shares a fused matrix with).
    from safetensors.torch import load_file

    lora_values = sum(t.numel() for t in load_file(str(lora_adapter_dir / "adapter_model.safetensors")).values())
    assert runtime.adapter_bytes(adapter) == 4 * lora_values < runtime.info.weights_bytes


@needs_native_bf16
def test_fused_adapters_change_no_base_row_and_the_ones_past_the_limit_still_apply(
        tiny_model_dir, lora_adapter_dir, second_lora_adapter_dir, monkeypatch):
    """With prepacked bfloat16 matrices, adapters' A matrices become rows of the base matrices (up
    to FUSED_ADAPTERS of them): a base row's logits stay bit for bit what the base alone gives,
    whatever shares its step; an adapter past the limit is multiplied on its own and takes a fused
    one's place when that one goes."""
    import tinyforge.serving.torch_runtime as torch_runtime

    dtype = "bfloat16"
    monkeypatch.setattr(torch_runtime, "FUSED_ADAPTERS", 1)
    alone = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype=dtype)
    if not alone.fuses_adapters:
        pytest.skip("bfloat16 matrices are not prepacked here (no oneDNN bfloat16 reorder)")
    shared = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype=dtype)
    unfused = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype=dtype)
    monkeypatch.setattr(torch_runtime, "FUSED_ADAPTERS", 0)
    expected = {path: unfused.add_adapter(path) for path in (lora_adapter_dir, second_lora_adapter_dir)}
    monkeypatch.setattr(torch_runtime, "FUSED_ADAPTERS", 1)
    first, second = shared.add_adapter(lora_adapter_dir), shared.add_adapter(second_lora_adapter_dir)
    sizes = {kind: getattr(alone.layers[0], kind).shape[0] for kind in ("qkv", "out", "gate_up", "down")}
    rank = 4  # make_lora_adapter's r, on every projection: qkv holds 3 of them, gate_up 2
    assert {kind: getattr(shared.layers[0], kind).shape[0] - sizes[kind] for kind in sizes} == {
        "qkv": 3 * rank, "out": rank, "gate_up": 2 * rank, "down": rank}
    assert shared.adapters[first].fused and not shared.adapters[second].fused
    # A fused adapter's bytes: its A in the base matrices' dtype, its B in float32.
    from safetensors.torch import load_file

    tensors = load_file(str(lora_adapter_dir / "adapter_model.safetensors"))
    values = {part: sum(t.numel() for key, t in tensors.items() if f"lora_{part}" in key) for part in "AB"}
    assert shared.adapter_bytes(first) == values["A"] * alone.layers[0].qkv.element_size() + 4 * values["B"]
    tolerance = 0.05  # bfloat16's rounding of A and of x @ A

    def check(runtime, rows, adapters_expected):
        logits = runtime.prefill(0, PROMPTS, rows)
        base = alone.prefill(0, PROMPTS, [BASE_ADAPTER] * 3)
        decoded = runtime.decode([3, 4, 5], [len(p) for p in PROMPTS], rows)
        base_decoded = alone.decode([3, 4, 5], [len(p) for p in PROMPTS], [BASE_ADAPTER] * 3)
        reference = unfused.prefill(0, PROMPTS, adapters_expected)
        reference_decoded = unfused.decode([3, 4, 5], [len(p) for p in PROMPTS], adapters_expected)
        for row, adapter in enumerate(rows):
            if adapter == BASE_ADAPTER:
                assert torch.equal(logits[row], base[row]) and torch.equal(decoded[row], base_decoded[row])
            else:
                torch.testing.assert_close(logits[row], reference[row], rtol=0, atol=tolerance)
                torch.testing.assert_close(decoded[row], reference_decoded[row], rtol=0, atol=tolerance)
                assert (logits[row] - base[row]).abs().max() > 0.1  # the adapter does change the answer

    check(shared, [first, BASE_ADAPTER, second],
          [expected[lora_adapter_dir], BASE_ADAPTER, expected[second_lora_adapter_dir]])
    check(shared, [BASE_ADAPTER, first, BASE_ADAPTER], [BASE_ADAPTER, expected[lora_adapter_dir], BASE_ADAPTER])
    shared.remove_adapter(first)
    assert shared.adapters[second].fused
    assert {kind: getattr(shared.layers[0], kind).shape[0] - sizes[kind] for kind in sizes} == {
        "qkv": 2 * rank, "out": 0, "gate_up": 0, "down": 0}  # the second adapts q_proj and v_proj only
    check(shared, [second, BASE_ADAPTER, second],
          [expected[second_lora_adapter_dir], BASE_ADAPTER, expected[second_lora_adapter_dir]])
    shared.remove_adapter(second)
    assert {kind: getattr(shared.layers[0], kind).shape[0] for kind in sizes} == sizes


def test_it_refuses_adapters_it_cannot_share_and_architectures_it_does_not_know(tiny_model_dir, tmp_path):
    import json
    import shutil

    runtime = TorchRuntime.from_folder(tiny_model_dir, max_slots=2, max_context=32, dtype="float32")
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "use_dora": True}))
    with pytest.raises(AdapterNotShareable, match="DoRA"):
        runtime.add_adapter(tmp_path)
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(TinyforgeError, match="gpt2"):
        TorchRuntime(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)))
    shutil.rmtree(tmp_path)


@needs_native_bf16
def test_bfloat16_weights_keep_the_float32_choices(tiny_model_dir, reference):
    runtime = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype="bfloat16")
    # Half the float32 bytes, plus on the CPU a second copy of the (tied) output head in oneDNN's
    # layout: the row-major one serves the embedding lookup and the float32 refinement.
    head = reference.get_output_embeddings().weight.nbytes // 2 if runtime.prepacked else 0
    assert runtime.info.dtype == "bfloat16" and runtime.info.weights_bytes - head < 0.6 * sum(
        p.nbytes for p in reference.parameters())
    logits = runtime.prefill(0, PROMPTS, [BASE_ADAPTER] * 3)
    for row, prompt in enumerate(PROMPTS):
        expected = last_logits(reference, prompt)
        assert (logits[row] - expected).abs().max() < 0.05
        assert logits[row].argmax() == expected.argmax()


@pytest.mark.parametrize("dtype", ["float32", pytest.param("bfloat16", marks=needs_native_bf16)])
def test_prepacked_cpu_matrices_compute_what_row_major_ones_do(tiny_model_dir, monkeypatch, dtype):
    """The CPU keeps matrices in oneDNN's blocked layout (faster decode); it changes no result:
    bit for bit in bfloat16, within float32 rounding (the two kernels add in different orders)."""
    import tinyforge.serving.torch_runtime as torch_runtime

    packed = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype=dtype)
    if not packed.prepacked:
        pytest.skip("this PyTorch build has no oneDNN")
    monkeypatch.setattr(torch_runtime, "_can_prepack", lambda device, dtype: False)
    plain = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype=dtype)
    assert not plain.prepacked
    atol = 0 if dtype == "bfloat16" else 1e-5
    same = lambda a, b: torch.testing.assert_close(a, b, rtol=0, atol=atol)  # noqa: E731
    same(packed.prefill(0, PROMPTS, [BASE_ADAPTER] * 3), plain.prefill(0, PROMPTS, [BASE_ADAPTER] * 3))
    positions = [len(p) for p in PROMPTS]
    for step in range(3):
        tokens = [7 + step, 8, 9]
        same(packed.decode(tokens, positions, [BASE_ADAPTER] * 3), plain.decode(tokens, positions, [BASE_ADAPTER] * 3))
        positions = [p + 1 for p in positions]


def test_auto_takes_bfloat16_only_where_the_cpu_has_it_natively(tiny_model_dir):
    runtime = TorchRuntime.from_folder(tiny_model_dir, max_slots=2, max_context=32, device="cpu", dtype="auto")
    assert runtime.info.dtype == ("bfloat16" if cpu().native_bf16 else "float32")
    assert runtime.prefill(0, PROMPTS[:1], [BASE_ADAPTER]).isfinite().all()


@without_native_bf16
def test_explicit_bfloat16_without_native_support_names_what_the_cpu_lacks(tiny_model_dir):
    with pytest.raises(TinyforgeError, match=r"--dtype bfloat16: bfloat16 needs native support on cpu, but "
                                             r"(this CPU .*AVX512-BF16 or AMX-BF16|oneDNN is capped|PyTorch's kernels)"):
        TorchRuntime.from_folder(tiny_model_dir, max_slots=2, max_context=32, device="cpu", dtype="bfloat16")
