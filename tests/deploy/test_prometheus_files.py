"""docker/prometheus and docker/grafana: valid for Prometheus (promtool), alerts that fire when they should,
and every metric they name is one lockgate exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.observability.prometheus import METRIC_NAMES, METRICS
from lockgate.policy.schema import load_policy

from .conftest import DOCKER, ROOT, load_compose

PROMETHEUS = DOCKER / "prometheus"
GRAFANA = DOCKER / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "lockgate.json"
ALERTS = PROMETHEUS / "alerts.yml"
METRIC_REF = re.compile(r"\blockgate_[a-z0-9_]+")


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is absent: `make monitoring-tools` installs Debian's prometheus package (needs root)")
    return tool


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_prometheus_config_and_rules_pass_promtool() -> None:
    out = _run("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout + out.stderr
    out = _run("check", "rules", str(ALERTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # The check above is only worth something if promtool would fail on a bad expression.
    bad = tmp_path / "bad.yml"
    rule = {"alert": "X", "expr": "max by (model (lockgate_drift_share)"}
    bad.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [rule]}]}))
    assert _run("check", "rules", str(bad)).returncode != 0


def test_alerts_fire_when_they_should() -> None:
    # tests/deploy/prometheus/alerts_test.yml: a failing rollback gate, a rollback, evidence past
    # 48 h (the newest of the evidence job's and the decision's timestamps), an approval past 24 h.
    out = _run("test", "rules", "alerts_test.yml", cwd=Path(__file__).parent / "prometheus")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_scrape_keeps_the_pushed_labels() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "pushgateway")
    assert job["honor_labels"] is True  # else job/model become exported_job/exported_model
    assert job["static_configs"][0]["targets"] == ["pushgateway:9091"]
    assert config["rule_files"] == ["alerts.yml"]


def _alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def _dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    exprs += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return exprs


def test_every_metric_in_the_dashboard_and_the_alerts_is_exported() -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 15
    used = {m for e in exprs for m in METRIC_REF.findall(e)}
    assert used - set(METRIC_NAMES) == set(), "dashboard metrics lockgate does not export"
    alert_exprs = [r["expr"] for r in _alert_rules()]
    alert_used = {m for e in alert_exprs for m in METRIC_REF.findall(e)}
    assert alert_used - set(METRIC_NAMES) == set(), "alert metrics lockgate does not export"
    # the catalogue is shown: every exported metric appears on the dashboard
    assert set(METRIC_NAMES) - used == set()


def test_label_matchers_name_labels_the_metrics_carry() -> None:
    for expr in _dashboard_exprs() + [r["expr"] for r in _alert_rules()]:
        for metric, matchers in re.findall(r"\b(lockgate_[a-z0-9_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"([a-z_]+)\s*=~?", matchers):
                assert label in METRICS[metric].labels, f"{expr}: {metric} has no label {label}"
        for by in re.findall(r"by \(([^)]*)\)", expr):
            metric = METRIC_REF.findall(expr)[0]
            for label in (x.strip() for x in by.split(",")):
                assert label in METRICS[metric].labels, f"{expr}: {metric} has no label {label}"


def test_stale_evidence_alert_reads_the_policys_max_age_from_the_decisions() -> None:
    from datetime import UTC, datetime

    from lockgate.observability.prometheus import decision_points
    from lockgate.policy.model import Decision

    rule = next(r for r in _alert_rules() if r["alert"] == "LockgateEvidenceStale")
    assert "lockgate_evidence_max_age_seconds" in rule["expr"] and "3600" not in rule["expr"]  # nothing hard-coded
    hours = load_policy(ROOT / "include" / "lockgate.yaml").evidence.max_age_hours
    decision = Decision(model_name="m", action="hold", evidence_hash="e", policy_hash="p", decided_at=datetime.now(UTC))
    (point,) = [
        p for p in decision_points(decision, max_age_hours=hours) if p.name == "lockgate_evidence_max_age_seconds"
    ]
    assert (point.labels, point.value) == ({"model": "m"}, hours * 3600)


def test_compose_mounts_the_monitoring_files() -> None:
    services = load_compose("compose.yaml")["services"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["prometheus"]["volumes"] if v.startswith("./")}
    assert mounts == {
        "./prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml",
        "./prometheus/alerts.yml": "/etc/prometheus/alerts.yml",
    }
    grafana = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"] if v.startswith("./")}
    assert grafana["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "lockgate.yaml").read_text())["providers"][0]
    assert grafana["./grafana/dashboards"] == provider["options"]["path"]
    for path in mounts:
        assert (DOCKER / path).is_file()
    # the dashboard's datasource is the provisioned one
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    board = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in board["panels"]} == {uid}
    # the Airflow containers push to the compose gateway
    env = services["airflow-worker"].get("environment") or {}
    assert "pushgateway:9091" in str(env.get("LOCKGATE_PUSHGATEWAY_URL"))
