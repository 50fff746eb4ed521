"""Every Airflow Asset lockgate produces or consumes, defined once.

Importing this module must stay cheap: DAG files import it at parse time, so it
imports nothing but `airflow.sdk` (tests/dags/test_dag_integrity.py checks it).

The URIs use the `x-lockgate` scheme. Airflow leaves `x-` schemes alone; any other
unregistered scheme makes the first `Asset(...)` of a process load every provider's
URI normalizers (about 90 ms after `airflow.sdk`, paid by each DAG file parse).
"""

from __future__ import annotations

from airflow.sdk import Asset

BENCHMARK = Asset(uri="x-lockgate://evidence/benchmark", name="lockgate_benchmark_summary", group="lockgate")
DRIFT = Asset(uri="x-lockgate://evidence/drift", name="lockgate_drift_summary", group="lockgate")
QUALITY = Asset(uri="x-lockgate://evidence/quality", name="lockgate_quality_summary", group="lockgate")
LIVE = Asset(uri="x-lockgate://evidence/live", name="lockgate_live_summary", group="lockgate")

EVIDENCE_ASSETS = (BENCHMARK, DRIFT, QUALITY, LIVE)
