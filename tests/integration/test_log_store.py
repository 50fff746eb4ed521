"""The log store on both backends: the real PostgreSQL server and embedded SQLite."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta

import pytest
import sqlalchemy as sa

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.errors import ConfigError, ServiceUnavailableError
from lockgate.logs.db import check_connection, make_engine
from lockgate.logs.redaction import Redactor
from lockgate.logs.sampling import (
    Window,
    count_window,
    iter_sample_rows,
    model_versions_in_window,
    sample_inference_logs,
    sample_statement,
    token_length_distribution,
)
from lockgate.logs.schema import create_schema, migrate_sample_index, sample_hash_seed
from lockgate.policy.schema import LogColumns, LogsConfig

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


# ---------------------------------------------------------------- the optional sample index (PostgreSQL)


@pytest.fixture
def pg_engine(pg_url: str) -> sa.Engine:
    """SPEC's rows in a fresh inference_logs table on the real PostgreSQL server."""
    e = make_engine(pg_url)
    with e.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS inference_logs"))
    seed_logs(e, SPEC)
    return e


def _ids(engine: sa.Engine, window: Window, n: int, seed: int, versions: list[str] | None = None) -> list[str]:
    return [r["request_id"] for r in iter_sample_rows(engine, SPEC.model_name, window, n, seed, versions)]


def test_sample_index_reads_the_same_rows_as_ranking_the_window(
    pg_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {
        (seed, n, tuple(v or ())): _ids(pg_engine, w, n, seed, v)
        for seed, w, n, v in [(0, REF, 100, None), (0, CUR, 50, ["2"]), (0, REF, 600, None), (5, REF, 100, None)]
    }
    lengths = token_length_distribution(pg_engine, SPEC.model_name, REF, n=50, seed=0)
    assert sample_hash_seed(pg_engine) is None

    ran = migrate_sample_index(pg_engine, seed=0)
    assert len(ran) == 3 and "hashtextextended(request_id, 0)" in ran[0]
    assert sample_hash_seed(pg_engine) == 0

    import lockgate.logs.sampling as sampling

    # With the policy's seed the rank is never computed: the stored column and its index serve the sample.
    def no_ranking(*_: object) -> None:
        raise AssertionError("ranked every row although the stored hash has this seed")

    monkeypatch.setattr(sampling, "sample_rank", no_ranking)
    for (seed, n, versions), ids in before.items():
        if seed == 0:
            window = CUR if versions else REF
            assert _ids(pg_engine, window, n, seed, list(versions) or None) == ids
    assert token_length_distribution(pg_engine, SPEC.model_name, REF, n=50, seed=0) == lengths
    full = sample_inference_logs(pg_engine, SPEC.model_name, REF, 600, seed=0)
    assert full.sampled == 600 and [r["request_id"] for r in full.rows] == [
        i for i in before[(0, 600, ())] if i in {r["request_id"] for r in full.rows}
    ]
    monkeypatch.undo()
    # Another seed falls back to ranking the window: the same rows as before the migration.
    assert _ids(pg_engine, REF, 100, 5) == before[(5, 100, ())]


def test_sample_index_scan_stops_after_n_rows_of_the_window(pg_engine: sa.Engine) -> None:
    with pg_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO inference_logs (request_id, ts, model_name, model_version, prompt, response, status) "
                "SELECT 'bulk-' || g, :start + g * interval '1 second', :model, '1', 'p', 'r', 'ok' "
                "FROM generate_series(1, 40000) AS g"
            ),
            {"start": REF.start, "model": SPEC.model_name},
        )
    migrate_sample_index(pg_engine, seed=0)
    window_rows = count_window(pg_engine, SPEC.model_name, REF)
    assert window_rows > 40_000
    stmt = sample_statement(pg_engine, SPEC.model_name, REF, 200, seed=0).compile(pg_engine)
    with pg_engine.connect() as conn:
        (plan,) = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {stmt}", stmt.params).scalar_one()

    def nodes(node: dict) -> list[dict]:
        return [node, *(m for child in node.get("Plans", []) for m in nodes(child))]

    scans = [n for n in nodes(plan["Plan"]) if n.get("Index Name") == "ix_inference_logs_model_sample_hash_ts"]
    assert scans, plan
    # Rows read from the index: about n (plus hash ties), not the window's 40,600.
    assert sum(s["Actual Rows"] for s in scans) < 1000, plan


def test_sample_index_migration_refuses_another_seed_and_other_backends(pg_engine: sa.Engine, sqlite_url: str) -> None:
    migrate_sample_index(pg_engine, seed=3)
    assert migrate_sample_index(pg_engine, seed=3)[0].startswith("CREATE INDEX")  # idempotent
    with pytest.raises(ConfigError, match="seed 3, not 0") as exc:
        migrate_sample_index(pg_engine, seed=0)
    assert exc.value.key == "statistics.seed"
    with pytest.raises(ConfigError, match="PostgreSQL"):
        migrate_sample_index(make_engine(sqlite_url), seed=0)
    assert sample_hash_seed(make_engine(sqlite_url)) is None


def test_migrate_sample_index_command(
    pg_engine: sa.Engine, lockgate_env: object, capsys: pytest.CaptureFixture
) -> None:
    from lockgate.cli import main

    url = pg_engine.url.render_as_string(hide_password=False)
    assert main(["logs", "migrate-sample-index", "--print-sql", "--db-url", url]) == 0
    assert "GENERATED ALWAYS AS (hashtextextended(request_id, 0)) STORED;" in capsys.readouterr().out
    assert sample_hash_seed(pg_engine) is None  # printing ran nothing
    assert main(["logs", "migrate-sample-index", "--db-url", url, "--seed", "4"]) == 0
    assert "seed 4" in capsys.readouterr().out
    assert sample_hash_seed(make_engine(url)) == 4
    assert main(["logs", "migrate-sample-index", "--db-url", url]) == 2  # the policy's seed 0 is not 4
    assert "seed 4, not 0" in capsys.readouterr().err


def test_null_request_ids_are_counted_with_and_without_the_sample_index(pg_engine: sa.Engine) -> None:
    # A table of the serving stack's, without lockgate's primary key: request_id may be NULL.
    with pg_engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS serving_copy"))
        conn.execute(sa.text("CREATE TABLE serving_copy AS SELECT * FROM inference_logs"))
        conn.execute(
            sa.text("UPDATE serving_copy SET request_id = NULL WHERE ts < :t"), {"t": REF.start + timedelta(days=1)}
        )
        nulls = conn.execute(sa.text("SELECT count(*) FROM serving_copy WHERE request_id IS NULL")).scalar_one()
    assert nulls > 0
    cfg = LogsConfig(table="serving_copy")
    before = sample_inference_logs(pg_engine, SPEC.model_name, REF, 600, config=cfg)
    migrate_sample_index(pg_engine, seed=0, config=cfg)
    after = sample_inference_logs(pg_engine, SPEC.model_name, REF, 600, config=cfg)
    for s in (before, after):
        assert s.window_rows == 600 and s.quarantined["missing_request_id"] == nulls
        assert all(r["request_id"] for r in s.rows)
    assert [r["request_id"] for r in after.rows] == [r["request_id"] for r in before.rows]
