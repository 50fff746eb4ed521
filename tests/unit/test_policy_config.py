"""The policy file: gates are validated, an invalid one is rejected naming the key, and it has a stable hash."""

from __future__ import annotations

import copy

import pytest
import yaml

from lockgate.errors import ConfigError
from lockgate.policy.schema import load_policy, parse_policy
from lockgate.settings import DEFAULT_POLICY_PATH


def base() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def with_gate(**changes) -> dict:
    data = base()
    data["models"][0]["gates"][0].update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        (with_gate(metric="ttft_ms_p50"), "models.0.gates.0.metric", "<benchmark|drift|quality|live>"),
        (with_gate(metric="latency.ttft"), "models.0.gates.0.metric", "<benchmark|drift|quality|live>"),
        (with_gate(action="page_someone"), "models.0.gates.0.action", "block_promotion"),
        (with_gate(comparison="percent"), "models.0.gates.0.comparison", "absolute"),
        (with_gate(direction="up"), "models.0.gates.0.direction", "lower_is_better"),
        (with_gate(confidence=0.4), "models.0.gates.0.confidence", "greater than 0.5"),
        (with_gate(confidence=1.0), "models.0.gates.0.confidence", "less than 1"),
        (with_gate(threshold=-0.1), "models.0.gates.0.threshold", "must be >= 0"),
        (with_gate(subject="champion"), "models.0.gates.0", "only production evidence (live.*)"),
        (with_gate(comparison="absolute", action="rollback"), "models.0.gates.0", "must check the champion"),
        (with_gate(thresold=0.1), "models.0.gates.0.thresold", "Extra inputs"),  # a typo never disables a gate
        (with_gate(name=""), "models.0.gates.0.name", "at least 1"),
    ],
)
def test_invalid_gate_is_rejected_naming_the_key(data, key, message):
    with pytest.raises(ConfigError) as info:
        parse_policy(data, source="test.yaml")
    assert info.value.key == key
    assert message in str(info.value)
    assert str(info.value).startswith("test.yaml: ")


def test_duplicate_gate_names_are_rejected():
    data = base()
    gates = data["models"][0]["gates"]
    gates.append(copy.deepcopy(gates[0]))
    with pytest.raises(ConfigError, match="gate names must be unique") as info:
        parse_policy(data)
    assert info.value.key == "models.0"


def test_approval_needs_approvers():
    data = base()
    data["models"][0]["approvers"] = []
    with pytest.raises(ConfigError, match="approvers is empty"):
        parse_policy(data)


@pytest.mark.parametrize(("field", "value"), [("approval_expiry_hours", 0), ("approvers", "alice")])
def test_bad_model_fields(field, value):
    data = base()
    data["models"][0][field] = value
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    assert info.value.key.startswith(f"models.0.{field}")


def test_policy_hash_ignores_formatting_but_not_content(tmp_path):
    original = load_policy()
    reformatted = tmp_path / "p.yaml"
    reformatted.write_text("# a comment\n" + yaml.safe_dump(base(), sort_keys=True))
    assert load_policy(reformatted).policy_hash == original.policy_hash
    changed = with_gate(threshold=0.2)
    assert parse_policy(changed).policy_hash != original.policy_hash


def test_shipped_gates_are_coherent():
    wm = load_policy().model("lockgate-demo")
    by_name = {g.name: g for g in wm.gates}
    assert by_name["ttft_regression"].comparison == "ratio"
    assert by_name["relevance_regression"].direction == "higher_is_better"
    assert by_name["input_drift"].subject == "model"
    assert all(g.subject != "challenger" for g in wm.gates if g.action == "rollback")
    assert wm.approvers and wm.require_approval
