from __future__ import annotations

from collections import Counter

from lockgate.devtools.synthetic import DRIFT_TOPICS, TrafficSpec, VersionTraffic, generate_traffic


def rows(**kw: object) -> list[dict[str, object]]:
    return list(generate_traffic(TrafficSpec(reference_rows=400, current_rows=400, **kw)))  # type: ignore[arg-type]


def test_deterministic_for_a_seed() -> None:
    assert rows(seed=3) == rows(seed=3)
    assert rows(seed=3) != rows(seed=4)


def test_periods_and_timestamps() -> None:
    spec = TrafficSpec(reference_rows=100, current_rows=50)
    out = list(generate_traffic(spec))
    ref = [r for r in out if "-reference-" in str(r["request_id"])]
    cur = [r for r in out if "-current-" in str(r["request_id"])]
    assert len(ref) == 100 and len(cur) == 50
    assert all(spec.reference_start <= r["ts"] < spec.reference_end for r in ref)  # type: ignore[operator]
    assert all(spec.current_start <= r["ts"] < spec.current_end for r in cur)  # type: ignore[operator]


def test_topic_drift_only_in_current_period() -> None:
    out = rows(topic_drift=0.5)
    drift_words = {t for topic in DRIFT_TOPICS.values() for t in topic["things"]}

    def drifted(r: dict[str, object]) -> bool:
        return any(w in str(r["prompt"]) for w in drift_words)

    ref = [r for r in out if "-reference-" in str(r["request_id"])]
    cur = [r for r in out if "-current-" in str(r["request_id"])]
    assert not any(drifted(r) for r in ref)
    assert 0.35 < sum(drifted(r) for r in cur) / len(cur) < 0.65


def test_canary_latency_and_quality_knobs() -> None:
    out = rows(
        current_versions=[
            VersionTraffic("1", share=0.5),
            VersionTraffic("2", share=0.5, latency_factor=2.0, quality_degradation=1.0),
        ]
    )
    cur = [r for r in out if "-current-" in str(r["request_id"]) and r["status"] == "ok"]
    by_version = Counter(str(r["model_version"]) for r in cur)
    assert by_version["1"] > 100 and by_version["2"] > 100
    mean = {v: sum(float(r["ttft_ms"]) for r in cur if r["model_version"] == v) / by_version[v] for v in "12"}  # type: ignore[arg-type]
    assert mean["2"] > 1.6 * mean["1"]
    about_it = [r for r in cur if r["model_version"] == "2" and "About your" in str(r["response"])]
    assert not about_it  # every challenger answer degraded


def test_malformed_pii_and_hostile_knobs() -> None:
    out = rows(malformed_rate=0.2, pii_rate=0.3, hostile_rate=0.3)
    prompts = [str(r["prompt"]) for r in out if r["prompt"]]
    assert any("<script>" in p or "onerror" in p for p in prompts)
    assert any("@example." in p for p in prompts)
    assert sum(1 for r in out if r["prompt"] is None or r["status"] == "exploded" or r["model_version"] is None) > 10


def test_rag_context_for_part_of_the_traffic() -> None:
    out = rows(rag_share=0.4)
    share = sum(1 for r in out if r["context"]) / len(out)
    assert 0.3 < share < 0.5
