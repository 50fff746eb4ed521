"""Helpers for tests and demos of the promotion path that need no model and no evidence job.

* `register_stub_version`: a registered model version without artifacts worth loading (the
  registry adapter works on any version; a real transformers model costs ~10 s to log).
* `passing_evidence`: hand-made evidence summaries that pass (or, with overrides, fail) the
  gates of the shipped policy, written where the promotion job reads them.
* `policy_for`: the shipped policy's gates, for any model names.
* `MemoryStateStore`: the Asset state store the triggerer gives the registry watch, in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lockgate.evidence import (
    Estimate,
    EvidenceKind,
    EvidenceSummary,
    MetricEvidence,
    latest_summary_path,
    write_summary,
)
from lockgate.policy.schema import Policy, parse_policy
from lockgate.settings import DEFAULT_POLICY_PATH


def sqlite_mlflow_store(path: Path) -> str:
    """A ready SQLite MLflow store at `path`; returns its URI (`lockgate.registry.client.sqlite_store`)."""
    from lockgate.registry.client import sqlite_store

    return sqlite_store(path)


def register_stub_version(name: str, uri: str, alias: str | None = None, artifact_root: Path | None = None) -> str:
    """Register a new version of `name` (creating the model once) whose source is an empty run folder.

    `artifact_root` is where the stub experiment's (empty) artifact folders would go; default: a
    temporary folder, never the working directory (`lockgate.registry.artifacts.register_empty_version`).
    """
    from lockgate.registry.artifacts import register_empty_version

    return register_empty_version(name, uri, alias=alias, artifact_root=artifact_root)


def policy_for(*model_names: str, approvers: Iterable[str] = ("alice", "bob"), **model_fields: Any) -> Policy:
    """The shipped policy with its first model's gates copied to each of `model_names`."""
    import yaml

    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    template = data["models"][0]
    data["models"] = [{**template, "name": name, "approvers": list(approvers), **model_fields} for name in model_names]
    return parse_policy(data, source="policy_for")


def _est(value: float, half_width: float | None = None, n: int = 200) -> Estimate:
    if half_width is None:
        return Estimate(value=value, n=n)
    return Estimate(value=value, ci_low=value - half_width, ci_high=value + half_width, confidence=0.95, n=n)


def passing_evidence(
    model_name: str,
    challenger: str | None,
    champion: str | None,
    created_at: datetime,
    *,
    ttft_ratio: float = 1.0,
    relevance_difference: float = 0.0,
    drift_share: float = 0.1,
    champion_error_rate: float = 0.01,
    live_ttft_ratio: float = 1.0,
    champion_relevance_difference: float = 0.0,
    tag: str = "",
) -> dict[EvidenceKind, EvidenceSummary]:
    """Summaries for the shipped gates; the keyword arguments move a metric across its gate.

    `tag` goes into the summaries' sample sizes so two calls can give different content hashes
    (new evidence) with the same numbers.
    """
    common = {
        "model_name": model_name,
        "challenger_version": challenger,
        "champion_version": champion,
        "created_at": created_at,
        "window_start": created_at - timedelta(days=1),
        "window_end": created_at,
    }
    sizes = {"rows": 200 + len(tag), **({f"tag:{tag}": 1} if tag else {})}
    bench = EvidenceSummary(
        kind="benchmark",
        metrics={
            "ttft_ms_p50": MetricEvidence(
                challenger=_est(2.0 * ttft_ratio, 0.1), champion=_est(2.0, 0.1), ratio=_est(ttft_ratio, 0.04)
            ),
            "tpot_ms_p50": MetricEvidence(challenger=_est(0.5, 0.02), champion=_est(0.5, 0.02), ratio=_est(1.0, 0.04)),
        },
        sample_sizes=sizes,
        **common,
    )
    drift = EvidenceSummary(
        kind="drift",
        metrics={
            "drift_share": MetricEvidence(model=_est(drift_share)),
            "error_rate": MetricEvidence(model=_est(0.01)),
        },
        sample_sizes=sizes,
        **common,
    )
    quality = EvidenceSummary(
        kind="quality",
        metrics={
            "embedding_relevance": MetricEvidence(
                challenger=_est(0.6 + relevance_difference, 0.02),
                champion=_est(0.6, 0.02),
                difference=_est(relevance_difference, 0.02),
            ),
            "embedding_grounding": MetricEvidence(difference=_est(0.0, 0.02)),
            "error_rate": MetricEvidence(challenger=_est(0.01, 0.01), champion=_est(champion_error_rate)),
        },
        sample_sizes=sizes,
        **common,
    )
    live = EvidenceSummary(
        kind="live",
        metrics={
            "ttft_ms_p90": MetricEvidence(
                challenger=_est(80.0 * live_ttft_ratio, 2.0),
                champion=_est(80.0, 2.0),
                ratio=_est(live_ttft_ratio, 0.03),
                baseline=_est(80.0, 2.0),
                baseline_ratio=_est(1.0, 0.03),
            ),
            "tpot_ms_p50": MetricEvidence(ratio=_est(1.0, 0.02), baseline_ratio=_est(1.0, 0.02)),
            "error_rate": MetricEvidence(difference=_est(0.0, 0.005), baseline_difference=_est(0.0, 0.005)),
            "refusal_rate": MetricEvidence(difference=_est(0.0, 0.01), baseline_difference=_est(0.0, 0.01)),
            "relevance": MetricEvidence(
                difference=_est(0.0, 0.02), baseline_difference=_est(champion_relevance_difference, 0.02)
            ),
        },
        sample_sizes=sizes,
        **common,
    )
    return {"benchmark": bench, "drift": drift, "quality": quality, "live": live}


def write_evidence(
    reports_dir: Path, summaries: dict[EvidenceKind, EvidenceSummary], state_url: str | None = None
) -> dict[EvidenceKind, Path]:
    """Make each summary the model's latest evidence of its kind, with a small report beside it.

    Recorded as the latest in the state database `state_url` (default: the settings'), what the
    promotion reads, whatever its window (hand-made evidence replaces the latest), and written to
    `latest.json`, as the publish step does.
    """
    from lockgate.logs.db import make_engine
    from lockgate.reports.summaries import record_summary
    from lockgate.settings import resolve_state_db_url

    engine = make_engine(state_url or resolve_state_db_url())

    out: dict[EvidenceKind, Path] = {}
    for kind, summary in summaries.items():
        path = latest_summary_path(reports_dir, kind, summary.model_name)
        report = path.parent / "index.html"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(f"<html><body>{kind} evidence (hand-made)</body></html>")
        made = summary.model_copy(update={"report_path": str(report)})
        out[kind] = write_summary(made, path)
        record_summary(made, made.run_key or "hand-made", engine, force=True)
    engine.dispose()
    return out


@contextmanager
def throwaway_pg_database(admin_url: str, prefix: str = "lockgate_t") -> Iterator[str]:
    """Create a PostgreSQL database for the duration of the block; yields its URL, drops it after."""
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


class MemoryStateStore:
    """The Asset state store's async accessor (what the triggerer sets as a watch's `asset_state_store`), in memory."""

    def __init__(self, values: dict[str, object] | None = None) -> None:
        self.values: dict[str, object] = {} if values is None else values

    async def aget(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    async def aset(self, key: str, value: object) -> None:
        self.values[key] = value
