"""The drift job: sample a reference and a current window of logs, test, decide, and write the evidence.

`run_drift()` is the whole job (the DAG's task, `lockgate run drift`, the demo):

1. resolve the windows (policy, Params, the run's data interval, the champion's promotion time);
2. sample both windows from the log store (deterministic, bounded memory; quarantined rows counted);
3. compare them (`lockgate.drift.analysis`, through `compare.compare_frames`): operational metrics,
   offline text descriptors, MiniLM embeddings; one explicit test per column, Benjamini-Hochberg,
   minimum effect sizes;
4. write into the run folder (`jobs.publish.run_files`): `report.html` (lockgate's page, with the
   drifted columns' reference and current values binned into it: counts, never rows),
   `evidently.html` (Evidently's report over the same columns), `drift_summary.json`
   (`DriftSummary`) and `summary.json` (the `EvidenceSummary` the gates read); log the folder as an
   MLflow artifact (`outputs`); then the one publish step (`jobs.publish.publish_evidence`).

Everything is keyed by the run key, so running a key again replaces its outputs (same MLflow
run, same index row) instead of adding new ones. A window with too few usable rows still
writes every output, with status `insufficient_data` and no metrics: missing evidence.

Modules: `job` (the entry points and the steps), `compare` (the comparison without I/O),
`outputs` (the files and the MLflow run).
"""

from __future__ import annotations

from lockgate.jobs.drift.compare import EVIDENTLY_FILE, compare_frames
from lockgate.jobs.drift.job import DAG_ID, cmd_run, default_run_key, drift_summary_of, run_drift, run_from_params
from lockgate.jobs.drift.outputs import DRIFT_SUMMARY_FILE, log_to_mlflow, mlflow_run_for

REPORT_FILE = "report.html"

__all__ = [
    "DAG_ID",
    "DRIFT_SUMMARY_FILE",
    "EVIDENTLY_FILE",
    "REPORT_FILE",
    "cmd_run",
    "compare_frames",
    "default_run_key",
    "drift_summary_of",
    "log_to_mlflow",
    "mlflow_run_for",
    "run_drift",
    "run_from_params",
]
