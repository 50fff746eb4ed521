"""The one way an evidence job publishes its run, shared by the benchmark, drift, quality and live jobs.

The run's report page and `summary.json` are already written into its run folder (each job its
own page). Then, in this order:
1. the summary becomes the model's `latest.json` of its kind, unless the latest one describes a
   later window: a backfill or a rerun of an old run never replaces fresher evidence;
2. only evidence that became the latest is pushed to Prometheus (it is what the gates read now);
3. every run, a backfill too, is recorded in the reports index and the history tables.
"""

from __future__ import annotations

from pathlib import Path

from lockgate.evidence import EvidenceSummary, latest_summary_path, promote_latest
from lockgate.reports.index import ReportEntry


def publish_evidence(
    summary: EvidenceSummary, summary_path: Path, *, reports_dir: Path, report: ReportEntry, run_key: str
) -> bool:
    """Publish a run whose summary is at `summary_path`; True when it became the model's latest evidence."""
    from lockgate.observability.prometheus import export_evidence
    from lockgate.reports.history import record_evidence
    from lockgate.reports.index import record_report

    latest = promote_latest(summary_path, latest_summary_path(reports_dir, summary.kind, summary.model_name), summary)
    if latest:
        export_evidence(summary)
    record_report(report)
    record_evidence(summary, run_key)
    return latest
