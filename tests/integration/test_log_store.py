"""The log store on both backends: the real PostgreSQL server and embedded SQLite."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta

import pytest
import sqlalchemy as sa

from lockgate.errors import ConfigError, ServiceUnavailableError
from lockgate.logs.db import check_connection, make_engine
from lockgate.logs.redaction import Redactor
from lockgate.logs.sampling import (
    Window,
    count_window,
    iter_sample_rows,
    model_versions_in_window,
    sample_inference_logs,
    token_length_distribution,
)
from lockgate.logs.schema import create_schema
from lockgate.logs.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.settings import LogColumns, LogsConfig

SPEC = TrafficSpec(
    reference_rows=600,
    current_rows=300,
    current_versions=[VersionTraffic("1", share=0.7), VersionTraffic("2", share=0.3)],
    malformed_rate=0.05,
    pii_rate=0.3,
    hostile_rate=0.2,
)
REF = Window(SPEC.reference_start, SPEC.reference_end)
CUR = Window(SPEC.current_start, SPEC.current_end)


@pytest.fixture
def engine(logs_url: str) -> sa.Engine:
    e = make_engine(logs_url)
    seed_logs(e, SPEC)
    return e


def test_schema_is_idempotent_and_seeding_twice_adds_nothing(engine: sa.Engine) -> None:
    create_schema(engine)
    create_schema(engine)
    assert count_window(engine, SPEC.model_name, REF) == 600
    seed_logs(engine, SPEC)
    assert count_window(engine, SPEC.model_name, REF) == 600


def test_same_window_and_seed_same_rows(engine: sa.Engine) -> None:
    a = sample_inference_logs(engine, SPEC.model_name, REF, 100, seed=5)
    b = sample_inference_logs(engine, SPEC.model_name, REF, 100, seed=5)
    c = sample_inference_logs(engine, SPEC.model_name, REF, 100, seed=6)
    ids = [r["request_id"] for r in a.rows]
    assert ids == [r["request_id"] for r in b.rows]
    assert ids != [r["request_id"] for r in c.rows]
    assert a.sampled == 100 and a.window_rows == 600


def test_sample_is_spread_over_the_window(engine: sa.Engine) -> None:
    s = sample_inference_logs(engine, SPEC.model_name, REF, 200, seed=1)
    days = {(r["ts"] - REF.start) // timedelta(days=1) for r in s.rows}
    assert days == set(range(7))  # not the first rows of the window
    assert all(REF.start <= r["ts"] < REF.end for r in s.rows)


def test_quarantine_is_counted_not_dropped(engine: sa.Engine) -> None:
    s = sample_inference_logs(engine, SPEC.model_name, REF, 600, seed=0)
    assert s.sampled == 600
    assert len(s.rows) + sum(s.quarantined.values()) == 600
    assert sum(s.quarantined.values()) > 10
    assert set(s.quarantined) <= {
        "missing_prompt",
        "invalid_latency",
        "unparseable_metadata",
        "unknown_status",
        "missing_model_version",
        "oversize_text",
    }
    assert all(isinstance(r["metadata"], dict) or r["metadata"] is None for r in s.rows)


def test_redaction_applies_to_text_leaving_the_store(engine: sa.Engine) -> None:
    s = sample_inference_logs(engine, SPEC.model_name, REF, 600, seed=0, redactor=Redactor())
    text = " ".join(str(r["prompt"]) for r in s.rows)
    assert "@example." not in text and "4111 1111" not in text
    assert "[EMAIL]" in text and s.redactions["email"] > 0


def test_versions_and_token_lengths(engine: sa.Engine) -> None:
    per_version = model_versions_in_window(engine, SPEC.model_name, CUR)
    assert set(per_version) >= {"1", "2"}
    only_2 = sample_inference_logs(engine, SPEC.model_name, CUR, 1000, versions=["2"])
    assert only_2.rows and {r["model_version"] for r in only_2.rows} == {"2"}
    lengths = token_length_distribution(engine, SPEC.model_name, REF, n=50)
    assert len(lengths) == 50 and min(lengths) > 0


def test_empty_window_is_empty_not_an_error(engine: sa.Engine) -> None:
    far = Window(SPEC.current_end + timedelta(days=30), SPEC.current_end + timedelta(days=31))
    s = sample_inference_logs(engine, SPEC.model_name, far, 100)
    assert s.window_rows == 0 and s.rows == [] and s.sampled == 0
    other = sample_inference_logs(engine, "no-such-model", REF, 100)
    assert other.window_rows == 0


def test_rows_are_streamed_in_rank_order(engine: sa.Engine) -> None:
    it = iter_sample_rows(engine, SPEC.model_name, REF, 50, seed=2)
    first = next(it)
    rest = list(it)
    assert len(rest) == 49
    full = sample_inference_logs(engine, SPEC.model_name, REF, 50, seed=2)
    sampled_ids = [r["request_id"] for r in [first, *rest]]
    assert [r["request_id"] for r in full.rows] == [i for i in sampled_ids if i in {r["request_id"] for r in full.rows}]


def test_sampling_holds_only_the_sample_in_memory(engine: sa.Engine) -> None:
    # 900 rows in the table; a 20-row sample must allocate far less than the whole window would.
    tracemalloc.start()
    sample_inference_logs(engine, SPEC.model_name, REF, 20, seed=0)
    _, small = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracemalloc.start()
    sample_inference_logs(engine, SPEC.model_name, REF, 600, seed=0)
    _, large = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert small < large / 3


def test_column_mapping_onto_an_existing_table(logs_url: str) -> None:
    engine = make_engine(logs_url)
    cfg = LogsConfig(
        table="serving_requests", columns=LogColumns(request_id="id", ts="started_at", prompt="input_text")
    )
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS serving_requests"))
    seed_logs(engine, TrafficSpec(reference_rows=50, current_rows=0), cfg)
    with engine.connect() as conn:
        cols = {c["name"] for c in sa.inspect(conn).get_columns("serving_requests")}
    assert {"id", "started_at", "input_text"} <= cols and "request_id" not in cols
    s = sample_inference_logs(engine, "lockgate-demo", REF, 10, config=cfg)
    assert len(s.rows) + sum(s.quarantined.values()) == 10
    assert all(r["prompt"] for r in s.rows)


def test_bad_sample_size_and_window() -> None:
    with pytest.raises(ConfigError, match="window"):
        Window(REF.end, REF.start)
    with pytest.raises(ConfigError, match="timezone"):
        Window(REF.start.replace(tzinfo=None), REF.end)
    engine = make_engine("sqlite://")
    with pytest.raises(ConfigError, match="sample_size"):
        list(iter_sample_rows(engine, "m", REF, 0))


def test_unreachable_postgres_is_one_clear_line() -> None:
    engine = make_engine("postgresql://postgres:secret@127.0.0.1:1/nowhere")
    with pytest.raises(ServiceUnavailableError) as exc:
        check_connection(engine)
    message = str(exc.value)
    assert "127.0.0.1:1" in message and "secret" not in message and "\n" not in message
