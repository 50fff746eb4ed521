"""Benchmark each watched model's challenger against its champion, side by side, on production-shaped load.

Runs daily for every model the policy watches (one mapped `benchmark` → `publish` pair per model,
each model independent of the others), only for the model named in the form, and within one
`registration.poll_seconds` of a model's `challenger` alias moving to a new version: the
triggerer's watch on the registry fires the `lockgate_challenger_alias` Asset and the run serves
that model alone.

Both versions are loaded from the MLflow registry (the `challenger` and `champion` aliases
unless you name versions) onto the GPU in the policy's dtype (CPU in float32 when there is
none), and measured in the same job, interleaved request by request, on prompt lengths
sampled from this run's window of inference logs: time to first token, time per output
token, inter-token and end-to-end latency (p50/p90/p99), prefill and decode tokens/s, peak
memory, MFU/MBU against the GPU's peak and energy per token where NVML allows, at each
batch size and serving configuration.

Every metric carries a bootstrap interval and the challenger/champion ratio the promotion
gates read. A run too noisy to trust is marked invalid and a failed one (unknown version,
not a causal LM, no GPU where required) writes an error summary: no gate uses either.

The benchmark task runs in pool `gpu` (one slot) on queue `gpu`, so a Celery or Kubernetes
deployment sends it to a GPU worker. The report is in the Lockgate menu and in MLflow (one
run per version); the summary goes to the `lockgate_benchmark_summary` Asset.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, Param, dag, task, task_group

from lockgate.assets import BENCHMARK, CHALLENGER_ALIAS
from lockgate.dag_tasks import watched_models


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    # Each run's data interval (the previous day) is the window whose prompt lengths shape the load;
    # a new challenger (the triggerer's watch on the registry) starts a run for its model at once.
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"), assets=CHALLENGER_ALIAS
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=5)},
    tags=["lockgate"],
    params={
        "model": Param(
            None,
            type=["null", "string"],
            title="Model",
            description="A registered model watched by the policy. Empty: every watched model.",
        ),
        "versions": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "minLength": 1},
            minItems=1,
            maxItems=2,
            title="Versions",
            description="Challenger, then champion: version numbers or aliases. Empty: the `challenger` "
            "and `champion` aliases. One entry: that version alone (no ratios).",
        ),
        "batch_sizes": Param(
            None,
            type=["null", "array"],
            items={"type": "integer", "minimum": 1},
            minItems=1,
            title="Batch sizes",
            description="Empty: the policy's benchmark.batch_sizes. The smallest gives the headline metrics.",
        ),
        "max_new_tokens": Param(
            None,
            type=["null", "integer"],
            minimum=2,
            title="New tokens per request",
            description="Empty: the policy's benchmark.max_new_tokens.",
        ),
        "repetitions": Param(
            None,
            type=["null", "integer"],
            minimum=2,
            title="Repetitions",
            description="Replays of the whole workload per version. Empty: the policy's benchmark.repetitions.",
        ),
        "serving_configs": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "enum": ["eager", "static_compile", "int8_dynamic"]},
            minItems=1,
            title="Serving configurations",
            description="eager, static_compile (static KV cache + torch.compile), int8_dynamic (CPU only). "
            "Empty: the policy's benchmark.serving_configs.",
        ),
    },
)
def lockgate_benchmark() -> None:
    @task(pool="gpu", queue="gpu", execution_timeout=pendulum.duration(hours=4))
    def benchmark(model: str, params: dict | None = None) -> dict:
        from lockgate.jobs.benchmark import run_from_params
        from lockgate.task_edge import run_context, task_errors

        # Bad input (unknown version, not a causal LM, no GPU) ends in an error summary, not an exception:
        # the Asset event below still tells lockgate_promotion, which holds on it.
        with task_errors():
            return run_from_params(params or {}, run_context(model))

    @task(outlets=[BENCHMARK])
    def publish(extra: dict, outlet_events=None) -> dict:
        outlet_events[BENCHMARK].extra = extra
        return extra

    # A mapped group: each model's publish waits for its own benchmark only.
    @task_group(prefix_group_id=False)
    def each_model(model: str) -> None:
        """One watched model: benchmark it, then publish its summary."""
        publish(benchmark(model))

    each_model.expand(model=watched_models())


lockgate_benchmark()
