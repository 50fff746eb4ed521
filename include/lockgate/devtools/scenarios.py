"""Demo scenarios: what the seeded traffic and the challenger model look like in each story.

Shared by `lockgate logs seed --scenario` and `lockgate demo --scenario` so the
two always agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expected_decision: str  # what the promotion must end in
    expected_gate: str | None  # the gate that must stop it (None: nothing stops it)
    topic_drift: float = 0.0
    prompt_length_factor: float = 1.0
    # The challenger's canary latency on the serving stack (the seeded logs); TTFT and TPOT
    # default to challenger_latency_factor.
    challenger_latency_factor: float = 1.0
    challenger_ttft_factor: float | None = None
    challenger_tpot_factor: float | None = None
    challenger_quality_degradation: float = 0.0
    # The champion's own answers in the current window (its baseline, the week before, stays healthy).
    champion_quality_degradation: float = 0.0
    # Register a third version as `previous_champion` (the rollback target), which served the
    # reference week beside the champion's canary traffic.
    previous_champion: bool = False
    # The challenger model's architecture: a larger model is genuinely slower in the benchmark.
    challenger_layers: int = 2
    challenger_hidden: int = 64


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "A challenger as good and as fast as the champion, on stable traffic: promoted after approval.",
            expected_decision="promote",
            expected_gate=None,
        ),
        Scenario(
            "latency-regression",
            "A challenger with many more layers: time to first token and per-token latency regress.",
            expected_decision="hold",
            expected_gate="ttft_regression",
            challenger_latency_factor=1.8,
            challenger_layers=12,
            challenger_hidden=256,
        ),
        Scenario(
            "quality-regression",
            "A challenger whose canary answers are often off-topic or refusals.",
            expected_decision="hold",
            expected_gate="relevance_regression",
            challenger_quality_degradation=0.6,
        ),
        Scenario(
            "input-drift",
            "Production prompts move to topics never seen in the reference window, and grow longer.",
            expected_decision="hold",
            expected_gate="input_drift",
            topic_drift=0.6,
            prompt_length_factor=2.5,
        ),
        Scenario(
            "live-latency-regression",
            "A challenger equal to the champion in the benchmark, whose canary traffic is 40% slower to first "
            "token and 30% slower per output token on the serving stack.",
            expected_decision="hold",
            expected_gate="live_ttft_regression",
            challenger_ttft_factor=1.4,
            challenger_tpot_factor=1.3,
        ),
        Scenario(
            "champion-collapse",
            "The champion's current answers go off-topic or refuse; a previous champion is registered.",
            expected_decision="rollback",
            expected_gate="champion_relevance_drop",
            champion_quality_degradation=0.6,
            previous_champion=True,
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    from lockgate.errors import ConfigError

    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(f"unknown scenario {name!r}; choose from {sorted(SCENARIOS)}", key="scenario") from None
