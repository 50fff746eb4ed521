"""The whole promotion story against the real servers, over HTTP only, as a user would drive it.

Airflow's REST API v2 (token from POST /auth/token) runs the DAGs; MLflow's REST API is
where a person reads the challenger's status and sets the approval tags (what the MLflow
UI does); the Lockgate plugin serves the reports behind Airflow's login.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest

# The timeout covers the shared stack's start and the evidence runs when this module runs first.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

PROMOTION = "lockgate_promotion"
GATES = (
    "ttft_regression",
    "decode_latency_regression",
    "input_drift",
    "relevance_regression",
    "grounding_regression",
    "champion_error_rate",
    "live_ttft_regression",
    "live_error_rate",
    "champion_ttft_degraded",
)


def _plugin_get(stack, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=30, trust_env=False, follow_redirects=True) as c:
        return c.get(f"{stack.airflow_url}{path}", headers=headers)


def test_token_login(stack) -> None:
    # The login a user gets from `lockgate up` works, a wrong password does not.
    assert stack.token()
    with httpx.Client(timeout=30, trust_env=False) as c:
        bad = c.post(f"{stack.airflow_url}/auth/token", json={"username": stack.username, "password": "wrong"})
        anonymous = c.get(f"{stack.airflow_url}/api/v2/dags")
    assert bad.status_code == 401, bad.text
    assert anonymous.status_code in (401, 403), anonymous.text


def test_evidence_promotion_and_approval(stack, evidence_runs, first_promotion) -> None:
    champion, challenger = stack.champion, stack.challenger
    assert champion != challenger

    # 1. The four evidence DAGs succeeded (the fixture asserted each run's state through the API).
    assert set(evidence_runs) == {"lockgate_benchmark", "lockgate_drift", "lockgate_quality", "lockgate_live"}

    # 2. The first promotion found every gate open and asks a person: nothing moved yet.
    tags = stack.version_tags(challenger)
    assert tags.get("lockgate.status") == "awaiting_approval", tags
    evidence = tags.get("lockgate.evidence")
    assert evidence, tags
    assert tags.get("lockgate.decision_report"), tags
    assert stack.alias("champion") == champion
    assert stack.alias("challenger") == challenger
    # The same decision in Prometheus, pushed by the Airflow task to the Pushgateway and read with
    # PromQL: every gate's verdict, the action, the evidence of each kind and the policy's max age.
    from lockgate.policy.schema import load_policy
    from lockgate.settings import DEFAULT_POLICY_PATH

    m = f'model="{stack.model}"'
    policy_gates = {g.name for g in load_policy(DEFAULT_POLICY_PATH).model(stack.model).gates}
    gates = stack.monitoring.wait_for(f"lockgate_gate_passed{{{m}}}", len(policy_gates))
    assert {g["metric"]["gate"] for g in gates} == policy_gates, gates
    # as the decision (await_approval) says: no blocking or rollback gate failed (a warn gate may)
    assert all(g["value"][1] == "1" for g in gates if g["metric"]["gate_action"] != "warn"), gates
    assert stack.monitoring.query(f'lockgate_decision{{{m},action="await_approval"}} == 1')
    kinds = stack.monitoring.wait_for(f'lockgate_evidence_timestamp_seconds{{{m},job="lockgate_promotion"}}', 4)
    assert {k["metric"]["kind"] for k in kinds} == {"benchmark", "drift", "quality", "live"}
    (max_age,) = stack.monitoring.query(f"lockgate_evidence_max_age_seconds{{{m}}}")
    assert float(max_age["value"][1]) == 48 * 3600

    # 3. Someone who is not in the policy's approver list approves: it must not count.
    stack.set_version_tag(challenger, "lockgate.approval", "approved")
    stack.set_version_tag(challenger, "lockgate.approved_by", "mallory")
    stack.promote("approved by mallory")
    tags = stack.version_tags(challenger)
    assert stack.alias("champion") == champion, "an unlisted approver moved the champion"
    assert stack.alias("challenger") == challenger
    assert stack.alias("previous_champion") is None
    assert tags.get("lockgate.status") == "awaiting_approval", tags
    # The refused approval is cleared (so a listed approver is asked) and kept for the record.
    assert "lockgate.approval" not in tags, tags
    assert "mallory" in tags.get("lockgate.previous_approval", ""), tags

    # 4. alice, a listed approver, approves the evidence she was shown; the next run promotes.
    assert stack.version_tags(challenger).get("lockgate.evidence") == evidence, "evidence changed under the approval"
    stack.set_version_tag(challenger, "lockgate.approval", "approved")
    stack.set_version_tag(challenger, "lockgate.approved_by", "alice")
    promoted_run = stack.promote("approved by alice")
    assert stack.alias("champion") == challenger
    assert stack.alias("previous_champion") == champion
    assert stack.alias("challenger") is None  # the challenger is the champion now
    tags = stack.version_tags(challenger)
    assert tags.get("lockgate.status") == "promoted", tags
    assert tags.get("lockgate.promoted_by") == "alice", tags
    assert tags.get("lockgate.promoted_from") == champion, tags

    # 5. The decision page of that run, through the plugin's DAG-run link, with and without a login.
    link = f"/lockgate/runs/{PROMOTION}/{quote(promoted_run, safe='')}"
    page = _plugin_get(stack, link, stack.token())
    assert page.status_code == 200, page.text[:500]
    assert page.url.path.endswith(".html"), page.url
    for gate in GATES:
        assert gate in page.text, f"gate {gate} missing from the decision page"
    assert "alice" in page.text
    refused = _plugin_get(stack, link, None)
    assert refused.status_code in (401, 403), refused.status_code
    refused_file = _plugin_get(stack, page.url.path, None)
    assert refused_file.status_code in (401, 403), refused_file.status_code

    # 6. The Lockgate index lists every kind of report, each with a link that serves it.
    index = _plugin_get(stack, "/lockgate/", stack.token())
    assert index.status_code == 200, index.text[:500]
    assert _plugin_get(stack, "/lockgate/", None).status_code in (401, 403)
    listed = stack.api_json("GET", "/lockgate/api/reports", params={"model": stack.model})
    kinds = {e["kind"] for e in listed}
    assert {"benchmark", "drift", "quality", "live", "decision"} <= kinds, kinds
    for kind, dag_id in (
        ("benchmark", "lockgate_benchmark"),
        ("drift", "lockgate_drift"),
        ("quality", "lockgate_quality"),
        ("live", "lockgate_live"),
    ):
        entry = next(e for e in listed if e["kind"] == kind)
        assert entry["run_id"] == evidence_runs[dag_id], entry
        assert entry["href"] and entry["href"] in index.text, entry
        served = _plugin_get(stack, entry["href"], stack.token())
        assert served.status_code == 200 and re.search(r"<html", served.text, re.I), (kind, served.status_code)


def test_a_bad_form_value_fails_at_once_and_says_why(stack, evidence_runs) -> None:
    # A model the policy does not watch: retrying cannot help, so the task fails on its first
    # try, and its log (read through the REST API, as the failure output of these tests is)
    # names the problem. After the evidence runs: the drift DAG runs one run at a time.
    run_id = stack.trigger("lockgate_drift", {"model": "no-such-model"})
    assert stack.wait_for_end("lockgate_drift", run_id, 180) == "failed"
    # The model is checked against the policy before anything fans out over it.
    (ti,) = [t for t in stack.task_instances("lockgate_drift", run_id) if t["task_id"] == "watched_models"]
    assert (ti["state"], ti["try_number"]) == ("failed", 1), ti
    explained = stack.explain("lockgate_drift", run_id)
    assert "'no-such-model' is not watched" in explained, explained


def test_the_webhook_receiver_trusts_only_deliveries_signed_with_the_stacks_secret(stack) -> None:
    # Outside Airflow's login (MLflow cannot log in), so the signature is the only way in.
    import json
    import time

    from lockgate.registry.webhook import signature_for

    body = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": stack.model, "alias": "challenger", "version": "1"},
        }
    ).encode()
    stamp = str(int(time.time()))
    forged = {
        "X-MLflow-Delivery-Id": "e2e-1",
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": signature_for("not-the-stack-secret", "e2e-1", stamp, body),
        "Content-Type": "application/json",
    }
    with stack.http() as c:
        unsigned = c.post(f"{stack.airflow_url}/lockgate-hooks/mlflow", content=body)
        bad = c.post(f"{stack.airflow_url}/lockgate-hooks/mlflow", content=body, headers=forged)
    assert unsigned.status_code == 401 and "unsigned" in unsigned.text, unsigned.text
    assert bad.status_code == 401 and "bad signature" in bad.text, bad.text


def test_a_new_challenger_becomes_an_asset_event_for_its_model_at_once(stack) -> None:
    # Evaluate on registration: the stack's MLflow server delivers `model_version_alias.created`
    # to the plugin's webhook receiver (registered by `lockgate up`), which fires the
    # `lockgate_challenger_alias` Asset the benchmark and quality DAGs are scheduled on and records
    # the version in the Asset's state store, where the triggerer's poll (the safety net) reads it.
    # This stack creates no scheduled or Asset-triggered runs (AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE
    # =False), so the event waits in both DAGs' queues; with the scheduler on, each would start a
    # run for this model alone.
    import time

    # Airflow runs an Asset's watcher only while a DAG scheduled on it is unpaused.
    for dag_id in ("lockgate_benchmark", "lockgate_quality"):
        stack.api_json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    t_watch = time.monotonic()
    while True:
        assets = stack.api_json("GET", "/api/v2/assets", params={"name_pattern": "lockgate_challenger_alias"})
        (asset,) = [a for a in assets["assets"] if a["name"] == "lockgate_challenger_alias"]
        if [w["name"] for w in asset.get("watchers", [])] == ["lockgate_challenger_alias_watch"]:
            break
        assert time.monotonic() - t_watch < 180, f"the Asset has no watcher 180 s after unpausing: {asset}"
        time.sleep(2)
    # The earlier tests may have promoted the challenger (its alias is then gone): the champion's
    # weights serve as the new version's source.
    standing = stack.alias("challenger")
    source_of = standing or stack.alias("champion")
    assert source_of is not None
    # A new version of the same weights, as `mlflow.register_model` of a logged model would make it.
    standing_version = stack.model_version(source_of)
    body = {"name": stack.model, "source": standing_version["source"]}
    # MLflow 3 versions of a logged model have the source `models:/<model_id>` and must name that id.
    model_id = standing_version.get("model_id") or body["source"].removeprefix("models:/")
    if body["source"].startswith("models:/"):
        body["model_id"] = model_id
    with stack.http() as c:
        created = c.post(f"{stack.mlflow_url}/api/2.0/mlflow/model-versions/create", json=body)
        assert created.status_code == 200, created.text[:300]
        new = str(created.json()["model_version"]["version"])
        moved = c.post(
            f"{stack.mlflow_url}/api/2.0/mlflow/registered-models/alias",
            json={"name": stack.model, "alias": "challenger", "version": new},
        )
        assert moved.status_code == 200, moved.text[:300]
    t0 = time.monotonic()
    try:
        found: list[dict] = []
        while time.monotonic() - t0 < 60 and not found:
            events = stack.api_json("GET", "/api/v2/assets/events", params={"asset_id": asset["id"]})["asset_events"]
            found = [e for e in events if (e.get("extra") or {}).get("payload", {}).get("version") == new]
            time.sleep(1)
        logs = stack.component_logs(("api-server", "mlflow", "triggerer"))
        assert found, f"no lockgate_challenger_alias event for version {new} in 60 s:\n{logs}"
        (event,) = found
        payload = event["extra"]["payload"]
        # The webhook is first (about a second); the poll runs every 30 s.
        assert payload["source"] == "mlflow.webhook" and event["extra"]["from_webhook"] is True, event
        # The previous version is the last challenger reported for the model (None: none yet).
        assert payload["model"] == stack.model and payload["previous_version"] != new, payload
        print(f"\nnew challenger {new} -> Asset event after {time.monotonic() - t0:.1f} s", flush=True)
        state = stack.api_json("GET", f"/api/v2/assets/{asset['id']}/state-store/challengers")
        assert state["value"][stack.model] == new, state  # what the poll reads: it will not report it again
        for dag_id in ("lockgate_benchmark", "lockgate_quality"):
            queued = stack.api_json("GET", f"/api/v2/dags/{dag_id}/assets/queuedEvents")["queued_events"]
            assert asset["id"] in [q["asset_id"] for q in queued], (dag_id, queued)
    finally:
        with stack.http() as c:
            if standing is not None:
                c.post(
                    f"{stack.mlflow_url}/api/2.0/mlflow/registered-models/alias",
                    json={"name": stack.model, "alias": "challenger", "version": standing},
                )
            else:
                c.request(
                    "DELETE",
                    f"{stack.mlflow_url}/api/2.0/mlflow/registered-models/alias",
                    json={"name": stack.model, "alias": "challenger"},
                )
        for dag_id in ("lockgate_benchmark", "lockgate_quality"):
            stack.api("DELETE", f"/api/v2/dags/{dag_id}/assets/queuedEvents")


def test_two_triggers_at_the_same_moment_both_create_their_run(stack) -> None:
    """Probe of issue 14: two people triggering at once got HTTP 500 ("database is locked") from the SQLite
    metadata database; the local stack now keeps Airflow's metadata on PostgreSQL. The DAG is paused so the
    runs are only created (queued), then deleted."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    dag_id = "lockgate_drift"
    was_paused = stack.api_json("GET", f"/api/v2/dags/{dag_id}")["is_paused"]
    stack.api_json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True})
    start = Barrier(2)
    stack.token()  # one token for both, fetched before the race

    def trigger(i: int) -> httpx.Response:
        start.wait()
        return stack.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {"model": stack.model}}
        )

    answers: list[httpx.Response] = []
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(pool.map(trigger, range(2)))
        assert [r.status_code for r in answers] == [200, 200], [r.text[:300] for r in answers]
        run_ids = {r.json()["dag_run_id"] for r in answers}
        assert len(run_ids) == 2, run_ids
    finally:
        for r in answers:
            if r.status_code == 200:
                stack.api("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/{quote(r.json()['dag_run_id'], safe='')}")
        stack.api_json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": was_paused})
