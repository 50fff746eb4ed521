"""One publish step for every evidence job: a backfill never replaces fresher evidence, every run is indexed,
and the latest evidence the promotion reads is the state database's, with or without the files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lockgate.evidence import EvidenceKind, EvidenceSummary, latest_summary_path, read_summary, write_summary
from lockgate.reports.index import ReportEntry, list_reports
from lockgate.reports.summaries import latest_evidence, read_latest, record_summary, supersedes

DAY = datetime(2026, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["benchmark", "drift", "quality", "live"])
def test_a_backfill_is_indexed_but_never_replaces_the_latest_evidence(
    kind: EvidenceKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockgate.jobs import publish

    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path))
    monkeypatch.setenv("LOCKGATE_STATE_DB_URL", f"sqlite:///{tmp_path / 'state.db'}")
    pushed: list[str] = []
    monkeypatch.setattr(
        "lockgate.observability.prometheus.export_evidence", lambda s, url=None: pushed.append(s.run_id or "") or True
    )
    reports = tmp_path / "reports"

    def run(run_key: str, window_end: datetime) -> bool:
        summary = EvidenceSummary(
            kind=kind, model_name="m", created_at=datetime.now(UTC), window_end=window_end, run_id=run_key
        )
        path = write_summary(summary, reports / kind / "m" / run_key / "summary.json")
        entry = ReportEntry(kind=kind, model_name="m", run_key=run_key, status="ok", title=run_key, path=str(path))
        return publish.publish_evidence(summary, path, reports_dir=reports, report=entry, run_key=run_key)

    assert run("today", DAY) is True
    assert run("backfill", DAY - timedelta(days=3)) is False  # an older window: kept out of latest.json
    assert read_summary(latest_summary_path(reports, kind, "m")).run_id == "today"
    assert pushed == ["today"]  # only what the gates read now reaches Prometheus
    assert {e.run_key for e in list_reports(kind=kind, model_name="m")} == {"today", "backfill"}
    assert run("tomorrow", DAY + timedelta(days=1)) is True
    assert read_summary(latest_summary_path(reports, kind, "m")).run_id == "tomorrow"
    # The row is authoritative: the promotion's reading needs no file.
    latest_summary_path(reports, kind, "m").unlink()
    for run_dir in (reports / kind / "m").iterdir():
        for f in run_dir.iterdir():
            f.unlink()
    stored = latest_evidence(kind, "m")
    assert stored is not None and stored.run_id == "tomorrow"
    evidence, errors = read_latest("m", [kind, "drift" if kind != "drift" else "live"])
    assert evidence[kind] == stored and errors == {}
    assert run("tomorrow", DAY + timedelta(days=1)) is True  # a rerun of the latest run replaces it


def _summary(run_key: str, window_end: datetime | None) -> EvidenceSummary:
    return EvidenceSummary(kind="drift", model_name="m", created_at=DAY, window_end=window_end, run_key=run_key)


@pytest.mark.parametrize(
    ("new_end", "current_end", "current_key", "expected"),
    [
        (DAY, None, "", True),  # nothing yet
        (DAY, DAY - timedelta(days=1), "old", True),
        (DAY, DAY, "same-window", True),
        (DAY - timedelta(days=1), DAY, "fresh", False),  # a backfill
        (DAY - timedelta(days=1), DAY, "run", True),  # the latest run itself, rerun
        (None, DAY, "fresh", True),  # no window to compare: the newer run wins
    ],
)
def test_supersedes(new_end: datetime | None, current_end: datetime | None, current_key: str, expected: bool) -> None:
    current = _summary(current_key, current_end) if current_key else None
    assert supersedes(_summary("run", new_end), "run", current, current_key) is expected


def test_a_malformed_latest_row_is_an_error_the_gates_see(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from lockgate.reports.summaries import summaries_table

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    assert record_summary(_summary("a", DAY), "a", engine) is True
    assert record_summary(_summary("b", DAY - timedelta(days=1)), "b", engine) is False
    assert record_summary(_summary("c", DAY - timedelta(days=2)), "c", engine, force=True) is True  # hand-made
    with engine.begin() as conn:
        latest = conn.execute(sa.select(summaries_table.c.run_key).where(summaries_table.c.is_latest)).scalars().all()
        assert latest == ["c"]
        conn.execute(summaries_table.update().values(summary='{"kind": "drift"}'))
    with engine.connect() as conn:
        evidence, errors = read_latest("m", ["drift"], conn)
    assert evidence == {"drift": None} and "malformed evidence summary" in errors["drift"]


def test_latest_json_files_of_an_upgraded_install_are_imported_once_and_never_over_fresher_evidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lockgate evidence import-latest`: the copies an older lockgate left become the database's evidence."""
    from lockgate.cli import main

    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path))
    monkeypatch.setenv("LOCKGATE_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("LOCKGATE_STATE_DB_URL", f"sqlite:///{tmp_path / 'state.db'}")
    reports = tmp_path / "reports"

    def copy(kind: EvidenceKind, model: str, run_key: str | None, window_end: datetime, report: str | None) -> None:
        summary = EvidenceSummary(
            kind=kind, model_name=model, created_at=DAY, window_end=window_end, run_key=run_key, report_path=report
        )
        write_summary(summary, latest_summary_path(reports, kind, model))

    copy("drift", "m", "drift-run", DAY, None)
    copy("quality", "m", None, DAY, str(reports / "quality" / "m" / "q-run" / "report.html"))  # older: no run_key
    copy("benchmark", "m", "old-bench", DAY - timedelta(days=5), None)
    (reports / "live" / "m").mkdir(parents=True)
    (reports / "live" / "m" / "latest.json").write_text('{"kind": "live", "model_name": ')  # cut short
    copy("benchmark", "other", "b", DAY, None)
    (reports / "drift" / "other").mkdir(parents=True)
    (reports / "drift" / "other" / "latest.json").write_bytes(
        latest_summary_path(reports, "benchmark", "other").read_bytes()
    )
    # The database already has a benchmark of a later window for m: the copy must not replace it.
    fresh = EvidenceSummary(kind="benchmark", model_name="m", created_at=DAY, window_end=DAY, run_key="fresh")
    assert record_summary(fresh, "fresh") is True

    assert main(["evidence", "import-latest", "--dry-run"]) == 1
    dry = capsys.readouterr()
    assert "dry run: " in dry.out and "3 latest, 1 history, 0 already there, 2 not imported" in dry.out
    assert latest_evidence("drift", "m") is None  # a dry run records nothing

    assert main(["evidence", "import-latest"]) == 1  # two files could not be imported: say so
    out = capsys.readouterr()
    assert "drift/m/latest.json: is now the latest" in out.out
    assert "benchmark/m/latest.json: is recorded as history" in out.out
    assert "live/m/latest.json: not imported: malformed evidence summary" in out.err
    assert "drift/other/latest.json: not imported: a benchmark summary in the drift folder" in out.err
    drift, quality, bench = (latest_evidence(k, "m") for k in ("drift", "quality", "benchmark"))
    assert drift is not None and drift.run_key == "drift-run"
    assert quality is not None and quality.report_path and quality.report_path.endswith("q-run/report.html")
    import sqlalchemy as sa

    from lockgate.reports.summaries import summaries_table

    with sa.create_engine(f"sqlite:///{tmp_path / 'state.db'}").connect() as conn:
        keys = dict(conn.execute(sa.select(summaries_table.c.kind, summaries_table.c.run_key).where(
            summaries_table.c.model_name == "m", summaries_table.c.is_latest)).all())  # fmt: skip
    assert keys == {"drift": "drift-run", "quality": "q-run", "benchmark": "fresh"}  # q-run: its report's folder
    assert bench is not None and bench.run_key == "fresh"  # the later window stays the latest
    assert latest_evidence("benchmark", "other") is not None

    # Idempotent: a second import records nothing new.
    assert main(["evidence", "import-latest"]) == 1
    again = capsys.readouterr().out
    assert "0 latest, 0 history, 4 already there, 2 not imported" in again
    evidence, errors = read_latest("m", ["drift", "quality", "benchmark", "live"])
    assert evidence["live"] is None and errors == {}
