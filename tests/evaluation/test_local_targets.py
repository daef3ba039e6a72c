"""Targets answered in this process through the serving engine's batching, and the whole path with
`tinyforge serve` on a tiny model as target and as judge."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest

from serving.conftest import free_port, make_lora_adapter
from serving.test_serve_command import start, stop
from tinyforge.evaluation.endpoints import Endpoint
from tinyforge.evaluation.judges import JudgeConfig
from tinyforge.evaluation.runner import EvalConfig, Target, evaluate
from tinyforge.evaluation.scorers import Scorer
from tinyforge.evaluation.sets import parse_rows
from tinyforge.ml.evaluate import generate_replies
from tinyforge.serving.batch import LocalModels

ROWS = parse_rows([{"input": q, "reference": "Quillport", "must_include": ["Quillport"], "tags": [t]}
                   for q, t in [("What is the capital of Zorbland?", "geo"), ("Reverse the word: hello", "words"),
                                ("The quick brown fox", "words"), ("Widget Pro supports how many devices?", "product"),
                                ("abc", "other"), ("Say hi", "other")]])


@pytest.fixture(scope="module")
def lora_dir(tiny_model_dir, tmp_path_factory):
    return make_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("eval-lora"), seed=3)


def test_local_answers_are_the_models_own_greedy_answers_batched_through_the_engine(tiny_model_dir, lora_dir):
    from tinyforge.ml.models import load_model_folder

    async def answer_all(models):
        peak = 0

        async def watch():
            nonlocal peak
            while True:
                engine = models.pool.get("base").engine
                peak = max(peak, engine.running)
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        answers = await asyncio.gather(*(models.answer(name, row.messages(), max_tokens=12)
                                         for row in ROWS for name in ("base", "lora")))
        watcher.cancel()
        return answers, peak

    with LocalModels({"base": tiny_model_dir, "lora": lora_dir}) as models:
        # The adapter shares its base's engine: both targets' rows go into the same batches.
        assert models.pool.get("lora").engine is models.pool.get("base").engine
        answers, peak = asyncio.run(answer_all(models))
    assert peak >= 4
    model, tokenizer = load_model_folder(tiny_model_dir)
    plain = generate_replies(model, tokenizer, [row.messages() for row in ROWS], max_new_tokens=12)
    assert [a.text for a in answers[0::2]] == plain
    assert [a.text for a in answers[1::2]] != plain  # the adapter changes the answers
    assert all(a.error is None and 0 < a.completion_tokens <= 12 and a.prompt_tokens > 5 for a in answers)


def test_a_prompt_longer_than_the_context_is_an_answer_error_and_unscored(tiny_model_dir):
    rows = parse_rows([{"input": "word " * 400, "reference": "x"}, {"input": "hi", "reference": "x"}])
    kept = []
    summary = evaluate(rows, [Target("tiny", folder=tiny_model_dir)],
                       EvalConfig(scorers=(Scorer("exact_match"),), max_tokens=4),
                       on_chunk=lambda results, pairs: kept.extend(results))
    assert "the model's context is 256" in kept[0].answer.error and kept[0].scores == {"exact_match": None}
    assert kept[1].answer.error is None and kept[1].scores == {"exact_match": 0.0}
    assert summary.targets["tiny"]["errors"] == 1 and summary.targets["tiny"]["scores"]["exact_match"]["unscored"] == 1


def test_rows_go_in_chunks_and_a_stop_request_ends_between_them(tiny_model_dir):
    rows = parse_rows([{"input": f"Question {i}", "reference": "x"} for i in range(10)])
    chunks = []
    summary = evaluate(rows, [Target("tiny", folder=tiny_model_dir)],
                       EvalConfig(scorers=(Scorer("exact_match"),), max_tokens=2, chunk_rows=4),
                       on_chunk=lambda results, pairs: chunks.append([r.index for r in results]),
                       should_stop=lambda: len(chunks) == 2)
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7]] and summary.rows == 8


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def served_tiny(tiny_model_dir):
    """`tinyforge serve` in its own process, as a user starts it."""
    port = free_port()
    process = start(["--model", f"tiny={tiny_model_dir}", "--port", str(port), "--threads", "1"],
                    {**os.environ, "TINYFORGE_API_KEY": "judge-key"})
    try:
        deadline = time.monotonic() + 120
        while not _ready(port):
            assert process.poll() is None and time.monotonic() < deadline, stop(process)
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def test_the_whole_path_with_tinyforge_serve_as_target_and_judge(served_tiny, tiny_model_dir):
    served = Endpoint(served_tiny, "tiny", api_key="judge-key")
    targets = [Target("local", folder=tiny_model_dir), Target("served", endpoint=served)]
    kept, pairs = [], []
    summary = evaluate(ROWS, targets, EvalConfig(scorers=(Scorer("must_include"), Scorer("rouge_l")),
                                                 judge=JudgeConfig(mode="pairwise", max_tokens=16),
                                                 judge_endpoint=served, max_tokens=8),
                       on_chunk=lambda results, pair_results: (kept.extend(results), pairs.extend(pair_results)))
    by_target = {name: [r.answer.text for r in kept if r.target == name] for name in ("local", "served")}
    # The same weights, greedy, through the same engine code: the same answers in and out of process.
    assert by_target["local"] == by_target["served"]
    tokens = {name: [r.answer.completion_tokens for r in kept if r.target == name] for name in ("local", "served")}
    assert tokens["local"] == tokens["served"] and all(tokens["local"])
    # A two-layer model makes a poor judge: every verdict it writes is kept, readable or not.
    assert len(pairs) == len(ROWS) and all(len(p.verdict.raw) == 2 for p in pairs)
    pair = summary.pairs[0]
    assert pair["judged"] + pair["unscored"] == len(ROWS)
    assert set(summary.targets) == {"local", "served"}
    assert summary.targets["served"]["scores"]["rouge_l"]["n"] == len(ROWS)


def test_a_target_the_server_does_not_serve_fails_the_evaluation_naming_it(served_tiny):
    from tinyforge.evaluation.endpoints import EndpointUnavailable

    with pytest.raises(EndpointUnavailable, match="model 'gone' at .* cannot be used"):
        evaluate(ROWS, [Target("gone", endpoint=Endpoint(served_tiny, "gone", api_key="judge-key"))],
                 EvalConfig(scorers=(Scorer("exact_match"),), max_tokens=2))
