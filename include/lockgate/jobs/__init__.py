"""Job entry points: one module per stage, each runnable from the CLI (`lockgate run <job>`) or an Airflow task.

Kept empty: a DAG task imports `lockgate.jobs.<job>` inside the task function, at run time.
"""
