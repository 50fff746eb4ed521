"""Calibration sets: what they declare about their labels, and the judge's agreement with them."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from lockgate.errors import ConfigError
from lockgate.judge.calibration import (
    DEFAULT_SET,
    CalibrationResult,
    calibrate,
    calibration_rubrics,
    evaluate_agreement,
    load_calibration_set,
)
from lockgate.judge.rubrics import load_rubric
from lockgate.judge.scoring import JudgeRequest, Judgment
from lockgate.logs.redaction import Redactor
from lockgate.policy.schema import QualityConfig, StatisticsConfig

EXAMPLE = load_calibration_set()
ITEMS = EXAMPLE.items


def test_the_packaged_set_says_it_is_an_example_labelled_by_one_project_engineer() -> None:
    m = EXAMPLE.manifest
    assert DEFAULT_SET.name == "example_v1.jsonl" and m.name == "example_v1"
    assert m.labels_from == "lockgate_project"
    assert [lab.id for lab in m.labellers] == ["lockgate-engineer-1"]
    assert "one lockgate engineer" in m.method.lower() and "example" in m.description.lower()
    assert all(list(i.labels) == ["lockgate-engineer-1"] for i in ITEMS)
    assert load_calibration_set("example_v1").hash == EXAMPLE.hash  # a packaged set by name


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
    shutil.copy(DEFAULT_SET.with_name("example_v1.meta.yaml"), tmp_path / "set.meta.yaml")
    good_line = DEFAULT_SET.read_text().splitlines()[0]
    bad.write_text(good_line + "\n" + '{"id": "x", "rubric": "relevance", "prompt": "p", "response": "r", "s": 1}\n')
    with pytest.raises(ConfigError, match="line 2"):
        load_calibration_set(bad)
    bad.write_text(good_line.replace('"lockgate-engineer-1": 5', '"lockgate-engineer-1": 7') + "\n")
    with pytest.raises(ConfigError, match="not one of"):
        load_calibration_set(bad)
    bad.write_text(good_line.replace('"lockgate-engineer-1": 5', '"mallory": 5') + "\n")
    with pytest.raises(ConfigError, match="not declared"):
        load_calibration_set(bad)
    (tmp_path / "set.meta.yaml").unlink()
    bad.write_text(good_line + "\n")
    with pytest.raises(ConfigError, match="labellers"):
        load_calibration_set(bad)  # a set without its manifest says nothing about who labelled it
    (tmp_path / "set.meta.yaml").write_text("name: s\ndescription: d\nmethod: m\nlabels_from: colleagues\n")
    with pytest.raises(ConfigError) as info:
        load_calibration_set(bad)
    assert info.value.key == "labels_from"


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


def _evaluate(judgments: list[Judgment], config: QualityConfig | None = None) -> CalibrationResult:
    return evaluate_agreement(
        EXAMPLE,
        judgments,
        judge="test",
        description="test judge",
        config=config or QualityConfig(),
        statistics=StatisticsConfig(bootstrap_resamples=200),
    )


def test_a_judge_that_agrees_with_the_labels_passes_and_the_result_says_whose_labels() -> None:
    result = _evaluate(_judgments({i.id: i.score for i in ITEMS}))
    assert result.passed, result.reasons
    assert result.set_name == "example_v1" and result.labels_from == "lockgate_project"
    assert "not independent people" in result.provenance and "labels of people" not in result.provenance
    assert result.labeller_agreement == []  # one labeller: no inter-rater agreement to report
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


def _two_labeller_set(tmp_path: Path, bob_disagrees_on: int) -> Path:
    """20 relevance items labelled by alice and bob (bob differs on the first `bob_disagrees_on`), 3 unlabelled."""
    rows = []
    for n in range(20):
        alice = 1 + n % 5
        bob = 6 - alice if n < bob_disagrees_on else alice
        rows.append(
            {
                "id": f"r{n}",
                "rubric": "relevance",
                "prompt": f"q{n}",
                "response": f"a{n}",
                "labels": {"alice": alice, "bob": bob},
            }
        )
    for n in range(3):
        rows.append({"id": f"todo{n}", "rubric": "relevance", "prompt": "q", "response": "a", "labels": {}})
    path = tmp_path / "support_v1.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    path.with_name("support_v1.meta.yaml").write_text(
        "name: support_v1\ndescription: Rated support answers from our traffic.\nlabels_from: people\n"
        "method: Two support agents labelled each answer independently.\n"
        "labellers:\n  - id: alice\n    description: support agent\n  - id: bob\n    description: support agent\n"
    )
    return path


@pytest.mark.parametrize(("disagree", "ceiling"), [(0, 1.0), (6, None)])
def test_two_labellers_report_their_own_agreement(tmp_path: Path, disagree: int, ceiling: float | None) -> None:
    path = _two_labeller_set(tmp_path, disagree)
    cset = load_calibration_set(path)
    assert len(cset.items) == 20 and cset.unlabelled == 3
    assert cset.items[0].score == pytest.approx(3.0 if disagree else 1.0)  # the mean of the two labels
    truth = {i.id: i.score for i in cset.items}

    def judge(requests: list[JudgeRequest]) -> list[Judgment]:
        return [Judgment(r.item_id, r.rubric.id, score=round(truth[r.item_id])) for r in requests]

    result = calibrate(
        judge,
        judge="openai:http://x/v1:m",
        description="d",
        rubrics=["relevance"],
        config=QualityConfig(calibration_set=str(path), min_calibration_kappa=0.0, min_calibration_spearman=0.0),
        statistics=StatisticsConfig(bootstrap_resamples=200),
        redact=Redactor(),
    )
    assert result.set_name == "support_v1" and result.labels_from == "people" and result.n_unlabelled == 3
    assert [lab.id for lab in result.labellers] == ["alice", "bob"]
    assert result.provenance.startswith("the labels of people (2 labellers)")
    (pair,) = result.labeller_agreement
    assert (pair.a, pair.b, pair.n) == ("alice", "bob", 20)
    assert pair.spearman is not None and pair.kappa is not None and pair.spearman.has_interval
    if ceiling is not None:
        assert pair.spearman.value == pytest.approx(ceiling) and pair.kappa.value == pytest.approx(ceiling)
    else:
        assert pair.spearman.value < 0.7 and pair.kappa.value < 0.7
    assert result.n_items == 20 and result.n_scored == 20


def test_requested_rubrics_without_items_are_listed_as_uncalibrated(tmp_path: Path) -> None:
    path = _two_labeller_set(tmp_path, 0)
    result = evaluate_agreement(
        load_calibration_set(path),
        [],
        judge="j",
        description="d",
        config=QualityConfig(),
        statistics=StatisticsConfig(bootstrap_resamples=200),
        rubrics=["relevance", "safety", "pairwise"],
    )
    assert result.uncalibrated_rubrics == ["safety"]
    assert not result.passed


def _report(result: CalibrationResult, note: str) -> str:
    from datetime import UTC, datetime

    from lockgate.evidence import EvidenceSummary
    from lockgate.judge.report import render_quality_report
    from lockgate.judge.summary import QualitySummary

    quality = QualitySummary(
        model_name="m",
        run_key="r",
        mode="traffic",
        window_start="2026-01-01",
        window_end="2026-01-02",
        judge_note=note,
        calibration=result,
    )
    summary = EvidenceSummary(kind="quality", model_name="m", created_at=datetime(2026, 1, 2, tzinfo=UTC))
    return render_quality_report(summary, quality, {})


def test_the_report_names_the_sets_provenance(tmp_path: Path) -> None:
    from lockgate.jobs.quality import _judge_note

    example = _evaluate(_judgments({i.id: i.score for i in ITEMS}))
    html = _report(example, _judge_note(example, True, True))
    for text in ("example_v1", "lockgate-engineer-1", "One lockgate engineer wrote", "One labeller", "(1)"):
        assert text in html, text
    assert "not independent people" in html
    assert "agreement with people" not in html.lower() and "labels of people" not in html
    assert f"{len(ITEMS)} labelled items, {len(ITEMS)} of them for the rubrics judged here" in html

    path = _two_labeller_set(tmp_path, 6)
    cset = load_calibration_set(path)
    people = evaluate_agreement(
        cset,
        [Judgment(i.id, "relevance.v1", score=i.labels["alice"]) for i in cset.items],
        judge="j",
        description="d",
        config=QualityConfig(),
        statistics=StatisticsConfig(bootstrap_resamples=200),
    )
    html = _report(people, _judge_note(people, people.passed, True))
    for text in (
        "support_v1",
        "Two support agents",
        "people outside the project",
        "alice",
        "bob",
        "20 labelled items",
        "3 not labelled",
    ):
        assert text in html, text
    assert "the ceiling" in html and "items both labelled" in html
    assert "labels of people (2 labellers)" in html
