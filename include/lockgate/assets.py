"""Every Airflow Asset lockgate produces or consumes, defined once.

Importing this module must stay cheap: DAG files import it at parse time.
"""

from __future__ import annotations

from airflow.sdk import Asset

BENCHMARK = Asset(uri="lockgate://evidence/benchmark", name="lockgate_benchmark_summary", group="lockgate")
DRIFT = Asset(uri="lockgate://evidence/drift", name="lockgate_drift_summary", group="lockgate")
QUALITY = Asset(uri="lockgate://evidence/quality", name="lockgate_quality_summary", group="lockgate")
LIVE = Asset(uri="lockgate://evidence/live", name="lockgate_live_summary", group="lockgate")

EVIDENCE_ASSETS = (BENCHMARK, DRIFT, QUALITY, LIVE)
