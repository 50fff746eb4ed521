"""The KubernetesExecutor recipe, tested as far as a parse can: the GPU pod override, the routing
policy (on real Airflow task objects, and loaded by Airflow itself from $AIRFLOW_HOME/config),
and the Helm values for the official chart.

The cncf-kubernetes provider (and its kubernetes client) is not installed here, so the last step,
turning the override dict into a kubernetes V1Pod with the provider's
`PodGenerator.deserialize_model_dict`, is replaced by the identity in the in-process tests.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from .conftest import DOCKER, airflow_env_keys, subprocess_env, unknown_airflow_keys

K8S = DOCKER / "kubernetes"
INLINE_SECRET_KEYS = {
    "fernetKey",
    "apiSecretKey",
    "jwtSecret",
    "webserverSecretKey",
    "password",
    "brokerUrl",
    "connection",
    "metadataConnection",
    "resultBackendConnection",
}


def _policy_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lockgate_airflow_local_settings", K8S / "airflow_local_settings.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def policy(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = _policy_module()
    monkeypatch.delenv("LOCKGATE_GPU_EXECUTOR", raising=False)
    monkeypatch.delenv("LOCKGATE_GPU_IMAGE", raising=False)
    monkeypatch.delenv("LOCKGATE_GPU_POD_OVERRIDE", raising=False)
    return module


def _tasks() -> dict[str, Any]:
    """Real Task SDK operators shaped like lockgate's: GPU work on queue and pool `gpu`."""
    import pendulum
    from airflow.sdk import DAG, task

    with DAG("k8s_policy_check", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):

        @task(queue="gpu", pool="gpu")
        def benchmark() -> None: ...

        @task
        def summarise() -> None: ...

        @task(queue="gpu", pool="gpu", executor_config={"pod_override": "own"})
        def custom() -> None: ...

        ops = [benchmark().operator, summarise().operator, custom().operator]
    return {op.task_id: op for op in ops}


def test_gpu_pod_override_yaml() -> None:
    pod = yaml.safe_load((K8S / "gpu-pod-override.yaml").read_text())
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    base = pod["spec"]["containers"][0]
    assert base["name"] == "base"
    assert base["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in base["resources"].get("requests", {})  # limits-only extended resource
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    image = base["image"]
    assert image.endswith("-gpu") and ":latest" not in image and ":" in image.rsplit("/", 1)[-1]


def test_load_pod_override_checks_what_gpu_scheduling_needs(policy: ModuleType, tmp_path: Path) -> None:
    pod = policy.load_pod_override(image="registry.internal/lockgate/airflow:9.9.9-gpu")
    assert pod["spec"]["containers"][0]["image"] == "registry.internal/lockgate/airflow:9.9.9-gpu"
    no_gpu = yaml.safe_load((K8S / "gpu-pod-override.yaml").read_text())
    del no_gpu["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(no_gpu))
    with pytest.raises(policy.GpuPodError, match="nvidia.com/gpu"):
        policy.load_pod_override(tmp_path / "bad.yaml")
    renamed = yaml.safe_load((K8S / "gpu-pod-override.yaml").read_text())
    renamed["spec"]["containers"][0]["name"] = "main"
    (tmp_path / "renamed.yaml").write_text(yaml.safe_dump(renamed))
    with pytest.raises(policy.GpuPodError, match="base"):
        policy.load_pod_override(tmp_path / "renamed.yaml")


def test_policy_routes_only_gpu_tasks(policy: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = _tasks()
    policy.task_policy(tasks["benchmark"])  # LOCKGATE_GPU_EXECUTOR unset: nothing changes
    assert tasks["benchmark"].executor is None and not tasks["benchmark"].executor_config

    monkeypatch.setenv("LOCKGATE_GPU_EXECUTOR", "KubernetesExecutor")
    monkeypatch.setenv("LOCKGATE_GPU_IMAGE", "registry.internal/lockgate/airflow:0.1.0-gpu")
    monkeypatch.setattr(policy, "to_v1pod", lambda pod: pod)  # the provider's converter is not installed here
    for op in tasks.values():
        policy.task_policy(op)

    gpu = tasks["benchmark"]
    assert gpu.executor == "KubernetesExecutor"
    assert (gpu.queue, gpu.pool) == ("gpu", "gpu")  # the pool still bounds concurrent GPU pods
    pod = gpu.executor_config["pod_override"]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["containers"][0]["image"] == "registry.internal/lockgate/airflow:0.1.0-gpu"
    cpu = tasks["summarise"]
    assert cpu.executor is None and not cpu.executor_config and cpu.queue == "default"
    assert tasks["custom"].executor == "KubernetesExecutor"
    assert tasks["custom"].executor_config["pod_override"] == "own"  # a task's own override wins


def test_airflow_loads_the_policy_from_its_config_folder(tmp_path: Path, pycache_prefix: Path) -> None:
    """Airflow itself imports $AIRFLOW_HOME/config/airflow_local_settings.py and applies it while
    parsing DAGs (the DAG processor's path). The non-Kubernetes branch is used so that no
    kubernetes client is needed: a second executor, named by LOCKGATE_GPU_EXECUTOR."""
    home, dags = tmp_path / "airflow", tmp_path / "dags"
    (home / "config").mkdir(parents=True)
    dags.mkdir()
    shutil.copy(K8S / "airflow_local_settings.py", home / "config")
    shutil.copy(K8S / "gpu-pod-override.yaml", home / "config")
    (dags / "gpu_dag.py").write_text(
        textwrap.dedent(
            """
            import pendulum
            from airflow.sdk import dag, task

            @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
            def gpu_dag():
                @task(queue="gpu", pool="gpu")
                def on_gpu(): ...

                @task
                def on_cpu(): ...

                on_gpu() >> on_cpu()

            gpu_dag()
            """
        )
    )
    probe = textwrap.dedent(
        f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(dags)!r})
        dag = bag.dags["gpu_dag"]
        print(json.dumps({{"errors": {{k: str(v) for k, v in bag.import_errors.items()}},
                           "tasks": {{t.task_id: [t.queue, t.pool, t.executor] for t in dag.tasks}}}}))
        """
    )
    env = subprocess_env(
        pycache_prefix,
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__EXECUTOR="LocalExecutor,CeleryExecutor",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'airflow.db'}",
        LOCKGATE_GPU_EXECUTOR="CeleryExecutor",
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["tasks"]["on_gpu"] == ["gpu", "gpu", "CeleryExecutor"]
    assert result["tasks"]["on_cpu"][2] is None


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((K8S / "values.yaml").read_text())


def test_helm_values_run_celery_and_kubernetes_executors(values: dict[str, Any]) -> None:
    assert values["executor"].split(",") == ["CeleryExecutor", "KubernetesExecutor"]
    assert values["airflowLocalSettings"] is None  # keep the image's policy file
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["LOCKGATE_GPU_EXECUTOR"] == "KubernetesExecutor"
    assert env["LOCKGATE_GPU_IMAGE"].endswith(":0.1.0-gpu")
    for var in ("LOCKGATE_HOME", "LOCKGATE_REPORTS_DIR", "LOCKGATE_CONFIG", "MLFLOW_TRACKING_URI"):
        assert env[var]
    secret_envs = {s["envName"] for s in values["secret"]}
    assert {"LOCKGATE_LOGS_DB_URL", "MLFLOW_TRACKING_PASSWORD"} <= secret_envs
    mounts = {m["mountPath"] for m in values["volumeMounts"]}
    assert env["LOCKGATE_HOME"] in mounts  # reports on the shared (ReadWriteMany) volume


def test_helm_values_pin_images(values: dict[str, Any]) -> None:
    import re

    assert values["airflowVersion"] == "3.3.2"
    assert re.fullmatch(r"\d+\.\d+\.\d+", values["defaultAirflowTag"])
    assert values["images"]["airflow"]["tag"] == values["defaultAirflowTag"]


def test_helm_values_use_airflow_3_keys(
    values: dict[str, Any],
    airflow_config_keys: set[tuple[str, str]],
    removed_airflow_keys: set[tuple[str, str]],
) -> None:
    keys = {(section, key) for section, options in values["config"].items() for key in options}
    keys |= airflow_env_keys({e["name"]: e.get("value", "") for e in values["env"]})
    keys |= airflow_env_keys({s["envName"]: "" for s in values["secret"]})
    unknown = unknown_airflow_keys(keys, airflow_config_keys)
    assert not unknown, f"options the installed Airflow does not define: {sorted(unknown)}"
    assert not keys & removed_airflow_keys
    assert "webserver" not in values and "webserverSecretKey" not in values
    assert "apiServer" in values and "jwtSecretName" in values


def test_helm_values_hold_no_secret(values: dict[str, Any]) -> None:
    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str):
            assert "@" not in node or "://" not in node, f"{path}: a credential URL belongs in a Secret"
            # The chart's inline-secret values: each has a *SecretName alternative used instead.
            if path.rsplit(".", 1)[-1] in INLINE_SECRET_KEYS:
                pytest.fail(f"{path}: a secret value in values.yaml")

    walk(values, "values")
