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
    challenger_latency_factor: float = 1.0
    challenger_quality_degradation: float = 0.0
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
    )
}


def get_scenario(name: str) -> Scenario:
    from lockgate.errors import ConfigError

    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(f"unknown scenario {name!r}; choose from {sorted(SCENARIOS)}", key="scenario") from None
