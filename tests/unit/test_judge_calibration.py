"""The human-labelled calibration set and the judge's agreement with it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lockgate.errors import ConfigError
from lockgate.judge.calibration import (
    DEFAULT_SET,
    calibrate,
    calibration_rubrics,
    evaluate_agreement,
    load_calibration_set,
)
from lockgate.judge.rubrics import load_rubric
from lockgate.judge.scoring import JudgeRequest, Judgment
from lockgate.logs.redaction import Redactor
from lockgate.settings import QualityConfig, StatisticsConfig

ITEMS = load_calibration_set()


def test_the_set_is_big_enough_and_has_clear_good_and_bad_answers() -> None:
    assert len(ITEMS) >= 60
    by_rubric = Counter(i.rubric for i in ITEMS)
    assert set(by_rubric) == {"relevance", "faithfulness", "safety", "refusal"}
    for rubric in by_rubric:
        rubric_obj = load_rubric(rubric)
        scores = {i.score for i in ITEMS if i.rubric == rubric}
        assert rubric_obj.min_value in scores and rubric_obj.max_value in scores, rubric
    assert all(i.context for i in ITEMS if i.rubric == "faithfulness")
    assert len({i.id for i in ITEMS}) == len(ITEMS)


def test_bad_lines_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "set.jsonl"
    good_line = DEFAULT_SET.read_text().splitlines()[0]
    bad.write_text(good_line + "\n" + '{"id": "x", "rubric": "relevance", "prompt": "p", "response": "r"}\n')
    with pytest.raises(ConfigError, match="line 2"):
        load_calibration_set(bad)
    bad.write_text(good_line.replace('"score": 5', '"score": 7') + "\n")
    with pytest.raises(ConfigError, match="not one of"):
        load_calibration_set(bad)


def test_pairwise_is_calibrated_on_relevance() -> None:
    assert calibration_rubrics(["pairwise"]) == ["relevance"]
    assert calibration_rubrics(["safety", "pairwise"]) == ["safety", "relevance"]
    assert calibration_rubrics(["relevance", "safety"]) == ["relevance", "safety"]


def _judgments(score_of: dict[str, float | None]) -> list[Judgment]:
    out = []
    for item in ITEMS:
        s = score_of.get(item.id)
        rid = load_rubric(item.rubric).id
        out.append(Judgment(item.id, rid, score=s) if s is not None else Judgment.unscored(item.id, rid, "timeout"))
    return out


def _evaluate(judgments: list[Judgment], config: QualityConfig | None = None) -> object:
    return evaluate_agreement(
        ITEMS,
        judgments,
        judge="test",
        description="test judge",
        set_path=str(DEFAULT_SET),
        set_hash="h",
        config=config or QualityConfig(),
        statistics=StatisticsConfig(bootstrap_resamples=200),
    )


def test_a_judge_that_agrees_with_people_passes() -> None:
    result = _evaluate(_judgments({i.id: i.score for i in ITEMS}))
    assert result.passed, result.reasons
    assert result.spearman.value == pytest.approx(1.0)
    assert result.kappa.value == pytest.approx(1.0)
    assert result.n_scored == len(ITEMS)
    assert {r.rubric for r in result.per_rubric} == {"relevance.v1", "faithfulness.v1", "safety.v1", "refusal.v1"}


def test_an_inverted_judge_fails_with_reasons() -> None:
    def flip(item_rubric: str, score: float) -> float:
        r = load_rubric(item_rubric)
        return r.max_value + r.min_value - score

    result = _evaluate(_judgments({i.id: flip(i.rubric, i.score) for i in ITEMS}))
    assert not result.passed
    assert result.spearman.value < 0
    assert any("Spearman" in r for r in result.reasons)
    assert any("kappa" in r for r in result.reasons)


def test_a_judge_that_rarely_answers_fails_even_when_right() -> None:
    few = {i.id: i.score for i in ITEMS[::3]}
    result = _evaluate(_judgments(few))
    assert not result.passed
    assert result.unscored == {"timeout": len(ITEMS) - len(few)}
    assert any("scored" in r for r in result.reasons)


def test_thresholds_come_from_the_policy() -> None:
    noisy = {i.id: (i.score if n % 4 else load_rubric(i.rubric).min_value) for n, i in enumerate(ITEMS)}
    lenient = _evaluate(_judgments(noisy), QualityConfig(min_calibration_spearman=0.1, min_calibration_kappa=0.1))
    strict = _evaluate(_judgments(noisy), QualityConfig(min_calibration_spearman=0.99, min_calibration_kappa=0.99))
    assert lenient.passed and not strict.passed


def test_calibrate_redacts_and_caches_local_judges(tmp_path: Path) -> None:
    seen: list[list[JudgeRequest]] = []
    truth = {i.id: i.score for i in ITEMS}

    def judge(requests: list[JudgeRequest]) -> list[Judgment]:
        seen.append(requests)
        return [Judgment(r.item_id, r.rubric.id, score=truth[r.item_id]) for r in requests]

    kwargs = dict(
        description="d",
        rubrics=["relevance", "safety", "pairwise"],
        config=QualityConfig(),
        statistics=StatisticsConfig(bootstrap_resamples=200),
        redact=Redactor(),
        cache_dir=tmp_path,
    )
    first = calibrate(judge, judge="local:/m:abc", **kwargs)
    assert first.passed and not first.cached
    asked = seen[0]
    assert {r.rubric.name for r in asked} == {"relevance", "safety"}
    # The safety items that leak an email or a card number reach the judge redacted.
    texts = " ".join(r.response for r in asked)
    assert "jane.doe@example.com" not in texts and "[EMAIL]" in texts
    assert "4111 1111 1111 1111" not in texts
    second = calibrate(judge, judge="local:/m:abc", **kwargs)
    assert second.cached and len(seen) == 1
    # An endpoint's model can change behind its name: never cached.
    calibrate(judge, judge="openai:http://x/v1:m", **kwargs)
    calibrate(judge, judge="openai:http://x/v1:m", **kwargs)
    assert len(seen) == 3
