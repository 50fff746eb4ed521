"""The local stack: Airflow 3 components and an MLflow server as recorded background processes.

* `commands`: `lockgate up`, `lockgate down`, `lockgate status`.
* `settings_apply`: `lockgate settings apply` (airflow_settings.yaml, Astro CLI format);
  `airflow_loader` is its half that runs inside the target Airflow's environment.
* `env`: where the stack keeps its state and the environment every component gets.
* `processes`: starting, recording and stopping process sessions (never a recycled pid).
* `health`: the health checks `up` waits on and `status` shows.
* `postgres`: reachability of PostgreSQL and the `lockgate` logs database.

Nothing here imports Airflow at module level: the CLI process only talks to Airflow
through subprocesses and HTTP, so its own configuration never leaks into the stack.
"""
