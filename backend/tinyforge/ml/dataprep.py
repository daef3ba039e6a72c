"""A run's data as training sees it: rows read (a JSONL path or an iterable of rows), the
validation split held out (by seed), rows tokenized with the chat template, rows longer than
max_seq_length skipped with a note. `estimate_run` and `train` prepare data the same way."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tinyforge.errors import TinyforgeError
from tinyforge.ml.config import TrainConfig




@dataclass
class PreparedData:
    train: list  # the objective's units (TokenizedExample for sft)
    validation: list
    validation_rows: list  # schema rows, for generations
    skipped_long: int


def load_rows(dataset):
    from tinyforge.ml.schema import parse_row, read_rows

    if isinstance(dataset, (str, Path)):
        return [row for _, row in read_rows(dataset)]
    from pydantic import ValidationError

    rows = []
    for number, item in enumerate(dataset, start=1):
        try:
            rows.append(item if hasattr(item, "to_messages") else parse_row(item))
        except (ValidationError, ValueError) as exc:
            raise TinyforgeError(f"dataset row {number} is invalid: {exc}") from None
    if not rows:
        raise TinyforgeError("the dataset has no rows")
    return rows


def split_validation(config: TrainConfig, rows: list, validation: list | None) -> tuple[list, list]:
    """(training rows, held-out rows): the separate validation rows when given, else a seeded
    `validation_split` of `rows` (the platform's run evaluation asks for the same split again)."""
    if validation is not None:
        return rows, validation
    if config.validation_split <= 0:
        return rows, []
    if len(rows) < 2:
        raise TinyforgeError(
            f"only {len(rows)} valid row: too few to hold out a validation split; add rows, "
            "give a separate validation file, or set validation_split to 0"
        )
    order = list(range(len(rows)))
    random.Random(config.seed).shuffle(order)
    n_val = min(max(1, round(len(rows) * config.validation_split)), len(rows) - 1)
    return [rows[i] for i in sorted(order[n_val:])], [rows[i] for i in sorted(order[:n_val])]


def prepare_data(config: TrainConfig, tokenizer, dataset, validation, log) -> PreparedData:
    """Rows tokenized into the objective's units (ml/objectives.py): a tokenized row for sft, a
    pair's two sequences for dpo/orpo, an answer and its mismatched answer for kto."""
    from tinyforge.ml.objectives import check_row_kinds, objective_for

    objective = objective_for(config)
    train_rows, val_rows = split_validation(config, load_rows(dataset),
                                            load_rows(validation) if validation is not None else None)

    def tokenize(selection, what):
        check_row_kinds(objective, selection, what)
        examples, kept, longest = [], [], 0
        for row, ex in zip(selection, objective.tokenize(tokenizer, selection)):
            length = objective.longest_sequence(ex)
            if length <= config.max_seq_length:
                examples.append(ex)
                kept.append(row)
            else:
                longest = max(longest, length)
        skipped = len(selection) - len(examples)
        if selection and not examples:
            raise TinyforgeError(
                f"every {what} row is longer than max_seq_length={config.max_seq_length} tokens "
                f"(up to {longest}); raise max_seq_length or shorten the rows"
            )
        if skipped:
            log(f"skipped {skipped} {what} rows longer than max_seq_length={config.max_seq_length} tokens")
        return examples, kept, skipped

    train_examples, _, skipped_train = tokenize(train_rows, "training")
    val_examples, val_kept, skipped_val = tokenize(val_rows, "validation")
    return PreparedData(train_examples, val_examples, val_kept, skipped_train + skipped_val)
