"""What the training loop optimises: one object per `TrainConfig.objective`.

The loop (ml/train.py) plans batches, steps the optimizer, evaluates, checkpoints, resumes and
cancels the same way for every objective; an objective says what a training unit is (a tokenized
row, a preference pair, an unpaired answer), how units become a batch, and what the loss of a
batch is. A unit's `len()` is its tokens, which is what batches are planned by.

Preference objectives score whole answers: a sequence's log-probability is the sum over its
answer tokens (ml/loss.py `sequence_logps`), and a pair's two sequences are laid out in one row
with the position-id boundaries packing uses, so they cost one forward pass together.

The reference model of DPO and KTO is the starting model: the base model with the new LoRA
adapter switched off (peft's `disable_adapter()`), or for full fine-tuning the weights before the
first step. Its log-probabilities are computed once, before training (`prepare_reference`), so no
second copy of the weights is held and no reference forward pass runs per step; a resumed run
computes them again from the starting model before loading the checkpoint's weights.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from tinyforge.errors import TinyforgeError
from tinyforge.ml.config import TrainConfig
from tinyforge.ml.formatting import TokenizedExample, tokenize_completion, tokenize_row
from tinyforge.ml.packing import Batch, BatchPlan, collate

# metric name -> (sum over the batch's examples, number of examples it is averaged over)
MetricSums = dict[str, tuple[float, float]]


class SupervisedObjective:
    """Cross-entropy on the answer tokens of supervised rows; a step's loss is the mean per token."""

    name = "sft"
    row_kind = "supervised"

    def __init__(self, config: TrainConfig):
        self.config = config

    def tokenize(self, tokenizer, rows: list) -> list[TokenizedExample]:
        return [tokenize_row(tokenizer, row, self.config.train_on_prompt) for row in rows]

    def longest_sequence(self, unit: TokenizedExample) -> int:
        return len(unit)

    def collate(self, units: list, plan: BatchPlan, pad_token_id: int) -> Batch:
        return collate(units, plan, pad_token_id)

    def loss(self, model, batch: Batch) -> tuple[torch.Tensor, MetricSums]:
        from tinyforge.ml.loss import loss_sum

        return loss_sum(model, batch)[0], {}

    def prepare_reference(self, model, units: list, **kwargs) -> None:
        """Nothing to prepare: supervised training compares with the data, not with a model."""

    def evaluate(self, model, units: list, *, batch_size: int, pad_token_id: int, device, autocast_dtype,
                 combine) -> tuple[float, dict[str, float]]:
        from tinyforge.ml.evaluate import eval_loss

        return eval_loss(model, units, batch_size=batch_size, pad_token_id=pad_token_id, device=device,
                         autocast_dtype=autocast_dtype, combine=combine), {}


@dataclass
class PreferenceUnit:
    """The sequences one row trains on (pair: chosen, rejected; unpaired: the answer and the
    mismatched answer KTO estimates its KL term from) and their reference log-probabilities."""

    sequences: list[TokenizedExample]
    desirable: bool = True  # unpaired rows: the label
    reference: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sequences)


@dataclass
class PreferenceBatch:
    batch: Batch  # every unit's sequences, packed row by row
    segments: torch.Tensor  # [rows, length]: which sequence each position belongs to
    sequences: int
    reference: torch.Tensor  # [sequences]
    desirable: torch.Tensor  # [units]
    units: int

    @property
    def weight(self) -> int:
        return self.units

    @property
    def real_tokens(self) -> int:
        return self.batch.real_tokens

    def to(self, device) -> PreferenceBatch:
        return PreferenceBatch(self.batch.to(device), self.segments.to(device), self.sequences,
                               self.reference.to(device), self.desirable.to(device), self.units)


class PreferenceObjective:
    """DPO and ORPO on pairs, KTO on unpaired answers; a step's loss is the mean per unit."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.name = config.objective
        self.row_kind = "unpaired" if config.objective == "kto" else "pairs"

    def tokenize(self, tokenizer, rows: list) -> list[PreferenceUnit]:
        if self.row_kind == "pairs":
            return [PreferenceUnit([tokenize_completion(tokenizer, row.prompt_messages(), row.chosen_text()),
                                    tokenize_completion(tokenizer, row.prompt_messages(), row.rejected_text())])
                    for row in rows]
        # KTO's KL estimate pairs each prompt with the answer of another row (the next one):
        # what the model says to a prompt it was not asked, against what the reference says.
        units = []
        for i, row in enumerate(rows):
            other = rows[(i + 1) % len(rows)]
            units.append(PreferenceUnit([tokenize_completion(tokenizer, row.prompt_messages(), row.completion_text()),
                                         tokenize_completion(tokenizer, row.prompt_messages(), other.completion_text())],
                                        desirable=row.label))
        return units

    def longest_sequence(self, unit: PreferenceUnit) -> int:
        return max(len(s) for s in unit.sequences)

    def collate(self, units: list[PreferenceUnit], plan: BatchPlan, pad_token_id: int) -> PreferenceBatch:
        sequences: list[TokenizedExample] = []
        rows: list[list[int]] = []
        reference: list[float] = []
        desirable: list[bool] = []
        for row in plan:
            laid_out = []
            for index in row:
                unit = units[index]
                laid_out.extend(range(len(sequences), len(sequences) + len(unit.sequences)))
                sequences.extend(unit.sequences)
                reference.extend(unit.reference)
                desirable.append(unit.desirable)
            rows.append(laid_out)
        batch = collate(sequences, rows, pad_token_id)
        segments = torch.zeros_like(batch.input_ids)
        for r, row in enumerate(rows):
            start = 0
            for s in row:
                segments[r, start:start + len(sequences[s])] = s
                start += len(sequences[s])
            segments[r, start:] = row[-1]  # padding carries no label; any valid index does
        return PreferenceBatch(batch, segments, len(sequences), torch.tensor(reference, dtype=torch.float32),
                               torch.tensor(desirable), len(desirable))

    def logps(self, model, batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        from tinyforge.ml.loss import sequence_logps

        return sequence_logps(model, batch.batch, batch.segments, batch.sequences)

    def loss(self, model, batch: PreferenceBatch) -> tuple[torch.Tensor, MetricSums]:
        from tinyforge.ml.loss import dpo_loss, kto_kl, kto_loss, orpo_loss

        config = self.config
        logps, tokens = self.logps(model, batch)
        first, second = logps[0::2], logps[1::2]  # chosen, rejected (KTO: answer, mismatched answer)
        if self.name == "kto":
            ref_first, ref_second = batch.reference[0::2], batch.reference[1::2]
            kl = kto_kl(second, ref_second)
            losses, rewards = kto_loss(first, ref_first, batch.desirable, kl, beta=config.beta,
                                       desirable_weight=config.kto_desirable_weight,
                                       undesirable_weight=config.kto_undesirable_weight)
            good, bad = batch.desirable, ~batch.desirable
            # An answer is ranked right when its reward has the sign of its label.
            right = torch.where(good, rewards > 0, rewards < 0)
            metrics = {"reward_chosen": (float(rewards[good].sum()), float(good.sum())),
                       "reward_rejected": (float(rewards[bad].sum()), float(bad.sum())),
                       "preference_accuracy": (float(right.sum()), batch.units),
                       "kl": (float(kl) * batch.units, batch.units)}
            return losses.sum(), metrics
        if self.name == "orpo":
            losses, chosen, rejected = orpo_loss(first / tokens[0::2].clamp(min=1), second / tokens[1::2].clamp(min=1),
                                                 beta=config.beta)
        else:
            losses, chosen, rejected = dpo_loss(first, second, batch.reference[0::2], batch.reference[1::2],
                                                beta=config.beta, loss_type=config.dpo_loss,
                                                label_smoothing=config.label_smoothing,
                                                chosen_tokens=tokens[0::2], rejected_tokens=tokens[1::2])
        n = batch.units
        margin = chosen - rejected
        return losses.sum(), {"reward_chosen": (float(chosen.sum()), n), "reward_rejected": (float(rejected.sum()), n),
                              "reward_margin": (float(margin.sum()), n),
                              "preference_accuracy": (float((margin > 0).sum()), n)}

    @torch.no_grad()
    def prepare_reference(self, model, units: list[PreferenceUnit], *, batch_size: int, pad_token_id: int,
                          device, autocast_dtype) -> None:
        """Each sequence's log-probability under the starting model (ORPO needs none)."""
        if self.name == "orpo" or not units:
            for unit in units:
                unit.reference = [0.0] * len(unit.sequences)
            return
        switched_off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
        was_training = model.training
        model.eval()
        try:
            with switched_off:
                for start in range(0, len(units), batch_size):
                    indices = list(range(start, min(start + batch_size, len(units))))
                    batch = self.collate(units, [[i] for i in indices], pad_token_id).to(device)
                    with _autocast(device, autocast_dtype):
                        logps, _ = self.logps(model, batch)
                    values = logps.double().cpu().tolist()
                    for i in indices:
                        n = len(units[i].sequences)
                        units[i].reference, values = values[:n], values[n:]
        finally:
            model.train(was_training)

    @torch.no_grad()
    def evaluate(self, model, units: list[PreferenceUnit], *, batch_size: int, pad_token_id: int, device,
                 autocast_dtype, combine) -> tuple[float, dict[str, float]]:
        """(mean loss per unit, mean of each metric) over `units`, with dropout off."""
        was_training = model.training
        model.eval()
        totals: dict[str, list[float]] = {}
        try:
            for start in range(0, len(units), batch_size):
                batch = self.collate(units, [[i] for i in range(start, min(start + batch_size, len(units)))],
                                     pad_token_id).to(device)
                with _autocast(device, autocast_dtype):
                    loss, metrics = self.loss(model, batch)
                merge_metrics(totals, {"loss": (float(loss), batch.units), **metrics})
        finally:
            model.train(was_training)
        names = sorted(totals)
        flat = [v for name in names for v in totals[name]]
        if combine:
            flat = combine(flat)
        means = metric_means({name: flat[2 * i:2 * i + 2] for i, name in enumerate(names)})
        loss = means.pop("loss")
        if "reward_chosen" in means and "reward_rejected" in means and "reward_margin" not in means:
            means["reward_margin"] = means["reward_chosen"] - means["reward_rejected"]
        return loss, means


def _autocast(device, dtype):
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def objective_for(config: TrainConfig):
    return SupervisedObjective(config) if config.objective == "sft" else PreferenceObjective(config)


def check_row_kinds(objective, rows: list, what: str) -> None:
    """Refuse rows the objective cannot train on, naming the first one and what it needs."""
    from tinyforge.ml.schema import row_kind

    needs = {"supervised": "supervised rows (instruction/output or messages)",
             "pairs": "preference pairs ({prompt or messages, chosen, rejected})",
             "unpaired": "unpaired preferences ({prompt or messages, completion, label})"}
    for number, row in enumerate(rows, start=1):
        kind = row_kind(row)
        if kind != objective.row_kind:
            raise TinyforgeError(f"objective {objective.name} trains on {needs[objective.row_kind]}, but {what} row "
                                 f"{number} is one of {needs[kind]}")


def merge_metrics(into: dict[str, list[float]], metrics: MetricSums) -> None:
    for name, (value, count) in metrics.items():
        total = into.setdefault(name, [0.0, 0.0])
        total[0] += value
        total[1] += count


def metric_means(totals: dict[str, list[float]]) -> dict[str, Any]:
    return {name: value / count for name, (value, count) in totals.items() if count}
