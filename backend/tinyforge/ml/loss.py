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


def labelled_logits(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits at the labelled positions [n, vocabulary], their target tokens [n], the mask
    [batch, length - 1] that selected them) for one batch already on the device."""
    targets = batch.labels[:, 1:]
    selected = targets != IGNORE_INDEX
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
    return logits, targets[selected], selected


def loss_sum(model, batch: Batch) -> tuple[torch.Tensor, int]:
    """(sum of token losses, number of labelled tokens) for one batch already on the device."""
    logits, targets, selected = labelled_logits(model, batch)
    return F.cross_entropy(logits.float(), targets, reduction="sum"), int(selected.sum())


def sequence_logps(model, batch: Batch, segments: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the log-probabilities of each sequence's labelled tokens [count], the number of
    those tokens [count]) for a batch whose rows may pack several sequences; `segments` [batch,
    length] numbers the sequence each position belongs to (0 .. count - 1)."""
    logits, targets, selected = labelled_logits(model, batch)
    token_logps = -F.cross_entropy(logits.float(), targets, reduction="none")
    owner = segments[:, 1:][selected]
    sums = torch.zeros(count, dtype=token_logps.dtype, device=token_logps.device).index_add(0, owner, token_logps)
    tokens = torch.zeros(count, dtype=token_logps.dtype, device=token_logps.device).index_add(
        0, owner, torch.ones_like(token_logps))
    return sums, tokens


# ---------------------------------------------------------------------------------------------
# preference losses, each from its paper; every function returns per-example losses (the caller
# averages them) and the implicit rewards logged as curves. tests/ml/test_preference.py checks
# each against TRL's implementation on the same batch.


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, *, beta: float, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0, chosen_tokens: torch.Tensor | None = None,
             rejected_tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(losses, chosen rewards, rejected rewards) per pair; rewards are beta x log(pi / pi_ref).

    sigmoid: DPO (Rafailov et al. 2023, eq. 7), -log sigmoid(beta (r_chosen - r_rejected)).
    hinge: SLiC (Zhao et al. 2023), max(0, 1 - beta (r_chosen - r_rejected)).
    ipo: IPO (Azar et al. 2023, eq. 17) on log-ratios averaged per answer token, as its authors do.
    robust: rDPO (Chowdhury et al. 2024, eq. 8) for preferences flipped with probability label_smoothing.
    """
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    margin = beta * (chosen_ratio - rejected_ratio)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(margin)
    elif loss_type == "hinge":
        losses = torch.relu(1 - margin)
    elif loss_type == "ipo":
        per_token = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        losses = (per_token - 1 / (2 * beta)) ** 2
    elif loss_type == "robust":
        eps = label_smoothing
        losses = (-(1 - eps) * F.logsigmoid(margin) + eps * F.logsigmoid(-margin)) / (1 - 2 * eps)
    else:
        raise ValueError(f"unknown dpo loss {loss_type!r}")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012)."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(chosen_mean_logps: torch.Tensor, rejected_mean_logps: torch.Tensor, *,
              beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(losses, chosen rewards, rejected rewards) per pair: ORPO (Hong et al. 2024, eqs. 6-7).

    The log-probabilities are means per answer token (the paper's P(y|x) is length-normalised).
    loss = the chosen answer's NLL - beta x log sigmoid(log odds(chosen) - log odds(rejected)),
    beta being the paper's lambda; the rewards are beta x the mean log-probabilities.
    """
    chosen, rejected = chosen_mean_logps.float(), rejected_mean_logps.float()
    log_odds_ratio = (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))
    losses = -chosen - beta * F.logsigmoid(log_odds_ratio)
    return losses, beta * chosen.detach(), beta * rejected.detach()


def kto_kl(kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z0 (eq. 8): the batch's KL estimate from mismatched prompt/answer
    pairs, clamped at 0 and carrying no gradient."""
    return (kl_logps - ref_kl_logps).mean().detach().clamp(min=0)


def kto_loss(logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor, *,
             beta: float, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(losses, rewards) per example: KTO (Ethayarajh et al. 2024, eq. 7) with value
    1 - sigmoid(beta (r - z0)) for desirable answers and 1 - sigmoid(beta (z0 - r)) for undesirable
    ones, r = log(pi / pi_ref), weighted by lambda_D and lambda_U."""
    ratio = logps - ref_logps
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio))))
    return losses, beta * ratio.detach()
