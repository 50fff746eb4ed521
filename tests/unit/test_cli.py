"""The `lockgate` command: one clear line for bad input, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lockgate.cli import build_parser, main

LOCKGATE = str(Path(sys.executable).with_name("lockgate"))


def test_every_documented_command_is_there() -> None:
    parser = build_parser()
    for argv in (
        ["up"],
        ["down"],
        ["status"],
        ["status", "lockgate-demo"],
        ["settings", "apply"],
        ["demo", "--scenario", "input-drift"],
        ["logs", "seed"],
        ["logs", "migrate-sample-index", "--print-sql", "--seed", "3"],
        ["models", "build-tiny", "/tmp/x", "--seed", "3"],
        ["models", "register", "--name", "m", "--path", "/tmp/x", "--alias", "challenger"],
        ["approve", "m", "2", "--by", "alice", "--reject"],
        ["run", "drift", "--model", "m"],
        ["judge", "calibrate", "--set", "my_set.jsonl", "--rubrics", "relevance", "tone"],
        ["judge", "export-feedback", "--model", "m", "--out", "sets/mine.jsonl", "--rubric", "tone"],
    ):
        assert parser.parse_args(argv).handler


def test_seed_into_an_embedded_store(lockgate_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "seed", "--reference-rows", "30", "--current-rows", "10", "--challenger-version", "2"]) == 0
    out = capsys.readouterr().out
    assert "seeded 40 rows" in out and "logs.db" in out
    assert (lockgate_env / "logs.db").exists()


def test_invalid_policy_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        "models:\n  - name: m\n    approvers: [a]\n    gates:\n"
        "      - {name: g, metric: benchmark.ttft_ms_p50, comparison: ratio, threshold: -1}\n"
    )
    monkeypatch.setenv("LOCKGATE_CONFIG", str(bad))
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path))
    out = subprocess.run([LOCKGATE, "logs", "seed"], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert "models.0.gates.0" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unreachable_postgres_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [LOCKGATE, "logs", "seed", "--db-url", "postgresql://postgres@127.0.0.1:1/nowhere"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "LOCKGATE_HOME": str(tmp_path)},
    )
    assert out.returncode == 2
    assert "127.0.0.1:1" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unknown_scenario_is_rejected_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--scenario", "nope"])
