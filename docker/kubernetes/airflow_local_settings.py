"""Airflow cluster policy: send lockgate's GPU tasks to the KubernetesExecutor in a GPU pod.

lockgate's DAGs mark GPU work with `queue="gpu", pool="gpu"` and name no executor, so the same
DAG files run on Celery (a worker listening on queue `gpu`) and on Kubernetes. With several
executors configured (`[core] executor = CeleryExecutor,KubernetesExecutor`) and
`LOCKGATE_GPU_EXECUTOR=KubernetesExecutor` set on every Airflow component, this policy gives each
task on queue `gpu`, when the DAG is parsed:

* `executor="KubernetesExecutor"`, and
* `executor_config={"pod_override": <V1Pod of gpu-pod-override.yaml>}`: an `nvidia.com/gpu`
  limit, a GPU node selector and a toleration for the GPU taint.

The pool is kept: it bounds how many GPU pods run at once. A task that brings its own
`pod_override` keeps it. Without `LOCKGATE_GPU_EXECUTOR` this module changes nothing (the compose
deployment ships it too).

The image copies this file and gpu-pod-override.yaml to $AIRFLOW_HOME/config/, which Airflow puts
on sys.path; `LOCKGATE_GPU_POD_OVERRIDE` points at another YAML, `LOCKGATE_GPU_IMAGE` replaces the
image of the GPU container (the CUDA build of the lockgate image).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml

GPU_QUEUE = "gpu"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_POD_OVERRIDE = Path(__file__).with_name("gpu-pod-override.yaml")


class GpuPodError(ValueError):
    """The GPU pod override file is not a usable partial pod."""


def load_pod_override(path: Path | None = None, image: str | None = None) -> dict[str, Any]:
    """The GPU pod override as a Kubernetes API dict, checked for what GPU scheduling needs."""
    source = path or Path(os.environ.get("LOCKGATE_GPU_POD_OVERRIDE") or DEFAULT_POD_OVERRIDE)
    pod = yaml.safe_load(source.read_text())
    if not isinstance(pod, dict) or pod.get("kind") != "Pod":
        raise GpuPodError(f"{source}: must be a Kubernetes Pod (kind: Pod)")
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers or containers[0].get("name") != "base":
        raise GpuPodError(f"{source}: spec.containers[0] must be named `base` (Airflow's task container)")
    limits = (containers[0].get("resources") or {}).get("limits") or {}
    if int(limits.get(GPU_RESOURCE, 0)) < 1:
        raise GpuPodError(f"{source}: spec.containers[0].resources.limits.{GPU_RESOURCE} must be >= 1")
    image = image or os.environ.get("LOCKGATE_GPU_IMAGE")
    if image:
        containers[0]["image"] = image
    return pod


def to_v1pod(pod: dict[str, Any]) -> Any:
    """A kubernetes.client V1Pod: the KubernetesExecutor accepts nothing else as pod_override."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    return PodGenerator.deserialize_model_dict(pod)


@functools.cache
def gpu_pod_override() -> Any:
    """Loaded once per process (the DAG processor calls the policy for every task)."""
    return to_v1pod(load_pod_override())


def route_gpu_task(task: Any, executor: str, pod_override: Any) -> bool:
    """Point a task on queue `gpu` at `executor` with the GPU pod; False for any other task."""
    if getattr(task, "queue", None) != GPU_QUEUE:
        return False
    task.executor = executor
    config = dict(task.executor_config or {})
    config.setdefault("pod_override", pod_override)
    task.executor_config = config
    return True


def task_policy(task: Any) -> None:
    """Airflow calls this for every task of every DAG it parses."""
    executor = os.environ.get("LOCKGATE_GPU_EXECUTOR")
    if not executor or getattr(task, "queue", None) != GPU_QUEUE:
        return
    if executor.rsplit(".", 1)[-1] == "KubernetesExecutor":
        route_gpu_task(task, executor, gpu_pod_override())
    else:
        task.executor = executor
