"""The KV-cache hit rate reads the optional `cached_tokens` column, and the metadata key where it is NULL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from lockgate.logs.aggregates import physical_columns, resolve_cached_tokens, window_counts
from lockgate.logs.db import make_engine
from lockgate.logs.sampling import Window
from lockgate.logs.schema import create_schema
from lockgate.policy.schema import LogsConfig

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _row(i: int, cached: int | None, meta_cached: int | None) -> dict:
    usage = {"usage": {"prompt_tokens_details": {"cached_tokens": meta_cached}}} if meta_cached is not None else {}
    return {
        "request_id": f"r{i}",
        "ts": T0 + timedelta(minutes=i),
        "model_name": "m",
        "model_version": "1",
        "prompt": "How do I reset my password?",
        "response": "Use the reset link on the sign-in page.",
        "latency_ms": 200.0,
        "ttft_ms": 50.0,
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "status": "ok",
        "metadata": json.dumps(usage),
        "cached_tokens": cached,
    }


def test_column_first_then_metadata(logs_url: str) -> None:
    engine = make_engine(logs_url)
    table = create_schema(engine)
    rows = [_row(0, 80, 10), _row(1, None, 40), _row(2, None, None), _row(3, 0, 90)]
    if engine.dialect.name == "postgresql":
        rows = [{**r, "metadata": json.loads(r["metadata"])} for r in rows]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    cfg = LogsConfig()
    spec = resolve_cached_tokens(engine, cfg, physical_columns(engine, cfg))
    assert spec.column == "cached_tokens" and spec.metadata_key == cfg.cached_tokens_metadata_key
    counts = window_counts(engine, "m", Window(T0, T0 + timedelta(hours=1)), [[]], cfg, spec)
    cell = counts.by_cutoffs[0]["1"].strata[0]
    # 80 (column) + 40 (metadata, column NULL) + 0 (column wins over metadata 90); row 2 unknown
    assert cell.cached_tokens == 120
    assert cell.cached_prompt_tokens == 300
    engine.dispose()
