"""LLM-as-judge against a local server that answers like an external judge would."""

from __future__ import annotations

import asyncio

import pytest

from evaluation.judge_server import judge_server
from tinyforge.errors import TinyforgeError
from tinyforge.evaluation.endpoints import ChatEndpoint, Endpoint, EndpointUnavailable
from tinyforge.evaluation.judges import Judge, JudgeConfig, parse_score, parse_winner
from tinyforge.evaluation.runner import EvalConfig, Target, evaluate
from tinyforge.evaluation.scorers import Scorer
from tinyforge.evaluation.sets import parse_rows

ROWS = parse_rows([
    {"input": "Where is the Eiffel Tower?", "reference": "Paris"},
    {"input": "What is the largest ocean?", "reference": "the Pacific"},
    {"input": "Name a primary color", "reference": "red", "tags": ["colors"]},
])


@pytest.mark.parametrize("reply, score", [
    ("Good answer.\nScore: 4", 4),
    ("Score: 2 at first sight, but on reflection...\n**Score: 5**", 5),  # the last verdict counts
    ('{"reasoning": "matches", "score": 3}', 3),
    ("rating = 1", None),
    ("Score: 7", None),
    ("I think it deserves a five.", None),
    ('{"score": "excellent"}', None),
])
def test_pointwise_replies_parse_to_a_score_or_to_unscored(reply, score):
    assert parse_score(reply)[0] == score


@pytest.mark.parametrize("reply, winner", [
    ("B is closer.\nWinner: B", "B"),
    ("Both are right.\nWinner: tie", "tie"),
    ('{"winner": "a", "reasoning": "shorter"}', "A"),
    ("Answer A is better", None),
    ("Winner: C", None),
])
def test_pairwise_replies_parse_to_a_winner_or_to_unscored(reply, winner):
    assert parse_winner(reply)[0] == winner


def test_a_judge_prompt_must_have_the_answers_in_it():
    with pytest.raises(TinyforgeError, match="must contain {answer}"):
        JudgeConfig(mode="pointwise", prompt="Grade this: {question}")
    with pytest.raises(TinyforgeError, match="must contain {answer_a} and {answer_b}"):
        JudgeConfig(mode="pairwise", prompt="Which is better?")
    with pytest.raises(TinyforgeError, match="pointwise or pairwise"):
        JudgeConfig(mode="listwise")


def _config(judge, model: str, mode: str, **extra) -> EvalConfig:
    return EvalConfig(scorers=(Scorer("exact_match"),), judge=JudgeConfig(mode=mode, **extra),
                      judge_endpoint=Endpoint(judge.base_url, model, concurrency=4))


def _echo(judge, name="echo") -> Target:
    return Target(name, endpoint=Endpoint(judge.base_url, "echo-target"))


def test_a_pointwise_judge_scores_each_answer_and_its_reasoning_is_kept(judge):
    kept = []
    summary = evaluate(ROWS, [_echo(judge)], _config(judge, "fair-judge", "pointwise"),
                       on_chunk=lambda results, pairs: kept.extend(results))
    # The echo target repeats the question's last word: "Tower", "ocean", "color".
    assert [r.judge.score for r in kept] == [1, 1, 1]
    assert all("shares 0 words" in r.judge.reasoning and "Score: 1" in r.judge.raw for r in kept)
    judge_scores = summary.targets["echo"]["scores"]["judge"]
    assert judge_scores["mean"] == 1.0 and judge_scores["n"] == 3 and judge_scores["unscored"] == 0
    # The judge is asked concurrently, so its requests come in any order.
    (prompt,) = [r["messages"][-1]["content"] for r in judge.judged() if "Eiffel" in r["messages"][-1]["content"]]
    assert "Where is the Eiffel Tower?" in prompt and "Reference answer:\nParis" in prompt and "Tower" in prompt


def test_a_judge_that_answers_garbage_leaves_rows_unscored_and_counted_with_the_raw_reply(judge):
    kept = []
    summary = evaluate(ROWS, [_echo(judge)], _config(judge, "garbage-judge", "pointwise"),
                       on_chunk=lambda results, pairs: kept.extend(results))
    assert [r.scores["judge"] for r in kept] == [None, None, None]
    assert [r.passed["judge"] for r in kept] == [None, None, None]  # neither a pass nor a fail
    assert all("lovely question" in r.judge.raw and r.judge.to_dict()["unscored"] for r in kept)
    assert summary.targets["echo"]["scores"]["judge"] == {"mean": None, "low": None, "high": None, "n": 0, "unscored": 3}


def test_a_json_judge_is_read_too(judge):
    summary = evaluate(ROWS[:1], [_echo(judge)], _config(judge, "json-judge", "pointwise"))
    assert summary.targets["echo"]["scores"]["judge"]["mean"] == 1.0


def test_pairwise_asks_both_orders_and_a_position_biased_judge_ends_in_ties(judge):
    kept = []
    summary = evaluate(ROWS, [_echo(judge, "first"), _echo(judge, "second")],
                       _config(judge, "position-judge", "pairwise"), on_chunk=lambda results, pairs: kept.extend(pairs))
    assert len(judge.judged()) == 2 * len(ROWS)  # every row asked twice
    assert [p.verdict.orders for p in kept] == [["a", "b"]] * 3  # "A" both times names the other target each time
    assert [p.verdict.winner for p in kept] == ["tie"] * 3
    assert summary.pairs[0]["ties"] == 1.0 and summary.pairs[0]["win_rate"]["mean"] == 0.5


def test_pairwise_with_a_fair_judge_finds_the_better_target_in_both_orders(judge):
    rows = parse_rows([{"input": "Paris: which city is this?", "reference": "Paris"},
                       {"input": "Pacific, which ocean?", "reference": "the Pacific"},
                       {"input": "red or blue", "reference": "green"}])
    kept = []
    targets = [_echo(judge, "last-word"), Target("first-word", endpoint=Endpoint(judge.base_url, "first-word-target"))]
    summary = evaluate(rows, targets, _config(judge, "fair-judge", "pairwise"),
                       on_chunk=lambda results, pairs: kept.extend(pairs))
    assert [p.verdict.orders for p in kept] == [["b", "b"], ["b", "b"], ["tie", "tie"]]
    assert [p.verdict.winner for p in kept] == ["b", "b", "tie"]
    prompts = [r["messages"][-1]["content"] for r in judge.judged()]  # asked concurrently: any order
    assert sum("Answer A:\nthis\n\nAnswer B:\nParis" in p for p in prompts) == 1
    assert sum("Answer A:\nParis\n\nAnswer B:\nthis" in p for p in prompts) == 1
    pair = summary.pairs[0]
    assert (pair["first"], pair["second"], pair["judged"]) == ("last-word", "first-word", 3)
    assert pair["second_wins"] == pytest.approx(2 / 3) and pair["ties"] == pytest.approx(1 / 3)
    assert pair["win_rate"]["mean"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_pairwise_verdicts_combine_the_two_orders():
    """Agreeing orders decide; disagreeing ones are a tie; an unreadable one leaves the row unscored."""

    class Scripted:
        def __init__(self, replies):
            self.replies = list(replies)

        async def chat(self, messages, *, max_tokens):
            from tinyforge.serving.batch import Answer

            return Answer(self.replies.pop(0))

    def verdict(*replies):
        judge = Judge(Scripted(replies), JudgeConfig(mode="pairwise"))
        return asyncio.run(judge.pairwise(ROWS[0], "first answer", "second answer"))

    assert verdict("Winner: B", "Winner: A").winner == "b"  # B then A: the second target both times
    assert verdict("Winner: A", "Winner: B").winner == "a"
    assert verdict("Winner: A", "Winner: A").winner == "tie"  # position bias cancels out
    assert verdict("Winner: tie", "Winner: tie").winner == "tie"
    garbled = verdict("Winner: B", "no idea")
    assert garbled.winner is None and garbled.raw == ["Winner: B", "no idea"]


def test_an_unreachable_judge_fails_before_any_row_is_answered(judge):
    config = EvalConfig(judge=JudgeConfig(), judge_endpoint=Endpoint("http://127.0.0.1:9/v1", "fair-judge",
                                                                      max_retries=0))
    with pytest.raises(EndpointUnavailable, match=r"model 'fair-judge' at http://127.0.0.1:9/v1 cannot be used: "
                                                   r"Connection error"):
        evaluate(ROWS, [_echo(judge)], config)
    assert judge.requests == []  # the target was never asked


def test_a_judge_model_the_server_does_not_have_fails_naming_it(judge):
    with pytest.raises(EndpointUnavailable, match="'no-such-model' .* does not exist"):
        evaluate(ROWS, [_echo(judge)], _config(judge, "no-such-model", "pointwise"))


def test_the_judge_pool_runs_requests_concurrently_within_its_bound():
    rows = parse_rows([{"input": f"Question {i}", "reference": f"answer {i}"} for i in range(24)])
    with judge_server(delay_s=0.05) as server:
        evaluate(rows, [_echo(server)], _config(server, "fair-judge", "pointwise"))
    assert 1 < server.peak <= 4 + 16  # at most the judge pool's 4 plus the target pool's 16
    judge_requests = [r for r in server.judged()]
    assert len(judge_requests) == 24


def test_a_pairwise_judge_needs_two_targets(judge):
    with pytest.raises(TinyforgeError, match="add another target"):
        evaluate(ROWS, [_echo(judge)], _config(judge, "fair-judge", "pairwise"))


def test_the_endpoint_pool_bounds_concurrency():
    async def run(server):
        endpoint = ChatEndpoint(Endpoint(server.base_url, "fair-judge", concurrency=3))
        await asyncio.gather(*(endpoint.chat([{"role": "user", "content": "Say OK."}], max_tokens=2) for _ in range(12)))
        await endpoint.close()

    with judge_server(delay_s=0.05) as server:
        asyncio.run(run(server))
    assert server.peak == 3
