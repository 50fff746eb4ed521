"""The benchmark job: challenger against champion, side by side, on production-shaped load.

1. resolve the versions (the `challenger` and `champion` aliases unless given);
2. choose the device (GPU in the policy's dtype; CPU in float32 unless the policy requires a GPU);
3. sample prompt lengths from the inference logs of the window (a fixed synthetic set without logs);
4. download and load both versions; warm up; measure every serving configuration and batch size,
   the versions interleaved request by request (`lockgate.benchmark.harness`);
5. turn the measurements into metrics with bootstrap intervals and challenger/champion ratios,
   and decide whether the run is steady enough to use (`lockgate.benchmark.analysis`);
6. log one MLflow run per version (metrics, params, fingerprint, report; tagged with the model
   version, which gets `lockgate.benchmark_run_id`), write `report.html` and `summary.json` into
   the run folder (`jobs.publish.run_files`), then the one publish step (the
   reports store, the latest summary in the state database, `latest.json`, index).

Bad input (an unknown version or alias, a version that is not a causal LM or lacks artifacts,
no GPU where the policy requires one, invalid overrides) ends in an `error` summary and a report
that says what went wrong; out of memory at one batch size skips that size and goes on. A
run too noisy to trust is `invalid`. Neither kind is used by a gate. Everything is keyed by
`run_key`: running a key again replaces its outputs and its MLflow runs.

Modules: `job` (the entry points), `measure` (device, workload, models, measurement, analysis),
`outputs` (the files, the MLflow runs, the index row).
"""

from __future__ import annotations

from lockgate.jobs.benchmark.job import (
    DAG_ID,
    cmd_run,
    default_run_key,
    effective_config,
    run_benchmark,
    run_from_params,
)

__all__ = ["DAG_ID", "cmd_run", "default_run_key", "effective_config", "run_benchmark", "run_from_params"]
