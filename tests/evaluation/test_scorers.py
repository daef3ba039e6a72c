"""Plain scorers and bootstrap intervals."""

from __future__ import annotations

import pytest

from tinyforge.errors import TinyforgeError
from tinyforge.evaluation.scorers import Scorer, bootstrap, parse_scorer, token_f1
from tinyforge.evaluation.sets import EvalRow

ROW = EvalRow(input="Where is the Eiffel Tower?", reference="The Eiffel Tower is in Paris.",
              must_include=["Paris", "Eiffel Tower"])


def test_exact_match_folds_case_and_whitespace_only():
    scorer = Scorer("exact_match")
    assert scorer.score(ROW, "  the eiffel   TOWER is in paris. ") == 1.0
    assert scorer.score(ROW, "The Eiffel Tower is in Paris") == 0.0  # punctuation counts
    assert scorer.score(EvalRow(input="q"), "anything") is None  # nothing to compare with: unscored


def test_must_include_counts_whole_words_with_case_and_whitespace_folded():
    scorer = Scorer("must_include")
    assert scorer.score(ROW, "It is in PARIS, near the eiffel\n tower.") == 1.0
    assert scorer.score(ROW, "It is in Parisian suburbs") == 0.0  # "Paris" is not a whole word there
    assert scorer.score(ROW, "Paris.") == 0.5
    assert scorer.passed(0.5) is False and scorer.passed(1.0) is True
    assert scorer.score(EvalRow(input="q", reference="r"), "r") is None


def test_rouge_l_and_token_f1_reward_overlap():
    assert Scorer("rouge_l").score(ROW, "The Eiffel Tower is in Paris.") == pytest.approx(1.0)
    partial = Scorer("rouge_l").score(ROW, "It stands in Paris")
    assert 0 < partial < 1
    assert token_f1("The Eiffel Tower, in Paris!", "Eiffel tower in paris") == pytest.approx(1.0)  # articles, case, punctuation
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("Paris is big", "Paris") == pytest.approx(0.5)
    assert Scorer("token_f1").pass_at == 0.5 and Scorer("exact_match").pass_at == 1.0


def test_regex_and_json_scorers():
    assert Scorer("regex", pattern=r"^\d+$").score(ROW, "42") == 1.0
    assert Scorer("regex", pattern=r"^\d+$").score(ROW, "forty-two") == 0.0
    assert Scorer("json_valid").score(ROW, '{"a": 1}') == 1.0
    assert Scorer("json_valid").score(ROW, '```json\n{"a": 1}\n```') == 1.0
    assert Scorer("json_valid").score(ROW, "{'a': 1}") == 0.0
    schema = Scorer("json_schema", schema={"type": "object", "required": ["name"],
                                           "properties": {"name": {"type": "string"}}})
    assert schema.score(ROW, '{"name": "Ada"}') == 1.0
    assert schema.score(ROW, '{"name": 3}') == 0.0
    assert schema.score(ROW, "not json") == 0.0


@pytest.mark.parametrize("make, message", [
    (lambda: Scorer("bleu"), "unknown scorer 'bleu'"),
    (lambda: Scorer("regex"), "needs a pattern"),
    (lambda: Scorer("regex", pattern="(unclosed"), "is not a regular expression"),
    (lambda: Scorer("json_schema", schema={"type": "no-such-type"}), "the schema is not valid"),
    (lambda: Scorer("json_schema"), "needs a JSON Schema object"),
    (lambda: parse_scorer("rouge_l=3"), "only regex and json_schema take a value"),
    (lambda: parse_scorer("json_schema=/no/such/file.json"), "No such file"),
])
def test_bad_scorers_are_refused_saying_why(make, message):
    with pytest.raises(TinyforgeError, match=message):
        make()


def test_a_scorer_round_trips_through_its_stored_form():
    scorer = parse_scorer(r"regex=\bParis\b")
    assert Scorer.from_dict(scorer.to_dict()) == scorer and scorer.key == r"regex:\bParis\b"


def test_the_bootstrap_interval_surrounds_the_mean_and_narrows_with_more_rows():
    few = bootstrap([1.0, 0.0] * 10)
    many = bootstrap([1.0, 0.0] * 1000)
    assert few.low < few.mean == 0.5 < few.high
    assert many.high - many.low < (few.high - few.low) / 4
    assert bootstrap([1.0, 0.0] * 10) == few  # seeded: a reloaded page shows the same interval
    assert bootstrap([0.7] * 5) == bootstrap([0.7] * 5)
    constant = bootstrap([0.7] * 5)
    assert constant.low == pytest.approx(0.7) and constant.high == pytest.approx(0.7)
    assert bootstrap([]).mean is None and bootstrap([]).n == 0


def test_the_bootstrap_of_ten_thousand_rows_is_computed_in_blocks():
    values = [float(i % 3 == 0) for i in range(10_000)]
    interval = bootstrap(values)
    assert interval.n == 10_000 and interval.low < interval.mean < interval.high
    assert interval.high - interval.low < 0.03
