"""Lockgate: evidence-gated promotion of LLM model versions, orchestrated by Airflow.

Kept empty on purpose: DAG files import `lockgate.assets` at parse time, and
anything imported here would be paid for by every DAG parse.
"""

__version__ = "0.1.0"
