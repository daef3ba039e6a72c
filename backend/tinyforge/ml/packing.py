"""Turning tokenized examples into batches, one of three ways (TrainConfig.packing).

Packed: examples are bin-packed (first-fit decreasing) into sequences of at most
`max_seq_length` tokens. Position ids restart at 0 for each example and the attention mask is
left out, which makes transformers build a block-diagonal causal mask from the position ids
(`masking_utils.find_packed_sequence_indices`; flash-attention kernels use the same position ids
as variable-length boundaries), so no token attends across an example boundary. The first token
of each example gets no label, exactly as in an unpadded batch, where the first token is never
predicted. Packing pays on a GPU. It also makes fewer, fuller steps per epoch, which costs eval
loss at equal tokens when the data are few.

Packed within the batch (`batch`, the CPU default): each step takes batch_size examples drawn at
random, exactly as an unpacked trainer would, and lays them out first-fit decreasing into rows as
wide as the longest of them, with the same position-id boundaries as packing. The step sees the
same examples and computes the same loss as a padded batch of them, at a fraction of the padding
(17% against 51% on the training benchmark's data), and no row is wider than a padded batch's.
Batches stay random mixtures of lengths. Length-grouped batches were 15% faster on a CPU, but
each held one band of lengths, and after one epoch of the training benchmark their model scored
0.05-0.09 worse held-out loss than the plain Trainer's random batches on every seed; this layout
scores as the Trainer does, within the spread between seeds (docs/benchmarks.md).

Length-grouped (`off`, the least memory): examples are shuffled, cut into mega-batches of 50
batches, sorted by length inside each, and padded only to the longest example of their own
batch, so little compute goes to padding (the sampler idea of transformers' `group_by_length`).
Batches hold about equal numbers of tokens, padding included, rather than batch_size examples each (fairseq's
`max_tokens` batching): a band of short examples makes a batch of many of them, a band of long
ones a batch of few, under the smallest budget that gives as many batches as batch_size examples
each would. With a fixed count the steps over short examples saw a fraction of the tokens of the
others while AdamW moved the weights about as far: after one epoch of the training benchmark
that cost 0.16 of eval loss. Equal-token batches also bound a step's memory.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from tinyforge.ml.formatting import IGNORE_INDEX, TokenizedExample

MEGABATCH_FACTOR = 50

# A batch plan: a list of rows, each row the indices of the examples laid out in it.
BatchPlan = list[list[int]]


@dataclass
class Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor | None  # always None from collate(); see there
    position_ids: torch.Tensor
    real_tokens: int  # tokens of real examples, padding excluded
    trained_tokens: int  # tokens that carry a label

    @property
    def weight(self) -> int:
        """What the supervised loss is averaged over: the labelled tokens."""
        return self.trained_tokens

    def to(self, device) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.input_ids), move(self.labels), move(self.attention_mask),
                     move(self.position_ids), self.real_tokens, self.trained_tokens)


def pack_examples(lengths: list[int], max_seq_length: int) -> list[list[int]]:
    """First-fit decreasing bin packing; returns the example indices of each packed sequence."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(max_seq_length - lengths[i])
    return bins


def plan_epoch(lengths: list[int], *, packing: str, batch_size: int, max_seq_length: int,
               seed: int, epoch: int) -> list[BatchPlan]:
    """The batches of one epoch, deterministic in (seed, epoch); `packing` is "on", "batch" or "off"."""
    rng = random.Random(seed * 1_000_003 + epoch)
    if packing == "on":
        rows = pack_examples(lengths, max_seq_length)
        rng.shuffle(rows)
        return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if packing == "batch":
        batches = []
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            rows = pack_examples([lengths[i] for i in chosen], max(lengths[i] for i in chosen))
            batches.append([[chosen[j] for j in row] for row in rows])
        return batches
    if packing != "off":
        raise ValueError(f"packing must be on, batch or off, not {packing!r}")
    megabatch = batch_size * MEGABATCH_FACTOR
    batches: list[BatchPlan] = []
    for start in range(0, len(order), megabatch):
        chunk = sorted(order[start:start + megabatch], key=lambda i: -lengths[i])
        batches.extend(_equal_token_batches(chunk, lengths, math.ceil(len(chunk) / batch_size)))
    rng.shuffle(batches)
    return batches


def _cut(chunk: list[int], lengths: list[int], budget: int) -> list[BatchPlan]:
    """Consecutive batches of `chunk` (longest first), each at most `budget` tokens padded, or
    one example alone when it is longer."""
    batches: list[BatchPlan] = []
    batch: BatchPlan = []
    for i in chunk:  # longest first: a batch is as wide as its first example
        if batch and (len(batch) + 1) * lengths[batch[0][0]] > budget:
            batches.append(batch)
            batch = []
        batch.append([i])
    if batch:
        batches.append(batch)
    return batches


def _equal_token_batches(chunk: list[int], lengths: list[int], count: int) -> list[BatchPlan]:
    """`chunk` cut into at most `count` batches under the smallest token budget that allows it
    (a binary search: fewer batches need a larger budget), so an epoch has exactly as many steps
    as with batches of batch_size examples."""
    longest = max(lengths[i] for i in chunk)
    low, high = longest, longest * len(chunk)  # high: the whole chunk in one batch
    while low < high:
        middle = (low + high) // 2
        if len(_cut(chunk, lengths, middle)) <= count:
            high = middle
        else:
            low = middle + 1
    return _cut(chunk, lengths, low)


def collate(examples: list[TokenizedExample], plan: BatchPlan, pad_token_id: int) -> Batch:
    """Tensors for one batch; rows are right-padded to the longest row of the batch."""
    rows_ids, rows_labels, rows_pos = [], [], []
    for row in plan:
        ids: list[int] = []
        labels: list[int] = []
        pos: list[int] = []
        for index in row:
            ex = examples[index]
            ids.extend(ex.input_ids)
            labels.append(IGNORE_INDEX)
            labels.extend(ex.labels[1:])
            pos.extend(range(len(ex.input_ids)))
        rows_ids.append(ids)
        rows_labels.append(labels)
        rows_pos.append(pos)
    width = max(len(r) for r in rows_ids)
    input_ids = torch.full((len(plan), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(plan), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(plan), width), dtype=torch.long)
    position_ids = torch.zeros((len(plan), width), dtype=torch.long)
    for r, (ids, labs, pos) in enumerate(zip(rows_ids, rows_labels, rows_pos)):
        n = len(ids)
        input_ids[r, :n] = torch.tensor(ids)
        labels[r, :n] = torch.tensor(labs)
        attention[r, :n] = 1
        position_ids[r, :n] = torch.tensor(pos)
        if n < width:
            # Padding continues the positions so it reads as part of the last example (never as a
            # new packed one) and is masked out by its labels.
            position_ids[r, n:] = torch.arange(pos[-1] + 1, pos[-1] + 1 + width - n)
    real = int(attention.sum())
    trained = int((labels != IGNORE_INDEX).sum())
    # No attention mask, ever: padding is on the right, so causal attention never lets a real token
    # see it (pad positions compute garbage that carries no label). Without a mask, scaled-dot-product
    # attention takes its fused causal kernel instead of materialising [batch, heads, length, length]
    # scores, which on a CPU is both faster and gigabytes smaller; packed rows get their
    # block-diagonal mask from the position ids.
    return Batch(input_ids, labels, None, position_ids, real, trained)


def padding_share(lengths: list[int], batches: list[BatchPlan]) -> float:
    """Share of the tokens computed that are padding, over a list of batches."""
    real = total = 0
    for plan in batches:
        row_lengths = [sum(lengths[i] for i in row) for row in plan]
        real += sum(row_lengths)
        total += max(row_lengths) * len(plan)
    return 0.0 if total == 0 else 1.0 - real / total
