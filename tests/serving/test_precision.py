"""int8 and float16 weight matrices in the torch runtime, the `auto` precision choice, and their bad inputs."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import openai
import pytest
import torch
from transformers import AutoTokenizer

import tinyforge.hardware as hardware
from serving.conftest import running_server
from tinyforge.errors import TinyforgeError
from tinyforge.ml.models import load_base_model
from tinyforge.ml.quality_budget import QualityBudget
from tinyforge.serving.app import ServerSettings
from tinyforge.serving.pool import RuntimeOptions
from tinyforge.serving.precision import choose_precision, load_torch_runtime
from tinyforge.serving.registry import ModelRegistry, ModelSpec
from tinyforge.serving.runtime import BASE_ADAPTER
from tinyforge.serving.torch_runtime import TorchRuntime, _HalfMatrix, _Int8Matrix

PROMPTS = [[5, 17, 40, 9, 3, 11], [8, 2], [30, 31, 32, 33, 34, 35, 36, 37, 38]]
needs_int8 = pytest.mark.skipif(hardware.cpu().int8_missing is not None,
                                reason=f"needs int8 kernels: {hardware.cpu().int8_missing}")
needs_fp16 = pytest.mark.skipif(hardware.cpu().fp16_missing is not None,
                                reason=f"needs float16 kernels: {hardware.cpu().fp16_missing}")
AVX2_CPU = hardware.CpuCapabilities(model="AVX2 CPU", flags=("f16c", "avx2", "fma"), usable=("f16c", "avx2", "fma"),
                                    onednn_max_isa=None, torch_capability="AVX2", onednn_bf16=False)


def greedy(runtime, rows: list[int], adapters: list[int], steps: int = 6):
    """Greedy tokens of PROMPTS[i] for i in rows, decoded together in slots 0..len(rows)-1."""
    prompts = [PROMPTS[i] for i in rows]
    logits = runtime.prefill(0, prompts, adapters)
    out = [[] for _ in rows]
    positions = [len(p) for p in prompts]
    for _ in range(steps):
        tokens = logits.argmax(-1).tolist()
        for row, token in enumerate(tokens):
            out[row].append(token)
        logits = runtime.decode(tokens, positions, adapters)
        positions = [p + 1 for p in positions]
    return out


@needs_int8
def test_int8_matrices_follow_float32_and_a_rows_answer_does_not_depend_on_its_batch(tiny_model_dir, lora_adapter_dir):
    int8 = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype="int8")
    plain = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype="float32")
    assert int8.info.dtype == "int8"
    assert isinstance(int8.layers[0].down, _Int8Matrix) and int8.layers[0].down.weight_t.dtype == torch.int8
    assert int8.info.weights_bytes < plain.info.weights_bytes
    # Close to float32: int8 rounding, not a different model.
    got, want = int8.prefill(0, PROMPTS, [BASE_ADAPTER] * 3), plain.prefill(0, PROMPTS, [BASE_ADAPTER] * 3)
    assert ((got - want).abs().max() / want.abs().max()) < 0.05
    adapter = int8.add_adapter(lora_adapter_dir)
    adapters = [adapter, BASE_ADAPTER, adapter]
    together = greedy(int8, [0, 1, 2], adapters)
    for row in range(3):
        assert greedy(int8, [row], [adapters[row]]) == [together[row]], row
    # Exact integer products and per-row scales: the int8 matrices' output of a row is bit for bit
    # the same alone and in a batch.
    x = torch.randn(5, int8.hidden)
    matrix = int8.layers[1].qkv
    torch.testing.assert_close(int8._matmul(x[2:3], matrix, None), int8._matmul(x, matrix, None)[2:3], rtol=0, atol=0)


@needs_fp16
def test_float16_weights_one_row_and_batches_compute_the_same_product(tiny_model_dir, lora_adapter_dir):
    half = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype="float16")
    plain = TorchRuntime.from_folder(tiny_model_dir, max_slots=4, max_context=64, dtype="float32")
    assert half.info.dtype == "float16"
    matrix = half.layers[1].qkv
    assert isinstance(matrix, _HalfMatrix) and matrix.half.dtype == torch.float16
    # Two copies: float16 for one row, float32 of the same values for batches.
    assert plain.info.weights_bytes < half.info.weights_bytes < 1.6 * plain.info.weights_bytes
    got, want = half.prefill(0, PROMPTS, [BASE_ADAPTER] * 3), plain.prefill(0, PROMPTS, [BASE_ADAPTER] * 3)
    assert ((got - want).abs().max() / want.abs().max()) < 0.01
    # Decoding alone is the one-row path, in a batch the float32 copies': the same greedy tokens.
    adapter = half.add_adapter(lora_adapter_dir)
    adapters = [adapter, BASE_ADAPTER, adapter]
    together = greedy(half, [0, 1, 2], adapters)
    for row in range(3):
        assert greedy(half, [row], [adapters[row]]) == [together[row]], row
    x = torch.randn(5, half.hidden)
    one, many = half._matmul(x[2:3], matrix, None), half._matmul(x, matrix, None)
    # The same float16 weights; one row's input and sums are rounded to float16 too (about 5e-4).
    torch.testing.assert_close(one, many[2:3], rtol=2e-3, atol=2e-3)
    # And one row really reads the float16 copy, a batch the float32 one.
    blank = _HalfMatrix(matrix.half, half._pack(torch.zeros(matrix.shape)))
    assert torch.equal(half._matmul(x[2:3], blank, None), one) and not half._matmul(x, blank, None).any()


def test_auto_on_an_avx2_cpu_serves_float16_when_the_model_keeps_the_budget(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(hardware, "cpu", lambda: AVX2_CPU)
    choice = choose_precision("auto", "cpu")
    assert choice.precision == "float16" and "no int8 kernels (this CPU (AVX2 CPU) has no VNNI" in choice.reason
    model, tokenizer = load_base_model(tiny_model_dir), AutoTokenizer.from_pretrained(str(tiny_model_dir))
    # A context shorter than the check's prompts: the check runs on a runtime of its own, the served one keeps 16.
    runtime = load_torch_runtime(model, tokenizer, precision="auto", max_slots=2, max_context=16, device="cpu")
    choice = runtime.precision_choice
    assert runtime.info.dtype == "float16" and not choice.fell_back and "quality within budget" in choice.reason
    assert runtime.max_context == 16
    assert choice.quality["token_agreement"] > 0.9 and abs(choice.quality["heldout_loss_change"]) < 0.01
    # A budget no rounded model meets: float32, saying why.
    runtime = load_torch_runtime(model, tokenizer, precision="float16", budget=QualityBudget(max_loss_increase=-0.5),
                                 max_slots=2, max_context=128, device="cpu")
    choice = runtime.precision_choice
    assert runtime.info.dtype == choice.precision == "float32" and choice.fell_back
    assert choice.reason.startswith("float16 missed the quality budget (held-out loss")


@needs_int8
def test_auto_on_a_cpu_without_bfloat16_takes_int8_when_the_model_keeps_the_budget(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(hardware, "native_bf16", lambda device: False)
    choice = choose_precision("auto", "cpu")
    assert choice.precision == "int8" and "no native bfloat16" in choice.reason
    runtime = load_torch_runtime(load_base_model(tiny_model_dir), AutoTokenizer.from_pretrained(str(tiny_model_dir)),
                                 precision="auto", budget=QualityBudget(max_loss_increase=1.0, min_token_agreement=0),
                                 max_slots=2, max_context=128, device="cpu")
    assert runtime.info.dtype == "int8" and not runtime.precision_choice.fell_back
    assert "quality within budget" in runtime.precision_choice.reason
    assert set(runtime.precision_choice.quality) >= {"token_agreement", "heldout_loss_change"}


@needs_int8
def test_a_model_whose_int8_quality_misses_the_budget_is_served_in_float(tiny_model_dir):
    # A budget no quantized model meets: held-out loss must drop by half.
    runtime = load_torch_runtime(load_base_model(tiny_model_dir), AutoTokenizer.from_pretrained(str(tiny_model_dir)),
                                 precision="int8", budget=QualityBudget(max_loss_increase=-0.5),
                                 max_slots=2, max_context=128, device="cpu")
    choice = runtime.precision_choice
    assert runtime.info.dtype == choice.precision != "int8" and choice.fell_back
    assert choice.reason.startswith("int8 missed the quality budget (held-out loss") and "budget -50%" in choice.reason
    assert choice.quality["heldout_loss_change"] > -0.5


def test_a_cpu_without_the_int8_kernels_gets_float_and_says_why(tiny_model_dir, monkeypatch):
    old = hardware.CpuCapabilities(model="Old CPU", flags=("sse4_2",), usable=("sse4_2",), onednn_max_isa=None,
                                   torch_capability="DEFAULT", onednn_bf16=False)
    monkeypatch.setattr(hardware, "cpu", lambda: old)
    assert old.int8_missing == "this CPU (Old CPU) has no AVX2, which oneDNN's int8 matrix kernels need"
    asked = choose_precision("int8", "cpu")
    assert (asked.precision, asked.fell_back) == ("float32", True)
    assert asked.reason == f"int8 was asked for, but {old.int8_missing}; serving float32"
    auto = choose_precision("auto", "cpu")
    assert auto.precision == "float32" and "no int8 kernels (this CPU (Old CPU) has no AVX2" in auto.reason
    with pytest.raises(TinyforgeError, match=r"--dtype int8: this CPU \(Old CPU\) has no AVX2"):
        TorchRuntime.from_folder(tiny_model_dir, max_slots=2, max_context=32, device="cpu", dtype="int8")
    with pytest.raises(TinyforgeError, match=r"--dtype float16: .* this CPU \(Old CPU\) has no F16C and AVX2"):
        TorchRuntime.from_folder(tiny_model_dir, max_slots=2, max_context=32, device="cpu", dtype="float16")
    # AVX2 without VNNI: torch._int_mm is a plain loop there (measured 3-20x slower than float32),
    # so auto serves float16 (tested above) and an explicit int8 falls back, saying why; without
    # F16C too, float32.
    avx2 = replace(AVX2_CPU, flags=("avx2", "fma"), usable=("avx2", "fma"))
    monkeypatch.setattr(hardware, "cpu", lambda: avx2)
    assert avx2.int8_missing.startswith("this CPU (AVX2 CPU) has no VNNI or AMX-INT8")
    auto = choose_precision("auto", "cpu")
    assert auto.precision == "float32" and "no float16 kernels (this CPU (AVX2 CPU) has no F16C" in auto.reason
    assert choose_precision("int8", "cpu").fell_back
    vnni = replace(avx2, flags=("avx2", "fma", "avx_vnni"), usable=("avx2", "fma", "avx_vnni"))
    assert vnni.int8_missing is None and vnni.int8_full_range
    capped = replace(old, flags=("avx2", "fma", "avx512_vnni"), usable=(), onednn_max_isa="AVX", torch_capability="AVX2")
    assert capped.int8_missing == "oneDNN is capped below AVX2 (ONEDNN_MAX_CPU_ISA=AVX)"
    with pytest.raises(TinyforgeError, match="precision 'int4': choose auto, float32, bfloat16, float16, int8"):
        choose_precision("int4", "cpu")


class Registry(ModelRegistry):
    refresh_seconds = 0.2

    def __init__(self, specs):
        self.specs = specs
        self.choices = {}

    def list_models(self):
        return self.specs

    def model_precision_chosen(self, name, choice):
        self.choices[name] = choice


@needs_int8
def test_a_batch_whose_rows_use_different_adapters_and_precisions(tiny_model_dir, lora_adapter_dir):
    """Deployments of one base in int8 and float32, each with and without an adapter, answered
    concurrently: each greedy answer is what that deployment says alone, and each says which
    precision serves it."""
    specs = [ModelSpec("int8-base", tiny_model_dir, precision="int8"), ModelSpec("int8-lora", lora_adapter_dir, precision="int8"),
             ModelSpec("f32-base", tiny_model_dir, precision="float32"), ModelSpec("f32-lora", lora_adapter_dir, precision="float32")]
    registry = Registry(specs)
    settings = ServerSettings(runtime=RuntimeOptions(device="cpu", max_slots=8, max_context=256,
                                                     budget=QualityBudget(max_loss_increase=1.0, min_token_agreement=0)))
    questions = ["Reverse the word: hello", "What is Zorbland?", "abc"]
    with running_server(registry, settings=settings) as server:
        async def main():
            client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)

            async def ask(model, question):
                reply = await client.completions.create(model=model, prompt=question, max_tokens=12, temperature=0)
                return reply.choices[0].text

            alone = [await ask(spec.name, q) for spec in specs for q in questions]
            together = await asyncio.gather(*(ask(spec.name, q) for spec in specs for q in questions))
            listed = (await client.models.list()).data
            return alone, together, {m.id: m.model_extra["tinyforge"] for m in listed}

        expected, got, models = asyncio.run(main())
    assert got == expected
    assert {name: m["dtype"] for name, m in models.items()} == {
        "int8-base": "int8", "int8-lora": "int8", "f32-base": "float32", "f32-lora": "float32"}
    assert models["int8-lora"]["adapter_on_shared_base"] and models["f32-lora"]["adapter_on_shared_base"]
    assert models["int8-base"]["precision"]["reason"].startswith("chosen by the user; quality within budget")
    assert {name: c.precision for name, c in registry.choices.items()} == {
        "int8-base": "int8", "int8-lora": "int8", "f32-base": "float32", "f32-lora": "float32"}
    # The int8 and float32 deployments really differ (different runtimes, not one answer cached).
    assert models["int8-base"]["memory_bytes_by_part"]["weights"] < models["f32-base"]["memory_bytes_by_part"]["weights"]
