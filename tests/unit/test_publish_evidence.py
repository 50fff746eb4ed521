"""One publish step for every evidence job: a backfill never replaces fresher evidence, every run is indexed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lockgate.evidence import EvidenceKind, EvidenceSummary, latest_summary_path, read_summary, write_summary
from lockgate.reports.index import ReportEntry, list_reports

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
