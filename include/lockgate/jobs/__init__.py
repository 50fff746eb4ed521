"""Job entry points: one module per stage, each runnable from the CLI (`lockgate run <job>`) or an Airflow task.

A DAG task imports `lockgate.jobs.<job>` inside the task function, at run time. Importing this
package turns third-party progress bars off: they write to stderr, which Airflow's task log shows
as red ERROR lines, and the jobs report their own progress instead. A variable already set wins.
"""

from __future__ import annotations

import os

QUIET_PROGRESS_ENV = {
    # tqdm reads TQDM_* when it is first imported: set before MLflow, transformers or Evidently import it.
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
for _name, _value in QUIET_PROGRESS_ENV.items():
    os.environ.setdefault(_name, _value)
