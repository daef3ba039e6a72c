"""`tinyforge eval`: an eval set answered by a model folder (and, side by side, a second one),
scored, optionally judged by a model behind an OpenAI-compatible API; a table and a JSON file."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tinyforge.errors import TinyforgeError

DEFAULT_SCORERS = ("exact_match", "must_include", "rouge_l", "token_f1")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate model folders on an eval set, side by side",
        description="Answer an eval set (JSONL or CSV rows: input, reference, must_include, tags; training rows "
                    "work too) with a model folder through the serving engine's batching, score the answers, "
                    "and print a table with 95%% bootstrap intervals. --against adds a second model side by side; "
                    "--judge-url/--judge-model grade answers with any OpenAI-compatible model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (tinyforge train's output) or base model preset")
    parser.add_argument("--against", default=None, metavar="DIR",
                        help="a second model folder or preset, answered side by side (the first is the baseline)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="the eval set file (.jsonl or .csv)")
    source.add_argument("--general", action="store_true",
                        help="the shipped general eval set (what a fine-tune may have cost in general ability)")
    parser.add_argument("--scorer", action="append", default=None, metavar="NAME",
                        help="exact_match, must_include, rouge_l, token_f1, json_valid, regex=PATTERN, "
                             f"json_schema=FILE; repeat for more (default without a judge: {', '.join(DEFAULT_SCORERS)})")
    parser.add_argument("--judge-url", default=None, metavar="URL", help="OpenAI-compatible base URL of the judge, "
                        "e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--judge-model", default=None, help="the judge's model name at --judge-url")
    parser.add_argument("--judge-mode", choices=["pointwise", "pairwise"], default=None,
                        help="pointwise (1-5 against the reference) or pairwise (needs --against); "
                             "default: pairwise with --against, else pointwise")
    parser.add_argument("--judge-key-env", default="TINYFORGE_JUDGE_API_KEY", metavar="VARIABLE",
                        help="environment variable with the judge's API key (unset: no key)")
    parser.add_argument("--judge-prompt", type=Path, default=None, help="a file with the judge prompt template")
    parser.add_argument("--judge-concurrency", type=int, default=None,
                        help="judge requests in flight at most (default: 16, the inference service's batch)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="longest answer")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    parser.add_argument("--output", type=Path, default=None, help="write the results (every row) to this JSON file")
    parser.set_defaults(func=run_eval)


def _folder(value: str) -> Path:
    path = Path(value).expanduser()
    if path.is_dir():
        return path.resolve()
    from tinyforge.ml.models import resolve_base_model

    return resolve_base_model(value)


def config_from_args(args):
    from tinyforge.evaluation.endpoints import DEFAULT_CONCURRENCY, Endpoint
    from tinyforge.evaluation.judges import JudgeConfig
    from tinyforge.evaluation.runner import EvalConfig
    from tinyforge.evaluation.scorers import parse_scorer

    if bool(args.judge_url) != bool(args.judge_model):
        raise TinyforgeError("--judge-url and --judge-model go together")
    judge = endpoint = None
    if args.judge_url:
        mode = args.judge_mode or ("pairwise" if args.against else "pointwise")
        if mode == "pairwise" and not args.against:
            raise TinyforgeError("--judge-mode pairwise compares two models: add --against DIR")
        prompt = args.judge_prompt.read_text() if args.judge_prompt else ""
        judge = JudgeConfig(mode=mode, prompt=prompt)
        endpoint = Endpoint(args.judge_url, args.judge_model, api_key=os.environ.get(args.judge_key_env) or "none",
                            concurrency=DEFAULT_CONCURRENCY if args.judge_concurrency is None else args.judge_concurrency)
    elif args.judge_mode:
        raise TinyforgeError("--judge-mode needs --judge-url and --judge-model")
    names = args.scorer if args.scorer is not None else ([] if judge else list(DEFAULT_SCORERS))
    scorers = tuple(parse_scorer(n) for n in names) if names else ()
    if args.max_new_tokens < 1:
        raise TinyforgeError("--max-new-tokens must be at least 1")
    return EvalConfig(scorers=scorers, judge=judge, judge_endpoint=endpoint, max_tokens=args.max_new_tokens)


def run_eval(args) -> int:
    from tinyforge.evaluation.runner import Target, evaluate
    from tinyforge.evaluation.sets import general_rows, read_eval_file

    config = config_from_args(args)
    rows = general_rows() if args.general else read_eval_file(args.data)
    if args.limit is not None:
        if args.limit < 1:
            raise TinyforgeError("--limit must be at least 1")
        rows = rows[: args.limit]
    model = _folder(args.model)
    targets = [Target(_label(args.model, model), folder=model)]
    if args.against:
        against = _folder(args.against)
        label = _label(args.against, against)
        if label == targets[0].name:
            label += " (against)"
        targets.append(Target(label, folder=against))
    _quiet_libraries()
    kept: dict[tuple[int, str], dict] = {}
    pairs: dict[int, list[dict]] = {}

    def keep(results, pair_results):
        for r in results:
            kept[(r.index, r.target)] = {
                "answer": r.answer.text, "error": r.answer.error, "scores": r.scores, "passed": r.passed,
                "prompt_tokens": r.answer.prompt_tokens, "completion_tokens": r.answer.completion_tokens,
                "latency_s": round(r.answer.latency_s, 4), **({"judge": r.judge.to_dict()} if r.judge else {})}
        for p in pair_results:
            pairs.setdefault(p.index, []).append({"first": p.first, "second": p.second, **p.verdict.to_dict()})

    summary = evaluate(rows, targets, config, on_chunk=keep)
    print_table(summary, [t.name for t in targets])
    if args.output:
        document = {
            "data": "general" if args.general else str(args.data),
            "targets": [{"name": t.name, "folder": str(t.folder)} for t in targets],
            "scorers": [s.to_dict() for s in config.scorers],
            "judge": ({**config.judge.to_dict(), "url": config.judge_endpoint.base_url,
                       "model": config.judge_endpoint.model} if config.judge else None),
            "summary": summary.to_dict(),
            "rows": [{"index": i, "input": row.model_dump(mode="json")["input"], "reference": row.reference,
                      "must_include": row.must_include, "tags": row.tags,
                      "answers": {t.name: kept[(i, t.name)] for t in targets if (i, t.name) in kept},
                      **({"pairwise": pairs[i]} if i in pairs else {})}
                     for i, row in enumerate(rows)],
        }
        args.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        print(f"results: {args.output}")
    return 0


def _label(given: str, folder: Path) -> str:
    return folder.name if Path(given).expanduser().is_dir() else given


def _quiet_libraries() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def _cell(score: dict) -> str:
    if score["mean"] is None:
        return f"unscored ({score['unscored']})" if score.get("unscored") else "-"
    text = f"{score['mean']:.3f} [{score['low']:.3f}, {score['high']:.3f}]"
    return text + (f" ({score['unscored']} unscored)" if score.get("unscored") else "")


def print_table(summary, names: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary.rows} rows: mean [95% interval]")
    table.add_column("score")
    for name in names:
        table.add_column(name)
    keys = list(next(iter(summary.targets.values()))["scores"]) if summary.targets else []
    for key in keys:
        table.add_row(key, *(_cell(summary.targets[n]["scores"][key]) for n in names))
    table.add_row("answers failed", *(str(summary.targets[n]["errors"]) for n in names))
    table.add_row("tokens generated", *(str(summary.targets[n]["completion_tokens"]) for n in names))
    console = Console()
    console.print(table)
    for pair in summary.pairs:
        if pair["judged"]:
            console.print(f"pairwise judge, {pair['second']} against {pair['first']}: wins {pair['second_wins']:.0%}, "
                          f"ties {pair['ties']:.0%}, losses {pair['first_wins']:.0%} of {pair['judged']} rows"
                          + (f"; {pair['unscored']} unscored" if pair["unscored"] else ""))
        else:
            console.print(f"pairwise judge: no readable verdict on any of {pair['unscored']} rows (all unscored)")
