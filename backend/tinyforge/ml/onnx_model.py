"""An exported ONNX causal language model run by ONNX Runtime: one forward step with its KV cache,
greedy decoding and sequence loss. The export verifies with it (tinyforge.ml.onnx_export) and the
serving runtime serves with it (tinyforge.serving.onnx_runtime); it is the one place that knows the
exported graph's inputs and outputs (see onnx_export's docstring for their layout).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tinyforge.errors import TinyforgeError
from tinyforge.ml.formatting import IGNORE_INDEX

ONNX_MODEL_FILE = "model.onnx"
ONNX_CONFIG_FILE = "onnx_config.json"


@dataclass
class StepOutput:
    logits: np.ndarray  # [batch, new_positions, vocab]
    past: list[np.ndarray]  # one array per past input, in onnx_config's order


class OnnxCausalLM:
    """An exported model run by ONNX Runtime: one forward step with KV cache, greedy decoding,
    and sequence loss. Batching and streaming policy belong to the caller (the serving engine).
    """

    def __init__(self, folder: str | Path, *, model_file: str = ONNX_MODEL_FILE,
                 intra_op_threads: int = 0):
        import onnxruntime as ort

        self.folder = Path(folder)
        config_path = self.folder / ONNX_CONFIG_FILE
        model_path = self.folder / model_file
        for required in (config_path, model_path):
            if not required.is_file():
                raise TinyforgeError(f"{required}: missing; this is not an ONNX export folder")
        self.config = json.loads(config_path.read_text())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads  # 0 = one per core
        self.session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self.past_names = self.config["input_names"][3:]
        self.num_layers = self.config["num_layers"]

    @property
    def max_sequence_length(self) -> int:
        return int(self.config["max_position_embeddings"])

    def empty_past(self, batch_size: int) -> list[np.ndarray]:
        shape = (batch_size, self.config["num_key_value_heads"], 0, self.config["head_dim"])
        return [np.zeros(shape, dtype=np.float32) for _ in self.past_names]

    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray,
             past: Sequence[np.ndarray]) -> StepOutput:
        """Run new positions through the model; `attention_mask` covers past and new positions."""
        feed = {
            "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64),
            "position_ids": np.ascontiguousarray(position_ids, dtype=np.int64),
        }
        feed.update(zip(self.past_names, past))
        logits, *present = self.session.run(None, feed)
        return StepOutput(logits=logits, past=present)

    def full_logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Logits for every position of one sequence, without a cache ([seq, vocab])."""
        ids = np.asarray([token_ids], dtype=np.int64)
        out = self.step(ids, np.ones_like(ids), np.arange(ids.shape[1])[None], self.empty_past(1))
        return out.logits[0]

    def greedy_generate(self, prompt_ids: Sequence[int], max_new_tokens: int,
                        eos_token_ids: Sequence[int] = ()) -> tuple[list[int], list[np.ndarray]]:
        """Greedy decoding with the KV cache; returns new tokens and the logits that chose them."""
        ids = np.asarray([prompt_ids], dtype=np.int64)
        mask = np.ones_like(ids)
        out = self.step(ids, mask, np.arange(ids.shape[1])[None], self.empty_past(1))
        tokens: list[int] = []
        step_logits: list[np.ndarray] = []
        stop = set(eos_token_ids)
        while True:
            last = out.logits[0, -1]
            step_logits.append(last)
            token = int(last.argmax())
            tokens.append(token)
            if token in stop or len(tokens) >= max_new_tokens:
                return tokens, step_logits
            position = mask.shape[1]
            mask = np.ones((1, position + 1), dtype=np.int64)
            out = self.step(np.asarray([[token]]), mask, np.asarray([[position]]), out.past)

    def heldout_loss(self, examples: Sequence) -> float:
        """Mean next-token cross-entropy over the labelled tokens of `examples`."""
        return mean_labelled_loss([self.full_logits(ex.input_ids) for ex in examples], examples)


def mean_labelled_loss(logits: Sequence[np.ndarray], examples: Sequence) -> float:
    """Mean cross-entropy of next-token predictions at positions whose label is not -100.

    One formula for both runtimes, so their held-out losses differ only by their logits.
    """
    total, count = 0.0, 0
    for sequence_logits, example in zip(logits, examples):
        predicted = np.asarray(sequence_logits[:-1], dtype=np.float64)
        targets = np.asarray(example.labels[1:])
        keep = targets != IGNORE_INDEX
        predicted, targets = predicted[keep], targets[keep]
        top = predicted.max(axis=-1, keepdims=True)
        log_norm = np.log(np.exp(predicted - top).sum(axis=-1)) + top[:, 0]
        total += float((log_norm - predicted[np.arange(len(targets)), targets]).sum())
        count += len(targets)
    if count == 0:
        raise TinyforgeError("held-out examples: no labelled tokens to measure the loss on")
    return total / count
