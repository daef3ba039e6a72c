"""The ONNX Runtime runtime: an exported, verified ONNX model (tinyforge.ml.onnx_model) behind
the same slot interface as the PyTorch runtime, so the engine batches, streams and limits it
the same way.

The exported graph takes the past KV cache as inputs and returns it with the new positions
appended. This runtime keeps a slot cache of its own ([slots, kv_heads, max_context, head_dim] per
layer and key/value), hands each step the first `length` positions of the running slots, masks
the positions a slot has not filled yet, and copies the new positions back into the slots.
The step's new key/value always comes out at index `length` of `present`; the attention mask
and position ids, not the index, tell the model where it sits, so rows at different positions
share one step.

Weights are merged into the export: per-request LoRA adapters are not applied here
(AdapterNotShareable), an adapter is exported merged and deployed on its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyforge.errors import TinyforgeError
from tinyforge.ml.onnx_model import ONNX_CONFIG_FILE, ONNX_MODEL_FILE, OnnxCausalLM
from tinyforge.serving.runtime import BASE_ADAPTER, AdapterNotShareable, Runtime, RuntimeInfo


def is_onnx_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / ONNX_CONFIG_FILE).is_file() and (folder / ONNX_MODEL_FILE).is_file()


class OnnxRuntime(Runtime):
    """Serve an ONNX export with ONNX Runtime on the CPU."""

    def __init__(self, model: OnnxCausalLM, *, max_slots: int = 16, max_context: int | None = None) -> None:
        self.model = model
        config = model.config
        limit = model.max_sequence_length
        self.max_context = min(max_context or limit, limit)
        self.max_slots = max_slots
        shape = (max_slots, config["num_key_value_heads"], self.max_context, config["head_dim"])
        # Zeros: masked positions still enter the softmax product, and 0 * NaN from uninitialised
        # memory would poison the row.
        self.cache = [np.zeros(shape, dtype=np.float32) for _ in model.past_names]
        self.info = RuntimeInfo(
            name="onnxruntime", device="cpu",
            dtype="int8" if config.get("precision") == "int8" else "float32",
            vocab_size=int(config["vocab_size"]), max_context=self.max_context, max_slots=max_slots,
            weights_bytes=(model.folder / ONNX_MODEL_FILE).stat().st_size,
            kv_cache_bytes=sum(c.nbytes for c in self.cache),
        )

    @classmethod
    def from_folder(cls, folder: str | Path, *, intra_op_threads: int = 0, **options) -> "OnnxRuntime":
        if not is_onnx_folder(folder):
            raise TinyforgeError(f"{folder}: not an ONNX export ({ONNX_MODEL_FILE} and {ONNX_CONFIG_FILE} "
                                 "are needed; create one with `tinyforge export --format onnx`)")
        return cls(OnnxCausalLM(folder, intra_op_threads=intra_op_threads), **options)

    def prefill(self, first_slot: int, prompts: list[list[int]], adapters: list[int]):
        self._check_adapters(adapters)
        rows, length = len(prompts), max(len(p) for p in prompts)
        if first_slot + rows > self.max_slots or length > self.max_context:
            raise ValueError("prefill outside the cache")
        # Right padding: the causal mask keeps real tokens from seeing the pad after them, and
        # the pad's cache entries lie beyond the row's length, where decode masks them.
        input_ids = np.zeros((rows, length), dtype=np.int64)
        attention_mask = np.zeros((rows, length), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            input_ids[row, : len(prompt)] = prompt
            attention_mask[row, : len(prompt)] = 1
        positions = np.broadcast_to(np.arange(length, dtype=np.int64), (rows, length))
        out = self.model.step(input_ids, attention_mask, positions, self.model.empty_past(rows))
        for cache, present in zip(self.cache, out.past):
            cache[first_slot:first_slot + rows, :, :length] = present
        last = np.asarray([len(p) - 1 for p in prompts])
        return _as_engine_logits(out.logits[np.arange(rows), last])

    def decode(self, tokens: list[int], positions: list[int], adapters: list[int]):
        self._check_adapters(adapters)
        rows = len(tokens)
        where = np.asarray(positions, dtype=np.int64)
        length = int(where.max())
        past = [np.ascontiguousarray(cache[:rows, :, :length]) for cache in self.cache]
        attention_mask = np.ones((rows, length + 1), dtype=np.int64)
        attention_mask[:, :length] = np.arange(length)[None, :] < where[:, None]
        out = self.model.step(np.asarray(tokens, dtype=np.int64)[:, None], attention_mask, where[:, None], past)
        row_index = np.arange(rows)
        for cache, present in zip(self.cache, out.past):
            cache[row_index, :, where] = present[:, :, length]
        return _as_engine_logits(out.logits[:, -1])

    def move_slot(self, source: int, target: int, length: int) -> None:
        for cache in self.cache:
            cache[target, :, :length] = cache[source, :, :length]

    def _check_adapters(self, adapters: list[int]) -> None:
        if any(adapter != BASE_ADAPTER for adapter in adapters):
            raise AdapterNotShareable("an ONNX export has its adapter merged in; it serves no other adapters")

    def add_adapter(self, folder) -> int:
        raise AdapterNotShareable("an ONNX export has its adapter merged in; export the adapter merged "
                                  "(tinyforge export --format onnx) and deploy that")

    def remove_adapter(self, adapter_id: int) -> None:
        """Nothing to free: add_adapter never succeeds."""

    def adapter_bytes(self, adapter_id: int) -> int:
        return 0

    def close(self) -> None:
        self.cache = []
        self.model = None


def _as_engine_logits(logits: np.ndarray):
    """The engine samples from torch tensors, as the PyTorch runtime returns them."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
