"""The runtime interface: what the engine needs from a model to batch generation.

A runtime owns the weights and a KV cache of `max_slots` rows of `max_context` positions. The
engine decides which request sits in which slot; the runtime computes logits. The engine keeps
the running requests in slots 0..B-1 (it moves the last one into a freed slot), so a decode step
always works on the first B rows and never gathers the cache.

PyTorch (tinyforge.serving.torch_runtime) is the first implementation; ONNX Runtime plugs in
beside it by implementing the same methods over an exported model with its KV cache as inputs
and outputs.

A runtime with `reuses_prefix` also lets the engine keep what a finished request left in its
slot and start a later prompt after the part of it already there (prefill's `cached`, and
swap_slots to move a cached prefix without losing the slot it lands on); the others compute
every prompt whole.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

BASE_ADAPTER = 0  # adapter id of "no adapter": the base weights alone


@dataclass(frozen=True)
class RuntimeInfo:
    """What the engine and the API need to know about a loaded model."""

    name: str  # "torch", "onnxruntime"
    device: str  # "cpu", "cuda:0"
    dtype: str  # "float32", "bfloat16"
    vocab_size: int
    max_context: int  # positions per slot: prompt plus generated tokens never exceed it
    max_slots: int  # requests decoded together at most
    weights_bytes: int
    kv_cache_bytes: int


class Runtime(ABC):
    info: RuntimeInfo
    # Which precision serves and why (tinyforge.serving.precision.PrecisionChoice), where the
    # runtime chose one; the pool reports it on the deployment.
    precision_choice = None
    # Whether prefill takes `cached` and swap_slots works (the engine's prefix cache).
    reuses_prefix = False

    @abstractmethod
    def prefill(self, first_slot: int, prompts: list[list[int]], adapters: list[int]):
        """Run whole prompts into slots first_slot, first_slot+1, ...; return float32 logits of
        each prompt's last position, shape [len(prompts), vocab].

        A runtime with `reuses_prefix` takes a keyword `cached` too: prompt i's slot already holds
        the KV of its first cached[i] tokens (cached[i] < len(prompts[i])), which are not computed
        again."""

    @abstractmethod
    def decode(self, tokens: list[int], positions: list[int], adapters: list[int]):
        """One step for slots 0..len(tokens)-1: token i sits at positions[i] of slot i (its
        cache holds positions 0..positions[i]-1). Return float32 logits [len(tokens), vocab]."""

    @abstractmethod
    def move_slot(self, source: int, target: int, length: int) -> None:
        """Copy the first `length` cached positions of slot `source` into slot `target`."""

    def swap_slots(self, first: int, second: int, length: int) -> None:
        """Exchange the first `length` cached positions of two slots (runtimes with `reuses_prefix`)."""
        raise NotImplementedError(f"the {self.info.name} runtime does not reuse cached prefixes")

    @abstractmethod
    def add_adapter(self, folder) -> int:
        """Load a LoRA adapter folder onto these base weights; return its id (never BASE_ADAPTER).

        Raises AdapterNotShareable when the adapter changes more than low-rank deltas of linear
        layers (new embeddings, DoRA, ...); the caller then loads it merged, on its own weights."""

    @abstractmethod
    def remove_adapter(self, adapter_id: int) -> None:
        """Free an adapter's weights."""

    @abstractmethod
    def adapter_bytes(self, adapter_id: int) -> int:
        """Memory held by one adapter (what a LoRA deployment adds to its shared base)."""

    def close(self) -> None:
        """Release the weights and the cache."""


class AdapterNotShareable(Exception):
    """This adapter cannot be applied per request on shared base weights; the message says why."""
