"""Every Airflow Asset lockgate produces or consumes, defined once.

Importing this module must stay cheap: DAG files import it at parse time, so it
imports nothing but `airflow.sdk` and the registry watch's trigger class, itself light
(tests/dags/test_dag_integrity.py checks it).

The URIs use the `x-lockgate` scheme. Airflow leaves `x-` schemes alone; any other
unregistered scheme makes the first `Asset(...)` of a process load every provider's
URI normalizers (about 90 ms after `airflow.sdk`, paid by each DAG file parse).
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetWatcher

from lockgate.registry.alias_watch import ChallengerAliasTrigger

BENCHMARK = Asset(uri="x-lockgate://evidence/benchmark", name="lockgate_benchmark_summary", group="lockgate")
DRIFT = Asset(uri="x-lockgate://evidence/drift", name="lockgate_drift_summary", group="lockgate")
QUALITY = Asset(uri="x-lockgate://evidence/quality", name="lockgate_quality_summary", group="lockgate")
LIVE = Asset(uri="x-lockgate://evidence/live", name="lockgate_live_summary", group="lockgate")

EVIDENCE_ASSETS = (BENCHMARK, DRIFT, QUALITY, LIVE)

# Fired by the triggerer when a watched model's `challenger` alias points at a new version (see
# lockgate.registry.alias_watch); the benchmark and quality DAGs run on it, promotion follows their evidence.
CHALLENGER_ALIAS = Asset(
    uri="x-lockgate://registry/challenger",
    name="lockgate_challenger_alias",
    group="lockgate",
    watchers=[AssetWatcher(name="lockgate_challenger_alias_watch", trigger=ChallengerAliasTrigger())],
)
