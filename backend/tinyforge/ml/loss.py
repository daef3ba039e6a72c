"""Token-level cross-entropy for causal language models, computed only where labels exist.

The output head runs only on positions that carry a label: with prompts masked that is often
half the tokens or fewer, and it spares materialising [batch, length, vocabulary] logits
(49k wide for SmolLM2) in memory. The loss is a sum over labelled tokens; the caller divides by
the number of labelled tokens of the whole optimizer step, so a step's loss is a mean over its
tokens however they were split into batches, packed or padded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tinyforge.ml.formatting import IGNORE_INDEX
from tinyforge.ml.packing import Batch


def _causal_lm(model):
    # PeftModel -> the transformers model it wraps; LoRA layers live inside it.
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _selects_hidden_states(model) -> bool:
    """Whether the head can run on selected positions only; else the model's own forward runs."""
    # Under DDP the forward must go through the wrapper for gradients to be synchronised (and the
    # wrapper has neither the model's config nor its decoder).
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return False
    lm = _causal_lm(model)
    config = lm.config
    if getattr(config, "logit_scale", None) is not None or getattr(config, "logits_scaling", None) is not None:
        return False
    return lm.get_output_embeddings() is not None and hasattr(lm, "get_decoder")


def loss_sum(model, batch: Batch) -> tuple[torch.Tensor, int]:
    """(sum of token losses, number of labelled tokens) for one batch already on the device."""
    targets = batch.labels[:, 1:]
    selected = targets != IGNORE_INDEX
    count = int(selected.sum())
    kwargs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                  position_ids=batch.position_ids, use_cache=False)
    if _selects_hidden_states(model):
        lm = _causal_lm(model)
        hidden = lm.get_decoder()(**kwargs).last_hidden_state
        logits = lm.get_output_embeddings()(hidden[:, :-1][selected])
        cap = getattr(lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
    else:
        logits = model(**kwargs).logits[:, :-1][selected]
    return F.cross_entropy(logits.float(), targets[selected], reduction="sum"), count
