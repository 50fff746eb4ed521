"""The registry adapter and a whole promotion against a real `mlflow server` process over REST."""

from __future__ import annotations

import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lockgate.devtools.testing.registry import (
    MemoryStateStore,
    passing_evidence,
    policy_for,
    register_stub_version,
    sqlite_mlflow_store,
    write_evidence,
)
from lockgate.devtools.testing.servers import free_port, running_server
from lockgate.errors import ServiceUnavailableError
from lockgate.jobs.context import RunContext
from lockgate.jobs.promotion import run_promotion
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry, RegistryState
from lockgate.registry.audit import list_audit, state_engine
from lockgate.registry.commands import approve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free port, SQLite backend in a temporary folder, job runner off."""
    root = tmp_path_factory.mktemp("mlflow_server")
    backend = sqlite_mlflow_store(root / "mlflow.db")  # a migrated store: the server starts faster
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        backend,
        "--default-artifact-root",
        (root / "artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    try:
        with running_server(args, env, root / "server.log", f"http://127.0.0.1:{port}") as url:
            yield url
    except RuntimeError as exc:  # the server exited or never became healthy: the log's end is in it
        pytest.fail(f"mlflow server: {exc}")


def test_promotion_over_rest(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    name = f"rest-{uuid.uuid4().hex[:8]}"
    v1 = register_stub_version(name, mlflow_server, alias="champion")
    v2 = register_stub_version(name, mlflow_server, alias="challenger")
    registry = ModelRegistry(mlflow_server)
    state = registry.state(name)
    assert state == RegistryState(champion=v1, challenger=v2)
    assert all(isinstance(v, str) for v in (state.champion, state.challenger))  # REST gives str, as SQLite's int

    policy = policy_for(name)
    reports = tmp_path / "reports"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    write_evidence(reports, passing_evidence(name, v2, v1, datetime.now(UTC)), state_url)
    kwargs = {"policy": policy, "registry": registry, "state_url": state_url, "reports_dir": reports}

    assert run_promotion(RunContext(name, run_key="r1"), **kwargs).action == "await_approval"
    assert registry.versions_with_status(name, "awaiting_approval")[0][0] == v2
    approve(name, v2, "alice", policy=policy, registry=registry, state_url=state_url)
    decision = run_promotion(RunContext(name, run_key="r2"), **kwargs)
    assert decision.action == "promote" and decision.outcome == "moved"
    assert registry.state(name) == RegistryState(champion=v2, challenger=None, previous_champion=v1)
    assert registry.version_tags(name, v2)[T.STATUS] == "promoted"
    assert T.LAST_MOVE in registry.registered_model_tags(name)
    moves = [a for a in list_audit(state_engine(state_url), name, kind="alias_move") if a.alias == "champion"]
    assert [(m.from_version, m.to_version) for m in moves] == [(v1, v2)]


def test_a_server_that_does_not_answer_is_one_clear_error():
    port = free_port()
    with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port}") as info:
        ModelRegistry(f"http://127.0.0.1:{port}")
    assert info.value.code == "service_unavailable"


def _set_alias(uri: str, name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(name, alias, version)


def _set_tag(uri: str, name: str, version: str, key: str, value: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri, registry_uri=uri).set_model_version_tag(name, version, key, value)


def test_the_registry_watch_fires_once_per_new_challenger_and_misses_none_across_a_restart(
    mlflow_server, tmp_path, monkeypatch
):
    """`ChallengerAliasTrigger` against a real `mlflow server`: at its first poll, a standing challenger
    lockgate already decided on is the baseline and an undecided one fires; then a new challenger of a
    watched model, and the first one of a model registered after the start, fire one event each; a
    challenger set while the watch is down fires on its restart (the state store keeps what it saw);
    an unwatched model never fires."""
    import asyncio

    import yaml

    from lockgate.registry.alias_watch import STATE_KEY, ChallengerAliasTrigger

    suffix = uuid.uuid4().hex[:6]
    early, late, unwatched = f"watch-early-{suffix}", f"watch-late-{suffix}", f"unwatched-{suffix}"
    pending = f"watch-pending-{suffix}"
    policy = policy_for(early, late, pending).model_dump(mode="json")
    policy["registration"] = {"watch": True, "poll_seconds": 1}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    monkeypatch.setenv("LOCKGATE_CONFIG", str(tmp_path / "policy.yaml"))
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    standing = register_stub_version(early, mlflow_server, alias="challenger")
    _set_tag(mlflow_server, early, standing, "lockgate.status", "gates_failed")  # decided before the watch
    undecided = register_stub_version(pending, mlflow_server, alias="challenger")  # `evaluating`: not yet
    register_stub_version(unwatched, mlflow_server, alias="challenger")
    store = MemoryStateStore()

    async def watch(until_events: int, while_running, quiet_s: float = 3.0) -> list[dict]:
        trigger = ChallengerAliasTrigger()
        trigger.asset_state_store = store
        events: list[dict] = []
        stream = trigger.run()

        async def consume() -> None:
            async for event in stream:
                events.append(event.payload)

        consumer = asyncio.create_task(consume())
        try:
            for _ in range(100):  # the first poll has saved what it saw
                if STATE_KEY in store.values:
                    break
                await asyncio.sleep(0.1)
            await asyncio.to_thread(while_running)
            deadline = asyncio.get_running_loop().time() + 30
            while len(events) < until_events and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(quiet_s)  # and nothing more comes
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await stream.aclose()
        return events

    new_versions: dict[str, str] = {}

    def register_two_challengers() -> None:
        new_versions[early] = register_stub_version(early, mlflow_server, alias="challenger")
        new_versions[late] = register_stub_version(late, mlflow_server, alias="challenger")
        register_stub_version(unwatched, mlflow_server, alias="challenger")

    first = asyncio.run(watch(3, register_two_challengers))
    assert [(e["model"], e["version"], e["previous_version"]) for e in first] == [
        (pending, undecided, None),
        (early, new_versions[early], standing),
        (late, new_versions[late], None),
    ]
    assert all(e["source"] == "lockgate.alias_watch" and e["seen_at"] for e in first)
    assert store.values[STATE_KEY] == {early: new_versions[early], late: new_versions[late], pending: undecided}

    # Down: the challenger moves back to the standing version; the restarted watch reports it once.
    _set_alias(mlflow_server, early, "challenger", standing)
    second = asyncio.run(watch(1, lambda: None))
    assert [(e["model"], e["version"], e["previous_version"]) for e in second] == [
        (early, standing, new_versions[early])
    ]
    # Restarted again with nothing new: no event.
    assert asyncio.run(watch(0, lambda: None, quiet_s=2.5)) == []

    # The plugin's webhook receiver reported a challenger (and recorded it in the state store, as
    # lockgate.registry.webhook_receiver does): the poll does not report it a second time.
    def reported_by_the_webhook() -> None:
        version = register_stub_version(early, mlflow_server)
        store.values[STATE_KEY] = {**store.values[STATE_KEY], early: version}
        _set_alias(mlflow_server, early, "challenger", version)

    assert asyncio.run(watch(0, reported_by_the_webhook, quiet_s=2.5)) == []


def test_the_registry_watch_outlives_an_unreachable_registry_and_an_invalid_policy(tmp_path, monkeypatch, capsys):
    """A poll that fails (no MLflow server, a broken policy file) is logged and retried; the watch never ends."""
    import asyncio

    import yaml

    from lockgate.registry.alias_watch import ChallengerAliasTrigger

    policy = policy_for("watch-down").model_dump(mode="json")
    policy["registration"] = {"poll_seconds": 1}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "broken.yaml").write_text("models: [\n")
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")

    async def first_event_within(seconds: float) -> object:
        stream = ChallengerAliasTrigger(retry_seconds=0.5).run()
        try:
            return await asyncio.wait_for(anext(stream), timeout=seconds)
        except TimeoutError:
            return "still watching"
        finally:
            await stream.aclose()

    # Airflow's structlog writes the trigger's warnings to stdout.
    for config, said in (("policy.yaml", "cannot read the registry"), ("broken.yaml", "the policy cannot be read")):
        monkeypatch.setenv("LOCKGATE_CONFIG", str(tmp_path / config))
        capsys.readouterr()
        assert asyncio.run(first_event_within(4)) == "still watching"
        assert said in capsys.readouterr().out
