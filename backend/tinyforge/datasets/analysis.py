"""Reading a version's JSONL file: validation with token lengths for a base model, rows as the
model sees them, and the difference between two versions.

Pure functions of a file path and a tokenizer, used by the ingest job (the report stored with
the version) and by the API (reports and previews for another base model, diffs). Files are
read line by line; nothing holds a whole dataset in memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tinyforge.errors import TinyforgeError
from tinyforge.ml.formatting import count_tokens
from tinyforge.ml.schema import MAX_LISTED, RowProblem, iter_parsed, validate_file

HISTOGRAM_BUCKETS = 20


@functools.lru_cache(maxsize=4)
def base_model_tokenizer(base_model: str):
    """(tokenizer with the chat template training will use, the model's context length or None).

    Cached per process: a preview page or report must not reload a tokenizer on every request.
    """
    from tinyforge.ml.formatting import ensure_chat_template
    from tinyforge.ml.models import load_tokenizer, resolve_base_model

    folder = resolve_base_model(base_model)
    tokenizer = load_tokenizer(folder)
    ensure_chat_template(tokenizer)
    context = None
    config = folder / "config.json"
    if config.is_file():
        context = json.loads(config.read_text()).get("max_position_embeddings")
    return tokenizer, context


def token_histogram(lengths: list[int], max_seq_length: int | None) -> dict[str, Any]:
    """Equal-width buckets over the token lengths: edges (n + 1) and counts (n), plus summary figures."""
    if not lengths:
        return {"edges": [], "counts": [], "count": 0, "min": None, "max": None, "mean": None, "p50": None,
                "p95": None, "max_seq_length": max_seq_length}
    ordered = sorted(lengths)
    top = ordered[-1]
    width = max(1, math.ceil((top + 1) / HISTOGRAM_BUCKETS))
    buckets = math.ceil((top + 1) / width)
    counts = [0] * buckets
    for length in ordered:
        counts[length // width] += 1

    def percentile(p: float) -> int:
        return ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)]

    return {"edges": [i * width for i in range(buckets + 1)], "counts": counts, "count": len(ordered),
            "min": ordered[0], "max": top, "mean": round(sum(ordered) / len(ordered), 1), "p50": percentile(0.5),
            "p95": percentile(0.95), "max_seq_length": max_seq_length}


def rejected_rows(stats: dict | None) -> tuple[list[RowProblem], int]:
    """The rows a version's import refused, from its statistics (each source's skipped records):
    the first MAX_LISTED as RowProblems, and how many there were."""
    stats = stats or {}
    problems = [RowProblem(_line_of(item["location"]), item.get("field", "row"), item["reason"], item["source"],
                           item["location"])
                for source in stats.get("sources", []) for item in source.get("skipped", [])]
    return problems[:MAX_LISTED], stats.get("skipped_count", 0)


def _line_of(location: str) -> int | None:
    """The line a record's location names ("line 3", "item 2 (line 5)"), or None ("row 17" of a query)."""
    found = re.search(r"\bline (\d+)", location)
    return int(found.group(1)) if found else None


def validation_report(path: str | Path, base_model: str | None = None, max_seq_length: int | None = None,
                      model_folder: str | None = None, rejected: tuple[list[RowProblem], int] = ([], 0)) -> dict:
    """validate_file's report as JSON, with the rows the import refused (`rejected`) among the
    invalid ones; with a base model (its name, and the folder its tokenizer is loaded from), its
    token-length histogram and the rows over its context (max_seq_length, default: the model's
    context length)."""
    counter = None
    if base_model:
        tokenizer, context = base_model_tokenizer(model_folder or base_model)
        counter = functools.partial(count_tokens, tokenizer)
        max_seq_length = max_seq_length or context
    report = validate_file(path, counter, max_seq_length, rejected).to_dict()
    lengths = report.pop("token_lengths")
    report.pop("path")
    report["base_model"] = base_model
    report["token_histogram"] = token_histogram(lengths, max_seq_length) if base_model else None
    return report


def _row_json(row) -> dict:
    return row.model_dump(exclude_none=True)


def preview_rows(path: str | Path, *, offset: int, limit: int, model_folder: str | None = None,
                 max_seq_length: int | None = None, source: str = "", fact: str = "") -> tuple[list[dict], int | None]:
    """Rows `offset`..`offset + limit` of the file with their line numbers; with a base model's
    folder, each row rendered through its chat template as segments {text, trained, tokens}.
    `source` / `fact` keep only the rows whose metadata names that document / that fact (its id
    or its text: the knowledge recipe's rows), and the count of those is returned too (None without)."""
    from tinyforge.ml.formatting import preview_messages, preview_row
    from tinyforge.ml.schema import PreferenceRow

    tokenizer = context = None
    if model_folder:
        tokenizer, context = base_model_tokenizer(model_folder)
        max_seq_length = max_seq_length or context
    filtered = bool(source or fact)
    rows = []
    matched = 0
    for number, row, problems, raw in _parsed_with_text(path):
        if filtered:
            metadata = (row.metadata if row is not None else None) or {}
            if (source and metadata.get("source") != source) or (
                    fact and fact not in (metadata.get("fact_id"), metadata.get("fact"))):
                continue
        matched += 1
        if matched <= offset or len(rows) >= limit:
            if not filtered and len(rows) >= limit:
                break
            continue
        item: dict[str, Any] = {"line": number, "valid": row is not None,
                                "row": _row_json(row) if row is not None else _text(raw),
                                "problems": [{"field": p.field, "reason": p.reason} for p in problems]}
        if tokenizer is not None and row is not None:
            try:
                segments = preview_row(tokenizer, row)
            except TinyforgeError as exc:
                raise TinyforgeError(f"line {number}: {exc}") from None
            item["segments"] = segments
            if isinstance(row, PreferenceRow):  # shown beside the chosen answer
                item["rejected_segments"] = preview_messages(
                    tokenizer, row.prompt_messages() + [{"role": "assistant", "content": row.rejected_text()}])
            item["rendered"] = "".join(s["text"] for s in segments)
            item["token_count"] = sum(s["tokens"] for s in segments)
            item["trained_token_count"] = sum(s["tokens"] for s in segments if s["trained"])
            item["over_context"] = max_seq_length is not None and item["token_count"] > max_seq_length
        rows.append(item)
    return rows, (matched if filtered else None)


def _parsed_with_text(path: str | Path):
    """iter_parsed's (line, row, problems) with each line's bytes, so an invalid line can be shown."""
    with open(path, "rb") as handle:
        lines = (raw for raw in handle if raw.strip())  # the lines iter_parsed yields, in its order
        for (number, row, problems), raw in zip(iter_parsed(path), lines):
            yield number, row, problems, raw


def _text(raw: bytes) -> str:
    """An invalid line as text (first 2,000 bytes), for showing beside its problem."""
    return raw[:2000].decode("utf-8", "replace").rstrip("\r\n")


def _fingerprints(path: str | Path):
    """(line, fingerprint, row, bytes) per line: what the model sees for valid rows (metadata
    ignored, as in duplicate detection), the bytes themselves for invalid lines."""
    from tinyforge.ml.schema import _fingerprint

    for number, row, _problems, raw in _parsed_with_text(path):
        if row is not None:
            yield number, _fingerprint(row), row, raw
        else:
            yield number, hashlib.blake2b(raw.strip(), digest_size=16).digest(), None, raw


def diff_files(old: str | Path, new: str | Path, limit: int = 100) -> dict[str, Any]:
    """Rows added (in `new`, not in `old`) and removed (in `old`, not in `new`), as multisets:
    a row present twice in `new` and once in `old` counts once as added."""
    old_counts = Counter(fp for _n, fp, _r, _t in _fingerprints(old))
    new_counts = Counter(fp for _n, fp, _r, _t in _fingerprints(new))
    added_left, removed_left = new_counts - old_counts, old_counts - new_counts

    def listed(path, remaining: Counter) -> list[dict]:
        out = []
        remaining = Counter(remaining)
        for number, fp, row, raw in _fingerprints(path):
            if len(out) >= limit:
                break
            if remaining[fp] > 0:
                remaining[fp] -= 1
                out.append({"line": number, "row": _row_json(row) if row is not None else _text(raw)})
        return out

    return {"added_count": sum(added_left.values()), "removed_count": sum(removed_left.values()),
            "unchanged_count": sum((old_counts & new_counts).values()),
            "added": listed(new, added_left) if added_left else [],
            "removed": listed(old, removed_left) if removed_left else []}
