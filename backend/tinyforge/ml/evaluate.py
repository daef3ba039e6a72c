"""Evaluation during training: held-out loss and perplexity (training writes them as
eval_results.json beside the model), and plain greedy answers (`tinyforge generate`).

Answers scored against references are tinyforge.evaluation's: a platform run's validation rows go
through an eval job after training (tinyforge.evals), the CLI's through `tinyforge eval`.
"""

from __future__ import annotations

import math

import torch

from tinyforge.errors import TinyforgeError
from tinyforge.ml.formatting import TokenizedExample
from tinyforge.ml.loss import loss_sum
from tinyforge.ml.packing import collate

RESULTS_FILE = "eval_results.json"


@torch.no_grad()
def eval_loss(model, examples: list[TokenizedExample], *, batch_size: int, pad_token_id: int,
              device, autocast_dtype=None, combine=None) -> float:
    """Mean loss per labelled token over `examples` (batched by length, no shuffling).

    combine: when each of several processes scores its share of the rows, a function that sums
    [loss total, token count] over the processes, so that each returns the mean over all rows.
    """
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    try:
        for start in range(0, len(order), batch_size):
            batch = collate(examples, [[i] for i in order[start:start + batch_size]], pad_token_id).to(device)
            with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                s, n = loss_sum(model, batch)
            total += s.double().cpu()
            count += n
    finally:
        model.train(was_training)
    total, count = combine([float(total), count]) if combine else (float(total), count)
    if count == 0:
        raise TinyforgeError("the validation rows have no output tokens to evaluate")
    return total / count


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


@torch.no_grad()
def generate_replies(model, tokenizer, conversations: list[list[dict[str, str]]], *,
                     max_new_tokens: int = 128, batch_size: int = 8) -> list[str]:
    """Greedy replies, batched with left padding."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    replies: list[str] = []
    try:
        for start in range(0, len(conversations), batch_size):
            texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                     for c in conversations[start:start + batch_size]]
            encoded = tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True).to(device)
            output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
            new_tokens = output[:, encoded["input_ids"].shape[1]:]
            replies.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = previous_side
        model.train(was_training)
    return [r.strip() for r in replies]
