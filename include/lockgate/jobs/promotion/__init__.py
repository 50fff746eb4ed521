"""The promotion job: gather the latest evidence and the registry's state, decide, act, and write the decision page.

`run_promotion()` is the whole job (the DAG's move task, `lockgate run promotion`, the demo):

1. take the model's promotion lock in lockgate's state database, and finish any move an earlier
   run recorded as intended and did not finish (it died, or MLflow stopped answering): with that
   run's decision and approver (`lockgate.registry.moves.reconcile`);
2. read the aliases, the challenger's approval tags and the latest benchmark, drift, quality
   and live summaries; apply the policy (`lockgate.policy.decide_promotion`);
3. carry the decision out (`lockgate.registry.moves`): re-read the aliases right before a move,
   move `champion` / `previous_champion` / `challenger`, set the `lockgate.*` tags, write the
   audit rows and the decision row, all idempotently;
4. release the lock, then write the decision page and record it in the reports index.

Because the decision is taken inside the lock from fresh reads, two runs at once make at most
one move: the second sees the first one's result.

Modules: `job` (the entry points and the steps), `inputs` (the registry and evidence reads, and the
lock-free `preview`), `outputs` (the decision page, the reports index row, the metrics).
"""

from __future__ import annotations

from lockgate.jobs.promotion.inputs import gather_inputs, preview
from lockgate.jobs.promotion.job import DAG_ID, approve, cmd_run, promotion_task, run_promotion, watched_model_names
from lockgate.jobs.promotion.outputs import (
    decision_page_path,
    export_decision_metrics,
    format_decision,
    publish_decision,
)

__all__ = [
    "DAG_ID",
    "approve",
    "cmd_run",
    "decision_page_path",
    "export_decision_metrics",
    "format_decision",
    "gather_inputs",
    "preview",
    "promotion_task",
    "publish_decision",
    "run_promotion",
    "watched_model_names",
]
