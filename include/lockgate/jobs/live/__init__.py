"""The production evidence job (`live`): what each version's own traffic shows in the current window.

`run_live()` is the whole job (the DAG's task, `lockgate run live`, the demo):

1. resolve the versions (aliases), the current window (the run's data interval) and the
   champion's baseline window (the days before its `lockgate.promoted_at`, trailing without one);
2. in SQL, over every row of both windows: quarantined rows by reason, then per version and
   prompt-length stratum the exact request, error, timeout, empty-response, feedback and
   cached-token counts, and (PostgreSQL) the latency percentiles; on PostgreSQL through the
   per-hour rollups (`lockgate.live.rollups`: each hour aggregated once, percentiles within
   0.5%), elsewhere by reading both windows;
3. a bounded, deterministic sample per version for the intervals (and MiniLM relevance of
   part of the answers);
4. compare the challenger with the champion in the same hours, and the champion now with its
   baseline (`lockgate.live.compare`), raw and stratified by prompt length;
5. write the page and `summary.json` (the gates read the stratified estimates), then the one
   publish step (`jobs.publish.publish_evidence`: the reports store, the model's latest summary in
   the state database and its `latest.json`, never replacing evidence of a later window, and the
   reports index).

A version below `live.min_requests` has no estimates: its gates are missing, never passed.

Modules: `job` (the entry points), `inputs` (every query of the job), `estimates` (the comparisons
and the gate-ready metrics, pure).
"""

from __future__ import annotations

from lockgate.jobs.live.estimates import build_metrics, comparison_details, evaluate, requests_needed_by_gate
from lockgate.jobs.live.inputs import LiveInputs, read_inputs
from lockgate.jobs.live.job import DAG_ID, cmd_run, run_from_params, run_live

__all__ = [
    "DAG_ID",
    "LiveInputs",
    "build_metrics",
    "cmd_run",
    "comparison_details",
    "evaluate",
    "read_inputs",
    "requests_needed_by_gate",
    "run_from_params",
    "run_live",
]
