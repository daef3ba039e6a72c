"""The PyTorch runtime: a Llama-family decoder written for batched serving.

Why not call the Hugging Face model's forward: its cache keeps one position counter for the
whole batch, so requests that joined at different times cannot share a step, and its per-layer
Python costs more than the arithmetic of a 135M model. This module takes the Hugging Face
model's weights (nothing is converted on disk), fuses q/k/v and gate/up into one matrix each, and
runs decode steps over a preallocated slot cache where every row has its own position.

LoRA adapters are applied per row as low-rank deltas on top of the shared base matrices, so
deployments of one base hold one copy of it (the approach of LoRAX / Punica). An adapter that
changes more than linear layers (new embeddings, DoRA, per-module ranks) is refused with
AdapterNotShareable and the caller serves it merged instead.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from tinyforge.errors import TinyforgeError
from tinyforge.serving.runtime import BASE_ADAPTER, AdapterNotShareable, Runtime, RuntimeInfo

# config.model_type values (not class names, which ml.onnx_export lists for what it exports).
SERVABLE_MODEL_TYPES = ("llama", "mistral", "qwen2")
STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")
ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj")
MLP_PARTS = ("gate_proj", "up_proj")
ADAPTER_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def pick_device(requested: str = "auto") -> torch.device:
    from tinyforge.hardware import pick_device as pick

    return torch.device(pick(requested, "--device"))


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INT8 = "int8"  # int8 weight matrices, activations quantized per row at run time (see _Int8Matrix)
MATRIX_KINDS = ("qkv", "out", "gate_up", "down")
# Kept in float where int8 weights get 7 bits (no VNNI, see _Int8Matrix). Measured on SmolLM2-135M
# under ONEDNN_MAX_CPU_ISA=AVX2 (held-out loss against float32, start-up check's texts): every
# matrix in int8 +2.45% (the budget is 2%); gate/up in float +1.30%, any other one kind in float
# +2.4% to +3.6%. With 8 bits (VNNI) every matrix in int8 gave +0.64%, down projections in float
# +1.40%: per-row activation scales absorb the outliers that broke the ONNX export's per-tensor ones.
SEVEN_BIT_FLOAT_KINDS = ("gate_up",)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """The dtype of the weight matrices. auto: bfloat16 where it is native (CUDA, and CPUs with
    AVX512-BF16 or AMX, where it is about three times as fast as float32 on a batch), float32
    elsewhere (serving.precision adds the checked choices: int8, and float16 on the CPU, whose
    one-row steps read half of float32's bytes; see _HalfMatrix). Activations, norms, attention and
    the KV cache stay in float32 on the CPU either way. An explicit half-precision choice on a CPU
    without the instructions for it is refused: it would be emulated (slower than float32) or, for
    bfloat16 without AVX-512, not run at all."""
    from tinyforge.hardware import native_bf16, require_native

    if requested in ("auto", INT8):  # int8 keeps its output head and norms in the float auto picks
        return torch.bfloat16 if native_bf16(device.type) else torch.float32
    if requested not in DTYPES:
        raise TinyforgeError(f"--dtype {requested}: choose auto, {', '.join(DTYPES)} or {INT8}")
    if requested != "float32":
        require_native(device.type, requested, f"--dtype {requested}", "--dtype float32 or auto")
    return DTYPES[requested]


def _can_prepack(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the weight matrices can be kept in oneDNN's blocked layout on this device.

    On the CPU, F.linear reads a row-major [out, in] matrix with a generic kernel: with one or a
    few rows of activations (decoding) it moved about 9 GB/s on a machine whose memory gives 32.
    oneDNN's prepacked layout (the one PyTorch's own compiler uses for CPU linear layers) doubled
    that: SmolLM2-135M's matrices took 13.5 ms per decode step instead of 19-23 ms with 1 to 8
    rows, with bit-identical bfloat16 results. oneDNN's bfloat16 reorder needs AVX-512 (or
    AVX-NE-CONVERT), which pick_dtype already demanded."""
    from tinyforge.hardware import cpu

    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return dtype == torch.float32 or (dtype == torch.bfloat16 and cpu().onednn_bf16)


# How many adapters have their A matrices appended as rows to the base matrices (see
# TorchRuntime._fuse_adapters); later ones multiply A on their own until a fused one goes. Every
# fused adapter adds its ranks to every row's product, adapted or not.
FUSED_ADAPTERS = 4

# With bfloat16 weights the output layer's logits are rounded to bfloat16 (about 0.4%); the best
# candidates are recomputed in float32 so greedy choices and the head of the distribution are exact.
REFINED_CANDIDATES = 64


@dataclass
class _Int8Matrix:
    """A weight matrix in int8 with one float32 scale per output channel (symmetric, absmax).

    Its input is quantized per row at run time (absmax of the row), multiplied in integers by
    torch._int_mm (oneDNN's s8 x s8 -> s32 GEMM) and scaled back: exact integer sums and per-row
    scales make every row's result independent of the other rows in the batch, so a request's
    greedy answer does not depend on who shares its step. Per-tensor activation scales did
    (docs/benchmarks.md). Weight-only int8 (aten._weight_int8pack_mm, float activations) was
    measured too and lost: a 30-layer SmolLM2-135M step of the four projections took 269 ms with
    one row against 56 ms here and 91 ms in prepacked float32 (one thread, shared machine); with
    8 rows 2.3 s against 64 ms, as it re-reads the weights per row.

    Without VNNI, oneDNN's int8 GEMM saturates 16-bit pair sums above |w| = 64, so weights are
    rounded to 7 bits (|w| <= 63) there (`levels`), at a small cost in accuracy measured by the
    deployment's start-up check."""

    weight_t: torch.Tensor  # int8 [in, out]: the transpose of a contiguous [out, in] matrix
    scale: torch.Tensor  # float32 [out]

    @classmethod
    def quantize(cls, weight: torch.Tensor, levels: int) -> "_Int8Matrix":
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / levels
        q = torch.round(weight / scale[:, None]).clamp_(-levels, levels).to(torch.int8).contiguous()
        return cls(q.t(), scale.contiguous())

    @property
    def nbytes(self) -> int:
        return self.weight_t.nbytes + self.scale.nbytes

    @property
    def shape(self) -> torch.Size:  # [out, in], as the float matrix's
        return self.weight_t.t().shape


@dataclass
class _HalfMatrix:
    """A float16 weight matrix on a CPU whose oneDNN has no float16 kernels (AVX2-only CPUs, and
    AVX-512 ones without AVX512-FP16; issue 23).

    A decode step of one row is bound by the bytes of weights it reads. Here a one-row product reads
    `half` through ATen's float16 matrix-vector kernel (F16C conversion, float32 sums): on a real
    AVX2-only AMD EPYC, SmolLM2-135M's 30 layers of projections took 15.1 ms a step against 27.9 ms
    prepacked in float32 (docs/benchmarks.md). The same kernel on 8 rows took 86.9 ms against 38.3
    (ATen's float16 GEMM is not blocked for such CPUs) and oneDNN refuses float16 prepacking
    without AVX-NE-CONVERT or AVX512-FP16, so batches multiply `packed`, float32 copies of the same
    rounded values in oneDNN's layout: half as much memory again as float32 alone.

    Both paths multiply the same float16 values and add in float32; the one-row kernel also takes its
    row in float16 and returns float16 sums, a rounding of about 5e-4 of a value. Rounding the batch
    path's rows and sums the same way made a decode step of 8 rows about 8% slower (four more small
    operations a product, under an AVX2 cap), so it is not done: a row's logits alone and in a batch
    differ by that rounding, and greedy answers were the same both ways in the tests and over 60
    tokens of SmolLM2-135M, where they also matched float32's."""

    half: torch.Tensor  # float16 [out, in], row-major
    packed: torch.Tensor  # float32 [out, in] of the same values, prepacked where oneDNN can

    @property
    def nbytes(self) -> int:
        return self.half.nbytes + self.packed.nbytes

    @property
    def shape(self) -> torch.Size:
        return self.half.shape


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: torch.Tensor | _Int8Matrix | _HalfMatrix
    qkv_bias: torch.Tensor | None
    out: torch.Tensor | _Int8Matrix | _HalfMatrix
    post_norm: torch.Tensor
    gate_up: torch.Tensor | _Int8Matrix | _HalfMatrix
    down: torch.Tensor | _Int8Matrix | _HalfMatrix


@dataclass
class _LowRank:
    """The LoRA deltas of one fused projection (qkv, gate_up, out or down): the adapted modules' A
    stacked into one product, x @ a_t, then each module's own B into its own output columns,
    out[:, columns] += (x @ a_t)[:, ranks] @ b_t, the scale folded into b_t. One B per module, not
    one block-diagonal B for the fused projection, whose zero blocks tripled the qkv B and doubled
    the gate_up one: a rank-16 adapter of SmolLM2-135M on every projection holds 18.6 MiB instead
    of 27.8 (a decode step's time did not change measurably). Kept transposed and contiguous:
    every product is a plain row-major GEMM that adds into its columns of the output in place.

    Once fused (TorchRuntime._fuse_adapters), A lives only as extra rows of the base matrix and
    x @ a_t is read from the base product's output columns `fused`."""

    a_t: torch.Tensor | None  # [in, sum of the adapted modules' ranks]; None once fused
    blocks: list[tuple[slice, slice, torch.Tensor]]  # per adapted module: output columns, its ranks, B^T [r, out]
    fused: slice | None = None  # x @ a_t's columns in the output of the base matrix that holds A
    fused_bytes: int = 0  # A's bytes in that matrix

    def nbytes(self) -> int:
        own = self.a_t.nbytes if self.a_t is not None else self.fused_bytes
        return own + sum(b_t.nbytes for _, _, b_t in self.blocks)


@dataclass
class _Adapter:
    layers: list[dict[str, _LowRank]] = field(default_factory=list)  # per layer: qkv/out/gate_up/down
    fused: bool = False  # its A matrices are rows of the base matrices (TorchRuntime._fuse_adapters)

    def nbytes(self) -> int:
        return sum(delta.nbytes() for layer in self.layers for delta in layer.values())


class TorchRuntime(Runtime):
    """Serve a Hugging Face causal LM of a supported architecture with PyTorch."""

    reuses_prefix = True

    def __init__(self, model, *, max_slots: int = 16, max_context: int | None = None,
                 device: str = "auto", dtype: str = "float32") -> None:
        config = model.config
        if config.model_type not in SERVABLE_MODEL_TYPES:
            raise TinyforgeError(
                f"the torch serving runtime supports {', '.join(SERVABLE_MODEL_TYPES)} models; "
                f"this one is {config.model_type!r}"
            )
        rope = getattr(config, "rope_parameters", None) or {"rope_type": "default"}
        if rope.get("rope_type", "default") not in STATIC_ROPE_TYPES:
            raise TinyforgeError(f"rope type {rope.get('rope_type')!r} is not supported by the torch serving runtime")
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.int8 = dtype == INT8
        if self.int8:
            from tinyforge.hardware import cpu

            missing = "int8 matrices run on the CPU only" if self.device.type != "cpu" else cpu().int8_missing
            if missing:
                raise TinyforgeError(f"--dtype int8: {missing}; use --dtype float32 or auto")
            levels = 127 if cpu().int8_full_range else 63
            float_kinds = () if cpu().int8_full_range else SEVEN_BIT_FLOAT_KINDS
        # Small element-wise ops in bfloat16 are slow on CPUs: only the big matrices use it there.
        self.act_dtype = self.dtype if self.device.type == "cuda" else torch.float32
        self.hidden = config.hidden_size
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads or self.heads
        self.head_dim = getattr(config, "head_dim", None) or self.hidden // self.heads
        self.eps = config.rms_norm_eps
        self.act = _activation(config.hidden_act)
        limit = config.max_position_embeddings
        window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
        if window:  # this runtime attends to the whole cache: stay inside the window
            limit = min(limit, window)
        self.max_context = min(max_context or limit, limit)
        self.max_slots = max_slots

        inner = model.model
        # float16 on the CPU: one-row products in float16, batches in float32 (see _HalfMatrix).
        self.half_rows = self.device.type == "cpu" and self.dtype == torch.float16
        self.prepacked = _can_prepack(self.device, torch.float32 if self.half_rows else self.dtype)
        self.fuses_adapters = self.prepacked and self.dtype == torch.bfloat16  # see _fuse_adapters
        put = lambda t: t.detach().to(self.device, self.dtype).contiguous()  # noqa: E731
        small = lambda t: t.detach().to(self.device, self.act_dtype).contiguous()  # noqa: E731
        # A matrix only ever multiplied: in oneDNN's blocked layout on the CPU (see _can_prepack).
        matrix = lambda t: self._pack(put(t))  # noqa: E731
        if self.half_rows:
            matrix = lambda t: self._half(put(t))  # noqa: E731
        float_matrix = matrix
        if self.int8:
            matrix = lambda t: _Int8Matrix.quantize(t, levels)  # noqa: E731
        self.int8_levels = levels if self.int8 else None
        self.float_kinds = float_kinds if self.int8 else MATRIX_KINDS
        pick = lambda kind: float_matrix if kind in self.float_kinds else matrix  # noqa: E731
        self.embed = put(inner.embed_tokens.weight)
        head = model.get_output_embeddings().weight
        # The row-major head is kept for the embedding lookup (when tied) and the float32 refinement.
        self.lm_head = self.embed if head.data_ptr() == inner.embed_tokens.weight.data_ptr() else put(head)
        self.lm_head_matrix = self._half(self.lm_head) if self.half_rows else self._pack(self.lm_head)
        self.final_norm = small(inner.norm.weight)
        self.layers: list[_Layer] = []
        for block in inner.layers:
            attn, mlp = block.self_attn, block.mlp
            biases = [getattr(attn, p).bias for p in ATTENTION_PARTS]
            self.layers.append(_Layer(
                input_norm=small(block.input_layernorm.weight),
                qkv=pick("qkv")(torch.cat([getattr(attn, p).weight for p in ATTENTION_PARTS])),
                qkv_bias=put(torch.cat(biases)) if all(b is not None for b in biases) else None,
                out=pick("out")(attn.o_proj.weight),
                post_norm=small(block.post_attention_layernorm.weight),
                gate_up=pick("gate_up")(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                down=pick("down")(mlp.down_proj.weight),
            ))
            if attn.o_proj.bias is not None or mlp.down_proj.bias is not None:
                raise TinyforgeError("the torch serving runtime does not support output or MLP biases")
        rotary = inner.rotary_emb
        positions = torch.arange(self.max_context, dtype=torch.float32)
        freqs = positions[:, None] * rotary.inv_freq.float().cpu()[None, :]
        angles = torch.cat([freqs, freqs], dim=-1)
        # rotate_half(x) * sin == roll(x, half) * (sin with its first half negated): one op fewer.
        half = angles.shape[-1] // 2
        sign = torch.cat([-torch.ones(half), torch.ones(half)])
        self.cos = (angles.cos() * rotary.attention_scaling).to(self.device, self.act_dtype)
        self.sin = (angles.sin() * rotary.attention_scaling * sign).to(self.device, self.act_dtype)
        self.vocab_size = self.embed.shape[0]
        self.split = [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim]
        self.out_sizes = {"qkv": sum(self.split), "gate_up": self.layers[0].gate_up.shape[0],
                          "out": self.hidden, "down": self.hidden}
        # Zeros, not empty: masked positions still enter the softmax product, and 0 * NaN from
        # uninitialised memory would poison the row.
        shape = (len(self.layers), max_slots, self.kv_heads, self.max_context, self.head_dim)
        self.k_cache = torch.zeros(shape, device=self.device, dtype=self.act_dtype)
        self.v_cache = torch.zeros(shape, device=self.device, dtype=self.act_dtype)
        self.positions = torch.arange(self.max_context, device=self.device)
        self.adapters: dict[int, _Adapter] = {}
        self._next_adapter = BASE_ADAPTER + 1
        weights = {id(t): t.nbytes for t in self._weight_tensors()}
        self.info = RuntimeInfo(
            name="torch", device=str(self.device), dtype=INT8 if self.int8 else str(self.dtype).removeprefix("torch."),
            vocab_size=self.vocab_size, max_context=self.max_context, max_slots=max_slots,
            weights_bytes=sum(weights.values()),
            kv_cache_bytes=self.k_cache.nbytes + self.v_cache.nbytes,
        )

    @classmethod
    def from_folder(cls, folder: str | Path, **options) -> "TorchRuntime":
        from tinyforge.ml.models import load_base_model  # one thread-safe way to load transformers models

        return cls(load_base_model(folder), **options)

    def _weight_tensors(self):
        """Every weight tensor once a part (a float16 matrix's two copies apart: its half may be the
        tied embedding itself)."""
        for t in (self.embed, self.lm_head, self.lm_head_matrix, self.final_norm,
                  *(t for layer in self.layers for t in vars(layer).values())):
            if isinstance(t, _HalfMatrix):
                yield from (t.half, t.packed)
            elif t is not None:
                yield t

    # --- forward passes -------------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, tokens: list[int], positions: list[int], adapters: list[int]):
        rows = len(tokens)
        token_ids = torch.tensor(tokens, device=self.device)
        position_ids = torch.tensor(positions, device=self.device)
        length = max(positions) + 1
        row_index = torch.arange(rows, device=self.device)
        cos = self.cos[position_ids][:, None, :]
        sin = self.sin[position_ids][:, None, :]
        visible = self.positions[:length][None, :] <= position_ids[:, None]
        mask = torch.zeros(rows, 1, 1, length, device=self.device, dtype=self.act_dtype)
        mask.masked_fill_(~visible[:, None, None, :], float("-inf"))
        groups = self._adapter_groups(adapters)
        group_size = self.heads // self.kv_heads
        scale = 1.0 / math.sqrt(self.head_dim)
        x = self.embed[token_ids].to(self.act_dtype)
        for index, layer in enumerate(self.layers):
            h = F.rms_norm(x, (self.hidden,), layer.input_norm, self.eps)
            qkv = self._linear(h, layer.qkv, layer.qkv_bias, groups, index, "qkv")
            qk = _rotate(qkv[:, : self.split[0] + self.split[1]].view(rows, self.heads + self.kv_heads, self.head_dim),
                         cos, sin)
            q, k = qk[:, : self.heads], qk[:, self.heads:]
            v = qkv[:, self.split[0] + self.split[1]:].view(rows, self.kv_heads, self.head_dim)
            k_cache, v_cache = self.k_cache[index], self.v_cache[index]
            k_cache[row_index, :, position_ids] = k
            v_cache[row_index, :, position_ids] = v
            keys = k_cache[:rows, :, :length]
            values = v_cache[:rows, :, :length]
            # Grouped-query attention without repeating the keys: [rows, kv_heads, group, length].
            scores = torch.matmul(q.reshape(rows, self.kv_heads, group_size, self.head_dim), keys.transpose(-1, -2))
            scores = scores.mul_(scale).add_(mask).softmax(dim=-1)
            attended = torch.matmul(scores, values).reshape(rows, self.heads * self.head_dim)
            x = x + self._linear(attended, layer.out, None, groups, index, "out")
            h = F.rms_norm(x, (self.hidden,), layer.post_norm, self.eps)
            gate, up = self._linear(h, layer.gate_up, None, groups, index, "gate_up").chunk(2, dim=-1)
            x = x + self._linear(self.act(gate) * up, layer.down, None, groups, index, "down")
        return self._logits(x)

    @torch.inference_mode()
    def prefill(self, first_slot: int, prompts: list[list[int]], adapters: list[int], cached: list[int] | None = None):
        cached = cached or [0] * len(prompts)
        x = self._prefill_hidden(first_slot, prompts, adapters, cached)
        last = torch.tensor([len(p) - 1 - start for p, start in zip(prompts, cached)], device=self.device)
        return self._logits(x[torch.arange(len(prompts), device=self.device), last])

    @torch.inference_mode()
    def sequence_logits(self, ids: list[int]):
        """Float32 logits at every position of one sequence [len(ids), vocab] (for held-out loss),
        computed through slot 0 as a prefill does."""
        return self._logits(self._prefill_hidden(0, [ids], [BASE_ADAPTER])[0])

    def _prefill_hidden(self, first_slot: int, prompts: list[list[int]], adapters: list[int],
                        cached: list[int] | None = None):
        """Hidden states of the positions computed, [rows, new positions (padded), hidden]: row r's
        tokens from cached[r] on, its slot holding the KV of the tokens before."""
        rows, length = len(prompts), max(len(p) for p in prompts)
        cached = cached or [0] * rows
        if first_slot + rows > self.max_slots or length > self.max_context:
            raise ValueError("prefill outside the cache")
        if any(not 0 <= start < len(p) for p, start in zip(prompts, cached)):
            raise ValueError("a cached prefix must leave at least one prompt token to compute")
        new = max(len(p) - start for p, start in zip(prompts, cached))
        # Right padding: a causal mask already keeps real tokens from seeing the pad after them.
        padded = torch.zeros(rows, new, dtype=torch.long)
        for row, (prompt, start) in enumerate(zip(prompts, cached)):
            padded[row, : len(prompt) - start] = torch.tensor(prompt[start:])
        token_ids = padded.to(self.device)
        slots = slice(first_slot, first_slot + rows)
        if any(cached):
            attend = self._after_prefix(first_slot, prompts, cached, new)
            cos, sin = attend.cos, attend.sin
        else:
            # The pad's cache entries lie beyond the row's length, where decode masks them.
            attend = None
            cos = self.cos[:length][None, None]
            sin = self.sin[:length][None, None]
        groups = self._adapter_groups(adapters)
        x = self.embed[token_ids].to(self.act_dtype)
        for index, layer in enumerate(self.layers):
            h = F.rms_norm(x, (self.hidden,), layer.input_norm, self.eps)
            qkv = self._linear(h, layer.qkv, layer.qkv_bias, groups, index, "qkv")
            q, k, v = qkv.split(self.split, dim=-1)
            q = _rotate(q.view(rows, new, self.heads, self.head_dim).transpose(1, 2), cos, sin)
            k = _rotate(k.view(rows, new, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
            v = v.view(rows, new, self.kv_heads, self.head_dim).transpose(1, 2)
            if attend is None:
                self.k_cache[index, slots, :, :length] = k
                self.v_cache[index, slots, :, :length] = v
                attended = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            else:
                attended = attend(index, q, k, v)
            attended = attended.transpose(1, 2).reshape(rows, new, self.heads * self.head_dim)
            x = x + self._linear(attended, layer.out, None, groups, index, "out")
            h = F.rms_norm(x, (self.hidden,), layer.post_norm, self.eps)
            gate, up = self._linear(h, layer.gate_up, None, groups, index, "gate_up").chunk(2, dim=-1)
            x = x + self._linear(self.act(gate) * up, layer.down, None, groups, index, "down")
        return x

    def _after_prefix(self, first_slot: int, prompts: list[list[int]], cached: list[int], new: int) -> "_PrefixAttention":
        """The attention of a prefill whose rows start after cached prefixes of different lengths:
        each row's new keys and values go into its slot at their positions, and its queries attend
        to the slot's positions up to their own (the cached prefix and the new tokens before them)."""
        rows = len(prompts)
        starts = torch.tensor(cached, device=self.device)
        steps = torch.arange(new, device=self.device)
        keys = max(len(p) for p in prompts)
        # A pad query (past its row's prompt) gets a position inside the keys read, so it sees at
        # least key 0 and stays finite; its key and value are never written to the cache.
        positions = (starts[:, None] + steps[None, :]).clamp_(max=keys - 1)
        real = steps[None, :] < torch.tensor([len(p) for p in prompts], device=self.device)[:, None] - starts[:, None]
        slot_ids = torch.arange(first_slot, first_slot + rows, device=self.device)[:, None].expand(rows, new)
        visible = self.positions[:keys][None, None, :] <= positions[:, :, None]  # [rows, new, keys]
        return _PrefixAttention(
            self, slice(first_slot, first_slot + rows), keys, slot_ids[real], positions[real], real,
            visible[:, None], self.cos[positions][:, None], self.sin[positions][:, None])

    def _logits(self, x):
        x = F.rms_norm(x, (self.hidden,), self.final_norm, self.eps)
        logits = self._matmul(x, self.lm_head_matrix, None).float()
        # float16 batches already added float32 products of the head's values (_HalfMatrix.packed).
        if self.lm_head.dtype != torch.float32 and not (self.half_rows and x.shape[0] > 1):
            best = logits.topk(min(REFINED_CANDIDATES, self.vocab_size), dim=-1).indices
            rows = self.lm_head[best].float()  # [rows, candidates, hidden]
            logits.scatter_(1, best, torch.bmm(rows, x.float()[:, :, None]).squeeze(-1))
        return logits

    def _adapter_groups(self, adapters: list[int]) -> list[tuple[_Adapter, torch.Tensor | None]]:
        """Rows per adapter for this step; None for 'every row' (no gather needed)."""
        used = set(adapters) - {BASE_ADAPTER}
        if not used:
            return []
        if len(used) == 1 and BASE_ADAPTER not in adapters:
            return [(self.adapters[adapters[0]], None)]
        groups = []
        for adapter_id in used:
            rows = [row for row, a in enumerate(adapters) if a == adapter_id]
            groups.append((self.adapters[adapter_id], torch.tensor(rows, device=self.device)))
        return groups

    def _matmul(self, x, weight, bias):
        """x @ weight.T + bias in the weights' dtype, returned in x's."""
        if isinstance(weight, _Int8Matrix):
            rows = x.reshape(-1, x.shape[-1])
            step = rows.abs().amax(dim=-1, keepdim=True).clamp_min_(1e-12).div_(127)
            quantized = torch.round(rows / step).to(torch.int8)
            out = torch._int_mm(quantized, weight.weight_t).to(x.dtype).mul_(step).mul_(weight.scale)
            if bias is not None:
                out += bias
            return out.view(*x.shape[:-1], -1)
        if isinstance(weight, _HalfMatrix):
            rows = x.reshape(-1, x.shape[-1])
            if rows.shape[0] == 1:
                out = F.linear(rows.to(torch.float16), weight.half, bias).to(x.dtype)
            else:
                bias = None if bias is None else bias.float()
                out = (torch.ops.mkldnn._linear_pointwise(rows, weight.packed, bias, "none", [], "") if self.prepacked
                       else F.linear(rows, weight.packed, bias))
            return out.view(*x.shape[:-1], -1)
        if self.prepacked:
            out = torch.ops.mkldnn._linear_pointwise(x.to(weight.dtype), weight, bias, "none", [], "")
        else:
            out = F.linear(x.to(weight.dtype), weight, bias)
        return out.to(x.dtype)

    def _linear(self, x, weight, bias, groups, layer_index: int, kind: str):
        full = self._matmul(x, weight, bias)
        # Past the base's columns: x @ A of the fused adapters (_fuse_adapters), for every row.
        out = full[..., : self.out_sizes[kind]] if full.shape[-1] != self.out_sizes[kind] else full
        if groups:
            self._add_low_rank(out, full, x, groups, layer_index, kind)
        return out

    def _add_low_rank(self, out, full, x, groups, layer_index: int, kind: str) -> None:
        # Products of rank 16 or so are too small to share between threads: with two, every one
        # waited for the second thread to wake (about 40 us instead of 10 us alone, and up to a
        # millisecond when another process held the other core), so a LoRA decode step cost far
        # more than its arithmetic. They run on one thread; the base matrices keep all of them.
        # (The setting is the process's: another engine's thread multiplying meanwhile runs on
        # one thread for these microseconds, slower but correct.)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for adapter, rows in groups:
                delta = adapter.layers[layer_index].get(kind)
                if delta is None:
                    continue
                if rows is None:
                    low = (full.reshape(-1, full.shape[-1])[:, delta.fused] if delta.fused is not None
                           else x.reshape(-1, x.shape[-1]) @ delta.a_t)
                    flat = out.view(-1, out.shape[-1])
                    for columns, ranks, b_t in delta.blocks:
                        flat[:, columns].addmm_(low[:, ranks], b_t)
                else:  # rows of dimension 0: batch rows in decode, whole prompts in prefill
                    low = (full[..., delta.fused].index_select(0, rows) if delta.fused is not None
                           else x.index_select(0, rows) @ delta.a_t)
                    for columns, ranks, b_t in delta.blocks:
                        out[..., columns].index_add_(0, rows, low[..., ranks] @ b_t)
        finally:
            torch.set_num_threads(threads)

    def move_slot(self, source: int, target: int, length: int) -> None:
        self.k_cache[:, target, :, :length] = self.k_cache[:, source, :, :length]
        self.v_cache[:, target, :, :length] = self.v_cache[:, source, :, :length]

    def swap_slots(self, first: int, second: int, length: int) -> None:
        pair, swapped = [first, second], [second, first]
        for cache in (self.k_cache, self.v_cache):
            # The right-hand side is gathered into a new tensor before anything is written.
            cache[:, pair, :, :length] = cache[:, swapped, :, :length]

    # --- adapters --------------------------------------------------------------------------

    def add_adapter(self, folder) -> int:
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / "adapter_config.json").read_text())
        if config.get("peft_type", "LORA") != "LORA":
            raise AdapterNotShareable(f"peft_type {config.get('peft_type')} is not LoRA")
        for key, why in (("use_dora", "DoRA"), ("modules_to_save", "modules_to_save"),
                         ("rank_pattern", "per-module ranks"), ("alpha_pattern", "per-module alphas"),
                         ("trainable_token_indices", "trained token embeddings")):
            if config.get(key):
                raise AdapterNotShareable(f"it uses {why}")
        weights_file = folder / "adapter_model.safetensors"
        if not weights_file.is_file():
            raise TinyforgeError(f"{weights_file} is missing")
        rank = int(config["r"])
        scale = float(config.get("lora_alpha", rank)) / (math.sqrt(rank) if config.get("use_rslora") else rank)
        parts: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
        for key, tensor in load_file(str(weights_file)).items():
            match = ADAPTER_KEY.search(key)
            if not match:
                raise AdapterNotShareable(f"it has weights outside the attention and MLP projections ({key})")
            layer, module, which = int(match[1]), match[2], match[3]
            parts.setdefault(layer, {}).setdefault(module, {})[which] = tensor.float()
        adapter = _Adapter()
        head_sizes = dict(zip(ATTENTION_PARTS, self.split))
        mlp_size = self.out_sizes["gate_up"] // 2
        for index in range(len(self.layers)):
            modules = parts.pop(index, {})
            fused = {
                "qkv": self._fuse(modules, ATTENTION_PARTS, head_sizes, scale),
                "gate_up": self._fuse(modules, MLP_PARTS, dict.fromkeys(MLP_PARTS, mlp_size), scale),
                "out": self._fuse(modules, ("o_proj",), {"o_proj": self.hidden}, scale),
                "down": self._fuse(modules, ("down_proj",), {"down_proj": self.hidden}, scale),
            }
            unknown = set(modules) - set(ATTENTION_PARTS) - set(MLP_PARTS) - {"o_proj", "down_proj"}
            if unknown:
                raise AdapterNotShareable(f"it adapts modules this runtime does not know: {sorted(unknown)}")
            adapter.layers.append({kind: delta for kind, delta in fused.items() if delta is not None})
        if parts:
            raise TinyforgeError(f"{weights_file}: adapter has layers {sorted(parts)} beyond the base model's {len(self.layers)}")
        adapter_id = self._next_adapter
        self._next_adapter += 1
        self.adapters[adapter_id] = adapter
        self._fuse_adapters()
        return adapter_id

    def _fuse(self, modules, names, sizes, scale) -> _LowRank | None:
        """The low-rank deltas of modules whose base matrices were concatenated (in `names` order,
        `sizes` their output sizes); None when none of them is adapted."""
        present = [n for n in names if n in modules]
        if not present:
            return None
        put = lambda t: t.to(self.device, self.act_dtype).contiguous()  # noqa: E731
        blocks, column, rank = [], 0, 0
        for name in names:
            if name in modules:
                b, r = modules[name]["B"], modules[name]["A"].shape[0]
                if b.shape[0] != sizes[name]:
                    raise TinyforgeError(f"adapter {name} has output size {b.shape[0]}, the base model {sizes[name]}")
                blocks.append((slice(column, column + sizes[name]), slice(rank, rank + r), put((b * scale).t())))
                rank += r
            column += sizes[name]
        return _LowRank(put(torch.cat([modules[n]["A"] for n in present]).t()), blocks)

    def _fuse_adapters(self) -> None:
        """Keep the A matrices of the first FUSED_ADAPTERS adapters as extra rows of the base
        matrices, so that the base product, on every thread, also gives each row's x @ A; only the
        small B products are left to _add_low_rank.

        Why: multiplied on their own, the adapter's matrices were read from memory on one thread
        after the base matrices had pushed them out of the caches, and a LoRA decode step of
        SmolLM2-135M in bfloat16 took 0.78-0.85x the base's (docs/benchmarks.md). The base's own
        columns came out bit for bit as from the base matrix alone (SmolLM2-135M's four shapes with
        4 to 64 extra rows, 1 to 200 rows of input, and the tests), so fusing changes no base row's
        answer. A takes the base
        matrix's dtype: in bfloat16 that rounds the adapter's A and x @ A as the base's own
        products are rounded, finer than an adapter merged into bfloat16 weights would be.
        Only for prepacked bfloat16 matrices: in float32 (oneDNN capped at AVX2, the float32 an
        AVX2-only CPU serves) the LoRA step was no faster fused (69.4 against 67.4 ms, medians of
        six rounds in turn, within noise), and the rebuild took 1.3 s.

        The base matrices' row-major values are read back from oneDNN's layout as I @ W^T, which is
        exact (one product per output, the rest zeros); a rebuild (an adapter fused or removed)
        took 0.7 s on SmolLM2-135M in bfloat16 (2 cores), between two decode steps."""
        if not self.fuses_adapters:
            return
        wanted = list(self.adapters.values())[:FUSED_ADAPTERS]
        for index, layer in enumerate(self.layers):
            for kind in MATRIX_KINDS:
                matrix = getattr(layer, kind)
                if isinstance(matrix, _Int8Matrix):  # int8 kinds keep x @ A in float32
                    continue
                size = self.out_sizes[kind]
                deltas = [d for d in (a.layers[index].get(kind) for a in wanted) if d is not None]
                layout, column = [], size
                for delta in deltas:
                    width = delta.a_t.shape[1] if delta.a_t is not None else delta.fused.stop - delta.fused.start
                    layout.append(slice(column, column + width))
                    column += width
                if column == matrix.shape[0] and all(d.fused == c for d, c in zip(deltas, layout)):
                    continue  # unchanged (an adapter that does not adapt this kind came or went)
                current = self._row_major(matrix)
                rows = [current[:size]] + [current[d.fused] if d.fused is not None else d.a_t.t().to(self.dtype)
                                           for d in deltas]
                setattr(layer, kind, self._pack(torch.cat(rows)))
                if kind == "qkv" and layer.qkv_bias is not None:
                    layer.qkv_bias = F.pad(layer.qkv_bias[:size], (0, column - size))
                for delta, columns, a in zip(deltas, layout, rows[1:]):
                    delta.fused, delta.a_t, delta.fused_bytes = columns, None, a.nbytes
        for adapter in wanted:
            adapter.fused = True

    def _pack(self, matrix: torch.Tensor) -> torch.Tensor:
        matrix = matrix.contiguous()
        return torch.ops.mkldnn._reorder_linear_weight(matrix) if self.prepacked else matrix

    def _half(self, matrix: torch.Tensor) -> _HalfMatrix:
        return _HalfMatrix(matrix, self._pack(matrix.float()))

    def _row_major(self, matrix: torch.Tensor) -> torch.Tensor:
        """A prepacked matrix's [out, in] values, read back as I @ W^T (see _fuse_adapters)."""
        identity = torch.eye(matrix.shape[1], device=self.device, dtype=self.dtype)
        return torch.ops.mkldnn._linear_pointwise(identity, matrix, None, "none", [], "").t()

    def remove_adapter(self, adapter_id: int) -> None:
        adapter = self.adapters.pop(adapter_id, None)
        if adapter is not None and adapter.fused:
            self._fuse_adapters()

    def adapter_bytes(self, adapter_id: int) -> int:
        adapter = self.adapters.get(adapter_id)
        return adapter.nbytes() if adapter else 0

    def close(self) -> None:
        self.adapters.clear()
        self.layers = []
        self.k_cache = self.v_cache = self.embed = self.lm_head = self.lm_head_matrix = None


@dataclass
class _PrefixAttention:
    """One prefill's attention over its rows' slots, for rows that start after a cached prefix."""

    runtime: TorchRuntime
    slots: slice
    keys: int  # slot positions read: the longest prompt's
    write_slots: torch.Tensor  # slot and position of every real (not pad) new token, row-major
    write_positions: torch.Tensor
    real: torch.Tensor  # [rows, new] bool
    visible: torch.Tensor  # [rows, 1, new, keys] bool: key position <= the query's position
    cos: torch.Tensor  # [rows, 1, new, head_dim] at each new token's position
    sin: torch.Tensor

    def __call__(self, index: int, q, k, v):
        runtime = self.runtime
        k_cache, v_cache = runtime.k_cache[index], runtime.v_cache[index]
        # [rows, kv_heads, new, head_dim] -> the real tokens' [count, kv_heads, head_dim]
        k_cache[self.write_slots, :, self.write_positions] = k.transpose(1, 2)[self.real]
        v_cache[self.write_slots, :, self.write_positions] = v.transpose(1, 2)[self.real]
        keys = k_cache[self.slots, :, : self.keys]
        values = v_cache[self.slots, :, : self.keys]
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=self.visible, enable_gqa=True)


def _rotate(x, cos, sin_signed):
    return torch.addcmul(x * cos, torch.roll(x, x.shape[-1] // 2, dims=-1), sin_signed)


def _activation(name: str):
    from transformers.activations import ACT2FN

    if name not in ACT2FN:
        raise TinyforgeError(f"activation {name!r} is not supported by the torch serving runtime")
    return ACT2FN[name]
