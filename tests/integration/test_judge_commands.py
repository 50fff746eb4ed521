"""`lockgate judge export-feedback` and `lockgate judge calibrate`: a set from rated traffic, completed, calibrated."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lockgate.cli import main
from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.logs.db import make_engine
from lockgate.settings import DEFAULT_POLICY_PATH

MODEL = "lockgate-demo"


def test_export_rated_traffic_label_it_and_calibrate(
    lockgate_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lockgate.devtools.testing.judge import FakeJudgeServer

    spec = TrafficSpec(
        model_name=MODEL,
        reference_start=datetime(2026, 6, 1, tzinfo=UTC),
        reference_rows=0,
        current_rows=400,
        current_versions=[VersionTraffic("1")],
        pii_rate=0.5,
        seed=41,
    )
    seed_logs(make_engine(f"sqlite:///{lockgate_env / 'logs.db'}"), spec)
    out = lockgate_env / "sets" / "support_v1.jsonl"
    window = ["--start", spec.current_start.isoformat(), "--end", spec.current_end.isoformat()]
    argv = ["judge", "export-feedback", "--model", MODEL, "--out", str(out), "--size", "40", *window]
    assert main(argv) == 0
    assert "wrote 40 items to label (relevance.v1)" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40 and all(r["labels"] == {} and r["hint"]["feedback"] in (-1, 0, 1) for r in rows)
    text = out.read_text()
    assert "@example.com" not in text and "[EMAIL]" in text  # redacted with the policy's rules
    manifest_file = out.with_name("support_v1.meta.yaml")
    manifest = yaml.safe_load(manifest_file.read_text())
    assert manifest["labels_from"] == "people" and manifest["labellers"] == []
    assert main(argv) == 2  # never overwrites a set that may hold labels
    capsys.readouterr()

    # Nobody has labelled it yet: calibration says so instead of inventing agreement.
    assert main(["judge", "calibrate", "--set", str(out)]) == 2
    assert "no labelled item yet" in capsys.readouterr().err

    # Two people complete it: alice follows the feedback, bob agrees except on every fifth item.
    for n, r in enumerate(rows):
        alice = 5 if r["hint"]["feedback"] == 1 else 1
        r["labels"] = {"alice": alice, "bob": alice if n % 5 else 3}
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest["labellers"] = [{"id": "alice", "description": "support lead"}, {"id": "bob"}]
    manifest_file.write_text(yaml.safe_dump(manifest))

    policy = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    with FakeJudgeServer(answer=lambda payload: "4") as server:
        policy["quality"]["judge"] = {"backend": "openai", "base_url": server.base_url, "model": "m"}
        policy["quality"]["calibration_set"] = str(out)
        (lockgate_env / "policy.yaml").write_text(yaml.safe_dump(policy))
        monkeypatch.setenv("LOCKGATE_CONFIG", str(lockgate_env / "policy.yaml"))
        code = main(["judge", "calibrate", "--rubrics", "relevance"])
    printed = capsys.readouterr().out
    assert code == 1, printed  # a judge that always answers 4 does not follow the labels
    assert "calibration set: support_v1" in printed and "labellers (2): alice (support lead), bob" in printed
    assert "labellers' agreement (the ceiling): alice vs bob on 40 items" in printed
    assert "agreement with the labels of people (2 labellers)" in printed
    assert "result: FAILED" in printed and len(server.requests) == 40
