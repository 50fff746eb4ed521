#!/usr/bin/env bash
# A stack left running with a policy that watches a model of the user's own (`support-bot`, not the
# demo's), with the scheduler on, and nobody triggering anything: the script only starts the stack,
# registers a champion, writes traffic, unpauses the five DAGs (as a user does in the UI) and then
# registers a challenger. Everything after that is scheduled or Asset-triggered: the cron runs that
# unpausing makes due, the registry webhook / poll on the new challenger, the evidence Assets that
# trigger `lockgate_promotion`. It waits for a decision on the challenger, prints every DAG run with
# its run type (none is `manual`) and `lockgate status support-bot`, then stops the stack.
#
#   bash docs/examples/unattended.sh            # about 5 minutes on 2 cores (a decision ~3 min after the challenger)
#
# Its own LOCKGATE_HOME and ports 8095/5095; the inference logs go where `lockgate up` puts them
# (LOCKGATE_LOGS_DB_URL, else airflow_settings.yaml's `lockgate_logs` connection: the `lockgate`
# database of the local PostgreSQL when it answers, else embedded SQLite).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="$PWD/.venv/bin"
export PATH="$BIN:$PATH"
export LOCKGATE_HOME="${LOCKGATE_HOME:-$(mktemp -d /tmp/lockgate-unattended.XXXXXX)}"
export LOCKGATE_AIRFLOW_PORT="${LOCKGATE_AIRFLOW_PORT:-8095}" LOCKGATE_MLFLOW_PORT="${LOCKGATE_MLFLOW_PORT:-5095}"
export LOCKGATE_CONFIG="$LOCKGATE_HOME/policy.yaml"
MODEL=support-bot
TIMEOUT_S="${TIMEOUT_S:-2400}"
sed -e "s/name: lockgate-demo/name: $MODEL/" include/lockgate.yaml > "$LOCKGATE_CONFIG"
grep -q "name: $MODEL" "$LOCKGATE_CONFIG"

lockgate up
trap 'lockgate down >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
source "$LOCKGATE_HOME/run/stack.env"

echo "== a champion, and a week of its traffic with a day of 30% canary traffic for version 2"
lockgate models build-tiny "$LOCKGATE_HOME/m1" --seed 1 >/dev/null
lockgate models build-tiny "$LOCKGATE_HOME/m2" --seed 2 >/dev/null
lockgate models register --name "$MODEL" --path "$LOCKGATE_HOME/m1" --alias champion
lockgate logs seed --model "$MODEL" --champion-version 1 --challenger-version 2 --canary-share 0.3 \
  --reference-rows 2000 --current-rows 1500

echo "== unpause the five DAGs (what a user does in the Airflow UI), then register the challenger"
python - <<'PY'
from lockgate.airflow_api import AirflowClient
from lockgate.devtools.stack.commands import running_stack

stack = running_stack()
client = AirflowClient(stack.airflow_url, stack.username, stack.password or "")
for dag in ("lockgate_benchmark", "lockgate_drift", "lockgate_quality", "lockgate_live", "lockgate_promotion"):
    client.unpause(dag)
PY
lockgate models register --name "$MODEL" --path "$LOCKGATE_HOME/m2" --alias challenger
echo "== from here on nobody triggers anything; waiting (at most ${TIMEOUT_S} s) for the runs to settle"
python - "$MODEL" "$TIMEOUT_S" <<'PY'
import sys
import time

from lockgate.airflow_api import AirflowClient
from lockgate.registry.audit import list_decisions, state_engine
from lockgate.devtools.stack.commands import running_stack

model, timeout = sys.argv[1], float(sys.argv[2])
DAGS = ("lockgate_benchmark", "lockgate_drift", "lockgate_quality", "lockgate_live", "lockgate_promotion")
stack = running_stack()
client = AirflowClient(stack.airflow_url, stack.username, stack.password or "")
start = time.monotonic()


def runs() -> dict[str, list[dict]]:
    return {d: client.request("GET", f"/api/v2/dags/{d}/dagRuns", params={"limit": 50})["dag_runs"] for d in DAGS}


while True:
    now = runs()
    busy = [r for rs in now.values() for r in rs if r["state"] in ("queued", "running")]
    evidence_done = all(any(r["state"] in ("success", "failed") for r in now[d]) for d in DAGS[:4])
    decisions = [d for d in list_decisions(state_engine(), model, limit=20) if d.challenger == "2"]
    if evidence_done and not busy and decisions:
        break
    if time.monotonic() - start > timeout:
        print(f"not settled in {timeout:.0f} s: {len(busy)} runs busy, {len(decisions)} decisions", file=sys.stderr)
        break
    time.sleep(20)
print(f"after {time.monotonic() - start:.0f} s:")
for dag, rs in now.items():
    for r in sorted(rs, key=lambda r: r["run_after"]):
        print(f"  {dag:<20} {r['run_type']:<16} {r['state']:<8} run_after {r['run_after'][:19]}  {r['dag_run_id']}")
manual = [r for rs in now.values() for r in rs if r["run_type"] == "manual"]
print(f"manual runs: {len(manual)}")
sys.exit(1 if manual or not decisions else 0)
PY
echo "== lockgate status $MODEL"
lockgate status "$MODEL"
