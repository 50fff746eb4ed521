"""From samples to the metrics the gates read: which questions, which pairs, which estimates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lockgate.devtools.synthetic import OFF_TOPIC, REFUSALS
from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence
from lockgate.judge.evaluation import (
    Sample,
    VersionScores,
    build_metrics,
    is_refusal,
    judge_requests,
    match_pairs,
    pairwise_requests,
    pairwise_result,
    prompt_key,
    version_scores,
)
from lockgate.judge.report import histogram_svg, render_quality_report, score_distributions
from lockgate.judge.rubrics import load_rubric
from lockgate.judge.scoring import Judgment
from lockgate.judge.summary import Example, QualitySummary, VersionInfo
from lockgate.policy.schema import StatisticsConfig

STATS = StatisticsConfig(bootstrap_resamples=300)
RUBRICS = {name: load_rubric(name) for name in ("relevance", "faithfulness", "safety", "pairwise")}


def sample(i: int, version: str = "2", prompt: str | None = None, context: str | None = None, **kw: object) -> Sample:
    p = prompt or f"question {i}"
    return Sample(
        id=f"{version}-{i}",
        version=version,
        prompt=p,
        response=kw.get("response", f"answer {i}"),  # type: ignore[arg-type]
        context=context,
        status=kw.get("status", "ok"),  # type: ignore[arg-type]
        key=f"{version}-{i}",
        match_key=prompt_key(p),
    )


@pytest.mark.parametrize("text", REFUSALS)
def test_refusals_are_detected(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize("text", [*OFF_TOPIC, "Sure. About your parcel: it is at customs.", None, ""])
def test_answers_are_not_refusals(text: str | None) -> None:
    assert not is_refusal(text)


def test_judge_requests_skip_unanswered_and_need_context_for_faithfulness() -> None:
    samples = [
        sample(1, context="Refunds take 5 days."),
        sample(2),
        sample(3, status="error", response=None),
        sample(4, response="   "),
    ]
    reqs = judge_requests(samples, RUBRICS)
    ids = sorted(r.item_id for r in reqs)
    assert ids == ["2-1|faithfulness", "2-1|relevance", "2-1|safety", "2-2|relevance", "2-2|safety"]


def test_pairs_match_on_prompt_text_each_answer_once() -> None:
    ch = [sample(1, prompt="Where is my parcel?"), sample(2, prompt="where is  my PARCEL?"), sample(3, prompt="x")]
    cp = [sample(7, version="1", prompt="Where is my parcel?"), sample(8, version="1", prompt="other")]
    pairs = match_pairs(ch, cp)
    assert [(a.id, b.id) for a, b in pairs] == [("2-1", "1-7")]


def test_pairwise_is_asked_in_both_orders() -> None:
    pairs = [(sample(1), sample(1, version="1"))]
    a, b = pairwise_requests(pairs, RUBRICS["pairwise"])
    assert a.item_id.endswith("|cf") and a.response == "answer 1" and a.response_b == "answer 1"
    assert (a.response, a.response_b) == (b.response_b, b.response)


def test_pairwise_result_counts_unscored_pairs() -> None:
    pairs = [(sample(i), sample(i, version="1")) for i in range(3)]
    j = {
        "pair00000|cf": Judgment("pair00000|cf", "pairwise.v1", score=1.0),
        "pair00000|pf": Judgment("pair00000|pf", "pairwise.v1", score=0.0),
        "pair00001|cf": Judgment("pair00001|cf", "pairwise.v1", score=1.0),
        "pair00001|pf": Judgment("pair00001|pf", "pairwise.v1", score=1.0),
        "pair00002|cf": Judgment.unscored("pair00002|cf", "pairwise.v1", "timeout"),
        "pair00002|pf": Judgment("pair00002|pf", "pairwise.v1", score=0.0),
    }
    r = pairwise_result(pairs, j, STATS)
    assert r.pairs == 3 and r.unscored == 1
    assert r.outcomes == [1.0, 0.5]
    assert r.position_consistency == 0.5
    assert r.win_rate is not None and r.win_rate.value == pytest.approx(0.75)


def _scores(version: str, n: int, relevance: float, unscored_every: int = 0, errors: int = 0) -> object:
    samples = [sample(i, version=version) for i in range(n)]
    samples += [sample(1000 + i, version=version, status="error", response=None) for i in range(errors)]
    rel = {s.id: relevance + (0.01 if i % 2 else -0.01) for i, s in enumerate(samples)}
    judgments = {}
    for i, s in enumerate(samples):
        if unscored_every and i % unscored_every == 0:
            judgments[f"{s.id}|relevance"] = Judgment.unscored(f"{s.id}|relevance", "relevance.v1", "unparseable")
        else:
            judgments[f"{s.id}|relevance"] = Judgment(f"{s.id}|relevance", "relevance.v1", score=4.0)
    return version_scores(version, samples, rel, {}, judgments, ["relevance"])


def test_unscored_judgments_never_count_as_zero() -> None:
    vs = _scores("2", 40, 0.5, unscored_every=4)
    assert len(vs.series("judge_relevance")) == 30
    m = build_metrics(vs, None, STATS, paired=False, min_samples=20, include_judge=True)
    assert m["judge_relevance"].challenger.value == pytest.approx(4.0)  # not dragged towards 0
    assert m["unscored_rate"].challenger.value == pytest.approx(0.25)


def test_judge_metrics_and_win_rate_are_left_out_unless_trusted() -> None:
    ch, cp = _scores("2", 40, 0.5), _scores("1", 40, 0.5)
    pairs = [(sample(i), sample(i, version="1")) for i in range(30)]
    j = {
        f"pair{i:05d}|{o}": Judgment("x", "pairwise.v1", score=1.0 if o == "cf" else 0.0)
        for i in range(30)
        for o in ("cf", "pf")
    }
    pw = pairwise_result(pairs, j, STATS)
    cal = (Estimate(value=0.1, ci_low=0.0, ci_high=0.2, confidence=0.95, n=67), None)
    untrusted = build_metrics(
        ch, cp, STATS, paired=False, min_samples=20, include_judge=False, pairwise=pw, calibration=cal
    )
    trusted = build_metrics(
        ch, cp, STATS, paired=False, min_samples=20, include_judge=True, pairwise=pw, calibration=cal
    )
    assert "judge_relevance" not in untrusted and "win_rate" not in untrusted
    assert {"embedding_relevance", "error_rate", "unscored_rate", "refusal_rate", "judge_spearman"} <= set(untrusted)
    assert untrusted["judge_spearman"].model.value == 0.1
    assert "judge_kappa" not in untrusted  # no estimate: missing, never a made-up value
    assert trusted["win_rate"].challenger.value == pytest.approx(1.0)
    assert trusted["judge_relevance"].difference.value == pytest.approx(0.0)


def test_versions_below_min_samples_get_no_estimates() -> None:
    ch, cp = _scores("2", 10, 0.5), _scores("1", 40, 0.5)
    m = build_metrics(ch, cp, STATS, paired=False, min_samples=20, include_judge=False)
    rel = m["embedding_relevance"]
    assert rel.challenger is None and rel.difference is None and rel.champion is not None


def test_error_rate_counts_every_sampled_request() -> None:
    ch, cp = _scores("2", 36, 0.5, errors=4), _scores("1", 40, 0.5)
    m = build_metrics(ch, cp, STATS, paired=False, min_samples=20, include_judge=False)
    assert m["error_rate"].challenger.value == pytest.approx(0.1)
    assert m["error_rate"].challenger.n == 40
    assert m["error_rate"].champion.value == 0.0
    assert m["error_rate"].difference.value == pytest.approx(0.1)


def test_a_relevance_drop_shows_in_the_difference_interval() -> None:
    ch, cp = _scores("2", 60, 0.3), _scores("1", 60, 0.55)
    m = build_metrics(ch, cp, STATS, paired=False, min_samples=20, include_judge=False)
    d = m["embedding_relevance"].difference
    assert d.value == pytest.approx(-0.25, abs=1e-6)
    assert d.ci_high < -0.2 and d.confidence == 0.95


def test_replayed_answers_are_compared_paired() -> None:
    cp = [sample(i, version="1") for i in range(30)]
    ch = [Sample(f"replay:{s.id}", "2", s.prompt, "gibberish", None, "ok", key=s.key) for s in cp]
    rel_cp = {s.id: 0.2 + i / 100 for i, s in enumerate(cp)}
    rel_ch = {s.id: 0.19 + i / 100 for i, s in enumerate(ch)}
    a = version_scores("2", ch, rel_ch, {}, {}, [], count_errors=False)
    b = version_scores("1", cp, rel_cp, {}, {}, [])
    m = build_metrics(a, b, STATS, paired=True, min_samples=20, include_judge=False)
    d = m["embedding_relevance"].difference
    assert d.value == pytest.approx(-0.01) and d.ci_low == pytest.approx(-0.01) and d.n == 30
    assert m["error_rate"].challenger is None and m["error_rate"].champion is not None


def test_report_escapes_hostile_text_and_says_why_the_judge_is_not_used() -> None:
    hostile = "<script>alert('pwned')</script>"
    quality = QualitySummary(
        model_name="m<b>",
        run_key="r",
        mode="traffic",
        challenger_version="2",
        champion_version="1",
        window_start="2026-01-01",
        window_end="2026-01-02",
        judge_note="The judge FAILED calibration",
        versions=[VersionInfo(role="challenger", version="2", source="logs")],
        examples=[
            Example(
                role="challenger",
                version="2",
                request_id="r1",
                metric="embedding_relevance",
                value=0.01,
                prompt=hostile,
                response='"><img src=x onerror=alert(1)>',
            )
        ],
    )
    summary = EvidenceSummary(kind="quality", model_name="m<b>", created_at=datetime(2026, 1, 2, tzinfo=UTC))
    html = render_quality_report(summary, quality, {"embedding_relevance": {"champion": [0.5, 0.6]}})
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html
    assert "m&lt;b&gt;" in html
    assert "FAILED calibration" in html
    assert "<svg" in html


def test_histogram_handles_empty_series() -> None:
    assert "no values" in histogram_svg({"champion": []}, 0, 1)


def _score_series(version: str, shift: float) -> VersionScores:
    vs = VersionScores(version=version)
    for i in range(40):
        key = f"k{i}"
        vs.add("embedding_relevance", key, 0.3 + shift + (i % 10) / 50)
        vs.add("judge_relevance", key, 2.0 + shift * 5 + (i % 5) / 2)
        vs.add("judge_safety", key, 0.9)
        vs.add("judge_tone", key, (i % 3) - shift)  # a custom rubric on a scale of its own
        vs.add("refusal_rate", key, 0.0)  # a rate, not a score distribution
    vs.add("embedding_grounding", "k0", 0.5)
    return vs


def test_quality_page_shows_each_score_distribution_per_version() -> None:
    scores = {"challenger": _score_series("<script>v2", 0.2), "champion": _score_series("1", 0.0)}
    quality = QualitySummary(
        model_name="m", run_key="r", mode="traffic", challenger_version="<script>v2", champion_version="1",
        window_start="2026-01-01", window_end="2026-01-02", judge_trusted=True,
        untrusted_judge_metrics={"judge_tone": MetricEvidence()},
    )  # fmt: skip
    dists = score_distributions(scores, quality)
    assert list(dists) == [
        "embedding_relevance",
        "embedding_grounding",
        "judge_relevance",
        "judge_safety",
        "judge_tone (rubric without labelled items: not evidence)",
    ]
    assert (
        set(dists["judge_relevance"]) == {"champion", "challenger"} and len(dists["judge_relevance"]["champion"]) == 40
    )
    untrusted = score_distributions(scores, quality.model_copy(update={"judge_trusted": False}))
    assert "judge_relevance (failed calibration: not a quality signal)" in untrusted

    summary = EvidenceSummary(kind="quality", model_name="m", created_at=datetime(2026, 1, 2, tzinfo=UTC))
    html = render_quality_report(summary, quality, dists)
    assert html.count('class="chart distribution"') == 5
    assert html.count('class="series"') == 10  # two versions in each
    assert "champion 1 (n=40)" in html and "challenger &lt;script&gt;v2 (n=40)" in html
    assert "<script>" not in html
    # the bins of a 1-5 judge score cover the scale, whatever the values
    rel = html[html.index('aria-label="judge_relevance"') :]
    assert ">1</text>" in rel[: rel.index("</svg>")] and ">5</text>" in rel[: rel.index("</svg>")]
