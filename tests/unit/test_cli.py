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
        ["evidence", "import-latest", "--dry-run"],
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


def _watching(home: Path, monkeypatch: pytest.MonkeyPatch, *models: str) -> None:
    import yaml

    from lockgate.devtools.testing.registry import policy_for

    (home / "policy.yaml").write_text(yaml.safe_dump(policy_for(*models).model_dump(mode="json")))
    monkeypatch.setenv("LOCKGATE_CONFIG", str(home / "policy.yaml"))


def test_model_defaults_to_the_only_watched_model(
    lockgate_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _watching(lockgate_env, monkeypatch, "support-bot")
    assert main(["logs", "seed", "--reference-rows", "30", "--current-rows", "10"]) == 0
    assert "seeded 40 rows for support-bot" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["run", "drift"], ["run", "promotion", "--dry-run"], ["logs", "seed"]])
def test_model_is_required_when_the_policy_watches_several(
    argv: list[str], lockgate_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _watching(lockgate_env, monkeypatch, "support-bot", "search-ranker")
    assert main(argv) == 2
    assert _stderr_lines(capsys) == [
        "lockgate: error [invalid_config]: --model: the policy watches 2 models (support-bot, search-ranker): "
        "name one with --model"
    ]
    assert not (lockgate_env / "logs.db").exists()  # nothing ran


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


# --------------------------------------------------------------------------- one line, then detail on -v


def _stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """stderr without the log records (timestamped lines of logging.basicConfig)."""
    err = capsys.readouterr().err
    return [line for line in err.strip().splitlines() if not line[:4].isdigit()]


@pytest.fixture
def migrated_mlflow(lockgate_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded MLflow store from the migrated template (a fresh one costs ~10 s of migrations)."""
    from lockgate.devtools.testing.registry import sqlite_mlflow_store

    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_mlflow_store(lockgate_env / "mlflow.db"))
    return lockgate_env


@pytest.fixture
def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket is closed


def test_unreachable_logs_database_is_one_line(
    migrated_mlflow: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCKGATE_LOGS_DB_URL", f"postgresql://postgres@127.0.0.1:{closed_port}/logs")
    assert main(["run", "drift", "--model", "lockgate-demo"]) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("lockgate: error [service_unavailable]: the database is not reachable")
    assert "Connection refused" in lines[0] and "LOCKGATE_LOGS_DB_URL" in lines[0]


@pytest.mark.parametrize("job", ["drift", "quality", "live", "benchmark", "promotion"])
def test_every_job_says_an_unreachable_postgresql_in_one_line(
    job: str,
    migrated_mlflow: Path,
    closed_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The logs database (and lockgate's state database, which defaults to it) is down: each job says so."""
    monkeypatch.setenv("LOCKGATE_LOGS_DB_URL", f"postgresql://postgres:s3cret@127.0.0.1:{closed_port}/logs")
    assert main(["run", job, "--model", "lockgate-demo"]) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("lockgate: error [service_unavailable]: "), lines[0]
    assert str(closed_port) in lines[0] and "s3cret" not in lines[0]


def test_verbose_adds_the_traceback(
    migrated_mlflow: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCKGATE_LOGS_DB_URL", f"postgresql://postgres@127.0.0.1:{closed_port}/logs")
    assert main(["-v", "run", "drift", "--model", "lockgate-demo"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "OperationalError" in err
    assert err.strip().splitlines()[-1].startswith("lockgate: error [service_unavailable]: ")


def test_unreachable_mlflow_is_one_line(
    lockgate_env: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    assert main(["approve", "lockgate-demo", "2", "--by", "alice"]) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"lockgate: error [service_unavailable]: MLflow is not reachable at http://127.0.0.1:{closed_port}"
    )


@pytest.mark.parametrize("job", ["drift", "quality", "live"])
def test_a_mapped_column_the_table_lacks_is_named_before_any_query(
    job: str,
    migrated_mlflow: Path,
    lockgate_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import yaml

    from lockgate.settings import DEFAULT_POLICY_PATH

    assert main(["logs", "seed", "--reference-rows", "30", "--current-rows", "10"]) == 0
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    data["logs"]["columns"] = {"prompt": "question"}
    policy = lockgate_env / "policy.yaml"
    policy.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("LOCKGATE_CONFIG", str(policy))
    capsys.readouterr()
    assert main(["run", job, "--model", "lockgate-demo"]) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("lockgate: error [invalid_config]: logs.columns.prompt: column 'question'")
    assert "'prompt'" in lines[0]  # the table's real columns are listed


def test_an_unexpected_error_is_one_line_and_the_traceback_needs_v(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lockgate.cli as cli

    def broken(_args: object) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "_resolve", lambda _handler: broken)
    assert main(["down"]) == 1
    lines = _stderr_lines(capsys)
    assert lines == ["lockgate: error [unexpected]: RuntimeError: boom second line (rerun with -v for the traceback)"]
    assert main(["-v", "down"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["run", "drift"], False),
        (["-v", "run", "drift"], True),
        (["run", "drift", "-v"], True),
        (["--verbose", "logs", "seed"], True),
        (["settings", "apply", "--verbose"], True),
    ],
)
def test_verbose_before_or_after_the_command(argv: list[str], verbose: bool) -> None:
    assert build_parser().parse_args(argv).verbose is verbose


def test_status_of_a_model_goes_to_the_registry_without_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    import lockgate.registry.commands as registry_commands

    calls: list[str] = []
    monkeypatch.setattr(registry_commands, "cmd_model_status", lambda args: calls.append(args.model) or 0)
    for name in [m for m in sys.modules if m.startswith("lockgate.devtools.stack")]:
        monkeypatch.delitem(sys.modules, name)
    assert main(["status", "support-bot"]) == 0
    assert calls == ["support-bot"]
    assert not [m for m in sys.modules if m.startswith("lockgate.devtools.stack")]
