"""The quality job's samples: each version's logged rows, and the replay of a challenger without traffic."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from lockgate.evidence import write_text_atomic
from lockgate.jobs.quality.plan import REPLAY_FILE, QualityPlan, logs_engine
from lockgate.policy.schema import Policy, load_policy
from lockgate.registry import tags as T
from lockgate.settings import get_settings

log = logging.getLogger(__name__)


def sample_version(plan: QualityPlan, policy: Policy, version: str) -> Any:
    from lockgate.logs.redaction import Redactor
    from lockgate.logs.sampling import sample_inference_logs

    # Redacted here, before any text reaches the judge, the replay model or the report.
    return sample_inference_logs(
        logs_engine(),
        plan.model_name,
        plan.window,
        plan.sample_size,
        seed=plan.seed,
        versions=[version],
        config=policy.logs,
        redactor=Redactor(policy.redaction),
    )


def model_directory(model_name: str, version: str, cache_root: Path) -> Path:
    """A local Hugging Face directory of a registered version.

    Fast path: the `lockgate.source_path` tag (set by `lockgate models register`) when that
    directory exists here. Otherwise the version's artifacts are downloaded (once) into
    `<cache_root>/model_cache`, the cache the benchmark uses (`lockgate.models.materialise`).
    """
    from lockgate.models import materialise
    from lockgate.registry.adapter import ModelRegistry

    source = ModelRegistry().version_tags(model_name, version).get(T.SOURCE_PATH)
    if source and (Path(source) / "config.json").exists():
        return Path(source)
    return materialise(model_name, version, cache_root / "model_cache")


def replay_challenger(plan: QualityPlan, policy: Policy | None = None) -> str | None:
    """Step 2 (GPU): the challenger's answers to the champion's sampled prompts; None when not needed."""
    if plan.mode != "replay" or plan.challenger_version is None or plan.champion_version is None:
        log.info("no replay needed (mode %s)", plan.mode)
        return None
    from lockgate.judge.replay import generate_responses

    pol = policy or load_policy()
    path = Path(plan.run_dir) / REPLAY_FILE
    fetch_replay(path)
    sample = sample_version(plan, pol, plan.champion_version)
    rows = [r for r in sample.rows if r.get("prompt")]
    if path.exists():
        done = {json.loads(line)["request_id"] for line in path.read_text().splitlines() if line.strip()}
        if done == {r["request_id"] for r in rows}:
            log.info("replay already done for this run: %s", path)
            return str(path)
    model_dir = model_directory(plan.model_name, plan.challenger_version, get_settings().home)
    started = time.perf_counter()
    replies = generate_responses(
        model_dir,
        rows,
        max_new_tokens=pol.quality.replay_max_new_tokens,
        batch_size=pol.quality.replay_batch_size,
        device=pol.quality.judge.device,
    )
    write_text_atomic(
        path, "".join(json.dumps({**reply, "model_version": plan.challenger_version}) + "\n" for reply in replies)
    )
    share_replay(path)
    log.info(
        "replayed %d prompts through challenger %s in %.1f s",
        len(replies),
        plan.challenger_version,
        time.perf_counter() - started,
    )
    return str(path)


def share_replay(path: Path) -> None:
    """Put the replayed answers in the reports store: the judge task may run on another host (the replay
    runs on the GPU queue), which then reads them from there (`fetch_replay`)."""
    from lockgate.reports.store import reports_store

    reports_store().put_files([path])


def fetch_replay(path: Path) -> bool:
    """Copy the run's replayed answers from the reports store where this host has none; whether it did."""
    from lockgate.reports.store import reports_store

    store = reports_store()
    if path.exists() or store.is_local:
        return False
    rel = store.relative(path)
    if not store.is_file(rel):
        return False
    write_text_atomic(path, store.read_bytes(rel).decode())
    log.info("replayed answers read from the reports store: %s", store.location(rel))
    return True


def read_replay(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
