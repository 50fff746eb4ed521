"""lockgate.policy.schema: policy validation naming the bad key, the default policy, and the policy's hash."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.errors import ConfigError
from lockgate.policy.schema import load_policy, parse_policy
from lockgate.settings import DEFAULT_POLICY_PATH


def _policy() -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    assert isinstance(data, dict)
    return data


def _gate(**overrides: Any) -> dict[str, Any]:
    gate: dict[str, Any] = {
        "name": "g",
        "metric": "benchmark.ttft_ms_p50",
        "comparison": "ratio",
        "threshold": 0.1,
    }
    gate.update(overrides)
    return gate


def _with_gates(*gates: dict[str, Any]) -> dict[str, Any]:
    data = _policy()
    data["models"][0]["gates"] = list(gates)
    return data


def test_default_policy_is_valid() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert [m.name for m in policy.models] == ["lockgate-demo"]
    assert policy.model("lockgate-demo").gates


def test_policy_path_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(_policy()))
    monkeypatch.setenv("LOCKGATE_CONFIG", str(path))
    assert load_policy().policy_hash == load_policy(DEFAULT_POLICY_PATH).policy_hash


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        (_with_gates(_gate(treshold=0.2)), "models.0.gates.0.treshold", "Extra inputs are not permitted"),
        (_with_gates(_gate(threshold=-0.1)), "models.0.gates.0.threshold", "must be >= 0"),
        (_with_gates(_gate(comparison="difference", threshold=-1)), "models.0.gates.0.threshold", "must be >= 0"),
        (_with_gates(_gate(metric="ttft")), "models.0.gates.0.metric", "<benchmark|drift|quality|live>"),
        (_with_gates(_gate(action="explode")), "models.0.gates.0.action", "block_promotion"),
        (_with_gates(_gate(confidence=0.4)), "models.0.gates.0.confidence", "greater than 0.5"),
        (_with_gates(_gate(comparison="ratio", subject="model")), "models.0.gates.0", "subject must be 'challenger'"),
        (
            _with_gates(_gate(comparison="absolute", action="rollback")),
            "models.0.gates.0",
            "rollback gate must check the champion",
        ),
        (_with_gates(_gate(), _gate()), "models.0", "gate names must be unique"),
        (_with_gates(_gate(threshold="high")), "models.0.gates.0.threshold", "valid number"),
    ],
)
def test_invalid_gate_names_the_key(data: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(data, source="p.yaml")
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"p.yaml: {key}: ")


def _absolute(metric: str, threshold: Any, **kw: Any) -> dict[str, Any]:
    return _gate(metric=metric, comparison="absolute", threshold=threshold, **kw)


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        # Not a finite number, wherever a float is read.
        (_with_gates(_gate(threshold=float("nan"))), "models.0.gates.0.threshold", "finite number"),
        (_with_gates(_gate(threshold=float("inf"))), "models.0.gates.0.threshold", "finite number"),
        (_with_gates(_gate(threshold="nan")), "models.0.gates.0.threshold", "finite number"),
        (
            _with_gates(_absolute("quality.error_rate", float("nan"), subject="champion", action="rollback")),
            "models.0.gates.0.threshold",
            "finite number",
        ),
        (_with_gates(_gate(confidence=float("nan"))), "models.0.gates.0.confidence", "finite number"),
        (
            {**_policy(), "statistics": {"confidence": float("nan")}},
            "statistics.confidence",
            "finite number",
        ),
        (
            {**_policy(), "evidence": {"max_age_hours": float("inf")}},
            "evidence.max_age_hours",
            "finite number",
        ),
        # Bounds that fit the metric.
        (_with_gates(_absolute("benchmark.ttft_ms_p50", -5.0)), "models.0.gates.0.threshold", "must be >= 0"),
        (
            _with_gates(_absolute("drift.drift_share", 5.0, subject="model")),
            "models.0.gates.0.threshold",
            "must be <= 1",
        ),
        (
            _with_gates(_absolute("quality.error_rate", -0.1, subject="champion", action="rollback")),
            "models.0.gates.0.threshold",
            "must be >= 0",
        ),
        (
            _with_gates(_gate(metric="quality.refusal_rate", comparison="difference", threshold=1.5)),
            "models.0.gates.0.threshold",
            "must be <= 1",
        ),
        (
            _with_gates(_absolute("quality.judge_relevance", 7, direction="higher_is_better")),
            "models.0.gates.0.threshold",
            "must be <= 5",
        ),
        (
            _with_gates(_gate(metric="benchmark.decode_tokens_per_s", direction="higher_is_better", threshold=1.0)),
            "models.0.gates.0.threshold",
            "must be < 1",
        ),
        # A metric no job publishes: the gate would never fire.
        (_with_gates(_gate(metric="benchmark.ttft_p50")), "models.0.gates.0.metric", "no benchmark job publishes"),
        (_with_gates(_gate(metric="drift.column.nonexistent")), "models.0.gates.0.metric", "no drift job publishes"),
        (_with_gates(_gate(metric="quality.relevance")), "models.0.gates.0.metric", "known: ["),
        (_with_gates(_gate(metric="live.ttft_ms_p95")), "models.0.gates.0.metric", "no live job publishes"),
        (
            _with_gates(
                _gate(
                    metric="live.error_rate",
                    comparison="difference",
                    subject="champion",
                    threshold=1.5,
                    action="rollback",
                )
            ),
            "models.0.gates.0.threshold",
            "must be <= 1",
        ),
    ],
)
def test_values_that_break_decisions_are_refused_naming_the_key(data: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(data, source="p.yaml")
    assert info.value.key == key
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["", "   ", "\t", " alice"])
def test_empty_or_padded_approver_names_are_refused(name: str) -> None:
    data = _policy()
    data["models"][0]["approvers"] = ["alice", name]
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    assert info.value.key == "models.0.approvers.1"
    assert "approver name" in str(info.value)


@pytest.mark.parametrize(
    "metric",
    [
        "benchmark.ttft_ms_p90",
        "benchmark.tpot_ms_p50.bs4",
        "benchmark.e2e_ms_p99.static_compile.bs1",
        "benchmark.decode_tokens_per_s",
        "drift.column.prompt_length",
        "drift.timeout_rate",
        "quality.win_rate",
        "live.ttft_ms_p90",
        "live.output_tokens_per_s_p50",
    ],
)
def test_published_metric_variants_are_accepted(metric: str) -> None:
    data = _with_gates(_gate(metric=metric, comparison="ratio", threshold=0.2))
    assert parse_policy(data).models[0].gates[0].metric == metric


def test_duplicated_model_is_rejected() -> None:
    data = _policy()
    data["models"].append(copy.deepcopy(data["models"][0]))
    with pytest.raises(ConfigError, match=r"model names must be unique, repeated: \['lockgate-demo'\]"):
        parse_policy(data)


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.update(modles=[]), "modles"),
        (lambda d: d.update(models=[]), "models"),
        (lambda d: d["models"][0].update(approvers=[]), "models.0"),
        (lambda d: d["statistics"].update(confidence=1.5), "statistics.confidence"),
        (lambda d: d["redaction"]["patterns"].update(bad="(unclosed"), "redaction.patterns"),
        (lambda d: d["logs"].update(table="x; drop table y"), "logs.table"),
        (lambda d: d["models"][0]["windows"].update(reference={"mode": "weekly"}), "models.0.windows.reference"),
        (lambda d: d["quality"]["judge"].update(backend="openai"), "quality.judge"),
        (lambda d: d["quality"]["judge"].update(dtype="float16"), "quality.judge.dtype"),
        (lambda d: d["quality"]["judge"].update(backend="placeholder", model_path="/m"), "quality.judge"),
    ],
)
def test_invalid_policy_sections_name_the_key(mutate: Any, key: str) -> None:
    data = _policy()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    assert info.value.key == key


def test_policy_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy([1, 2])
    assert info.value.key == "<root>"
    path = tmp_path / "bad.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(path)
    with pytest.raises(ConfigError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")


def test_unknown_model_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(DEFAULT_POLICY_PATH).model("nope")
    assert info.value.key == "models"


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def test_policy_hash_is_stable_across_key_order_and_comments(tmp_path: Path) -> None:
    data = _policy()
    reordered = _reversed_keys(data)
    assert list(reordered) != list(data)
    assert parse_policy(data).policy_hash == parse_policy(reordered).policy_hash
    # Comments and formatting are not content.
    path = tmp_path / "p.yaml"
    path.write_text("# a comment\n" + yaml.safe_dump(reordered, default_flow_style=True))
    assert load_policy(path).policy_hash == load_policy(DEFAULT_POLICY_PATH).policy_hash
    # Spelling out a default is the same policy.
    explicit = copy.deepcopy(data)
    explicit["models"][0]["gates"][0]["action"] = "block_promotion"
    assert parse_policy(explicit).policy_hash == parse_policy(data).policy_hash


def test_policy_hash_changes_with_content() -> None:
    data = _policy()
    changed = copy.deepcopy(data)
    changed["models"][0]["gates"][0]["threshold"] = 0.2
    assert parse_policy(changed).policy_hash != parse_policy(data).policy_hash
