"""The one way an evidence job publishes its run, shared by the benchmark, drift, quality and live jobs.

The run's report page and `summary.json` are already written into its run folder (each job its
own page). Then, in this order:
1. the run folder's files go into the reports store (`reports.store`: nothing to do for the local
   folder; with `LOCKGATE_REPORTS_URL=s3://...`, one atomic PUT per file, the summary last);
2. the summary is recorded in lockgate's state database (`reports.summaries.record_summary`), the
   authoritative copy the promotion reads, and becomes the model's latest evidence of its kind
   unless the latest one describes a later window: a backfill or a rerun of an old run never
   replaces fresher evidence;
3. evidence that became the latest is copied to the model's `latest.json` in the store (for people
   and scripts) and pushed to Prometheus (it is what the gates read now);
4. every run, a backfill too, is recorded in the reports index and the history tables.

It is also the one place that knows where a run's files are (`run_files`: the run folder, its
`report.html` and `summary.json`; `evidence.latest_summary_path` for `latest.json`), and how a
page is written (`write_report`: atomically, like the summary). The Asset event's payload is one
schema for every kind, `evidence.EvidencePayload`, built by `evidence.evidence_payload`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lockgate.evidence import (
    REPORT_FILE,
    SUMMARY_FILE,
    EvidenceKind,
    EvidenceSummary,
    latest_summary_path,
    write_text_atomic,
)
from lockgate.reports.html import report_dir
from lockgate.reports.index import ReportEntry


@dataclass(frozen=True)
class RunFiles:
    """Where one evidence run's outputs are: `<reports>/<kind>/<model>/<run key>/`."""

    dir: Path

    @property
    def report(self) -> Path:
        return self.dir / REPORT_FILE

    @property
    def summary(self) -> Path:
        return self.dir / SUMMARY_FILE

    def __truediv__(self, name: str) -> Path:
        """Another file of the run (Evidently's page, a kind's own JSON)."""
        return self.dir / name


def run_files(kind: EvidenceKind, model_name: str, run_key: str, reports_dir: Path | None = None) -> RunFiles:
    """The run folder of `run_key` (created), with its page's and summary's paths."""
    return RunFiles(report_dir(kind, model_name, run_key, reports_dir))


def write_report(path: Path, html: str) -> Path:
    """Write a report page atomically: the plugin serving it never reads half a page."""
    return write_text_atomic(path, html)


def publish_evidence(
    summary: EvidenceSummary, summary_path: Path, *, reports_dir: Path, report: ReportEntry, run_key: str
) -> bool:
    """Publish a run whose summary is at `summary_path`; True when it became the model's latest evidence."""
    from lockgate.observability.prometheus import export_evidence
    from lockgate.reports.history import record_evidence
    from lockgate.reports.index import record_report
    from lockgate.reports.store import reports_store
    from lockgate.reports.summaries import record_summary

    store = reports_store(reports_dir)
    store.put_run(summary_path.parent)
    latest = record_summary(summary, run_key)
    if latest:
        # The file the run wrote, byte for byte: latest.json is a copy of a run's summary.json.
        rel = latest_summary_path(reports_dir, summary.kind, summary.model_name).relative_to(reports_dir)
        store.write_text(rel.as_posix(), summary_path.read_text(encoding="utf-8"))
        export_evidence(summary)
    record_report(report)
    record_evidence(summary, run_key)
    return latest
