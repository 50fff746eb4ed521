"""The drift job end to end on seeded logs: SQLite log store, SQLite MLflow, real Evidently, real MiniLM.

Windows hold a few hundred rows; MiniLM embeds 80 texts per window and column, and is loaded once.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.devtools.testing.registry import sqlite_mlflow_store
from lockgate.evidence import latest_summary_path, read_summary
from lockgate.jobs.context import RunContext
from lockgate.jobs.drift import drift_summary_of, run_drift
from lockgate.logs.db import make_engine
from lockgate.logs.sampling import Window
from lockgate.policy.schema import load_policy

START = datetime(2026, 1, 1, tzinfo=UTC)
HOSTILE_VERSION = "</script><img src=x onerror=alert(1)>"

pytestmark = pytest.mark.slow


def _spec(model: str, **kw) -> TrafficSpec:
    base = dict(
        model_name=model,
        reference_start=START,
        reference_days=7,
        current_days=1,
        reference_rows=400,
        current_rows=300,
        reference_versions=[VersionTraffic("1")],
        # the healthy story of the demo: a canary challenger with 30% of the current traffic
        current_versions=[VersionTraffic("1", share=0.7), VersionTraffic("2", share=0.3)],
        malformed_rate=0.03,
        pii_rate=0.05,
        hostile_rate=0.02,
        seed=7,
    )
    base.update(kw)
    return TrafficSpec(**base)


SPECS = {
    "drift-m": _spec("drift-m", topic_drift=0.6, prompt_length_factor=2.5),
    "healthy-m": _spec("healthy-m"),
    "tiny-m": _spec("tiny-m", current_rows=12),
    "hostile-m": _spec(
        "hostile-m",
        hostile_rate=1.0,
        current_versions=[VersionTraffic("1", share=0.5), VersionTraffic(HOSTILE_VERSION, share=0.5)],
    ),
    "promo-m": _spec("promo-m"),
}
MODELS = [*SPECS, "empty-m"]
CURRENT = (SPECS["drift-m"].current_start, SPECS["drift-m"].current_end)


def fake_embed(texts: list[str]) -> np.ndarray:
    """Deterministic stand-in for MiniLM where embeddings are not what a test is about."""
    rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8)[:16] for t in texts]
    out = np.asarray(rows, dtype=np.float32) / 255.0
    return out.reshape(len(texts), 16)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("drift_job")
    policy = {
        "models": [
            {
                "name": m,
                "require_approval": False,
                "windows": {
                    "reference": {"mode": "after_promotion", "days": 7}
                    if m == "promo-m"
                    else {"mode": "trailing", "days": 7},
                    "current": {"mode": "data_interval", "min_hours": 24},
                },
                "gates": [
                    {
                        "name": "input_drift",
                        "metric": "drift.drift_share",
                        "comparison": "absolute",
                        "subject": "model",
                        "direction": "lower_is_better",
                        "threshold": 0.30,
                    }
                ],
            }
            for m in MODELS
        ],
        "drift": {"sample_size": 400, "embedding_sample_size": 80, "min_rows": 50},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
        mp.setenv("MLFLOW_TRACKING_URI", sqlite_mlflow_store(home / "mlflow.db"))
        mp.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
        mp.setenv("LOCKGATE_CONFIG", str(home / "policy.yaml"))
        (home / "policy.yaml").write_text(yaml.safe_dump(policy))
        engine = make_engine(f"sqlite:///{home / 'logs.db'}")
        for spec in SPECS.values():
            seed_logs(engine, spec)
        engine.dispose()
        yield home


@pytest.fixture(scope="module")
def drift_run(env):
    return run_drift(RunContext("drift-m", run_key="drift-run", data_interval=CURRENT))


@pytest.fixture(scope="module")
def healthy_run(env):
    return run_drift(RunContext("healthy-m", run_key="healthy-run", data_interval=CURRENT))


INJECTED = {"prompt_tokens", "prompt_length", "prompt_words", "prompt_embedding"}
UNTOUCHED = {"latency_ms", "status", "prompt_has_link", "response_valid_json"}


def _gate(summary, model):
    from lockgate.policy.gates import assess_evidence, evaluate_gate

    gate = load_policy().model(model).gates[0]
    ref = assess_evidence("drift", summary, summary.created_at, 48, model)
    return evaluate_gate(gate, summary, ref, challenger=None, champion=None)


def test_injected_drift_flags_injected_columns_and_fails_the_gate(drift_run) -> None:
    drift = drift_summary_of(drift_run)
    assert drift_run.status == "ok" and drift_run.valid
    assert INJECTED <= set(drift.drifted_columns)
    assert not UNTOUCHED & set(drift.drifted_columns)
    assert drift_run.metrics["drift_share"].model.value == pytest.approx(len(drift.drifted_columns) / drift.n_tested)
    assert drift_run.metrics["drift_share"].model.value > 0.30
    assert drift_run.metrics["drifted_columns"].model.value == len(drift.drifted_columns)
    assert _gate(drift_run, "drift-m").status == "fail"
    # every tested column: method, statistic, p-value, adjusted p-value and effect size, in the evidence too
    for col in drift.columns:
        if col.tested:
            assert None not in (col.method, col.statistic, col.p_value, col.p_adjusted, col.effect_size)
            assert drift_run.metrics[f"column.{col.column}"].model.value == pytest.approx(col.effect_size)
    methods = {c.column: c.method for c in drift.columns if c.tested}
    assert methods["latency_ms"] == "ks" and methods["status"] in ("chi2", "fisher_exact")
    assert methods["prompt_embedding"] == "classifier_auc"


def test_rates_samples_and_quarantine_are_reported(drift_run) -> None:
    drift = drift_summary_of(drift_run)
    er = drift_run.metrics["error_rate"].model
    assert er is not None and er.ci_low is not None and er.ci_low <= er.value <= er.ci_high and er.confidence == 0.95
    assert drift_run.metrics["timeout_rate"].model is not None
    assert drift.version_rates.keys() == {"1", "2"}
    assert drift_run.sample_sizes["reference"] > 300 and drift_run.sample_sizes["current"] > 200
    assert drift_run.sample_sizes["reference_embedded"] == 80
    assert sum(drift_run.quarantined.values()) > 0  # malformed rows were seeded
    assert drift.reference.window_rows == 400 and drift.current.window_rows == 300
    # the default windows: the run's data interval, and the 7 days before it
    assert (drift.current.start, drift.current.end) == CURRENT
    assert drift.reference.start == START and drift.reference.end == CURRENT[0]
    page = Path(drift_run.report_path).read_text()
    assert "Quarantined rows" in page
    for reason, count in drift_run.quarantined.items():
        assert reason in page
        del count


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value and tag in ("script", "link", "img", "iframe"):
                self.urls.append(value)


class _EvidentlyPage(HTMLParser):
    """Lockgate's Evidently page: its section titles, table rows and frames (srcdoc unescaped)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.rows: list[list[str]] = []
        self.frames: list[dict[str, str | None]] = []
        self._in_h2 = False
        self._row: list[str] | None = None
        self._cell: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self._in_h2 = True
            self.sections.append("")
        elif tag == "iframe":
            self.frames.append(dict(attrs))
        elif tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.sections[-1] += data
        if self._cell is not None:
            self._cell += data

    def evidently_pages(self) -> list[str]:
        """Evidently's own HTML of each report; each frame confines its scripts to an opaque origin."""
        for frame in self.frames:
            assert frame.get("sandbox") == "allow-scripts", frame.get("sandbox")
        return [str(frame["srcdoc"]) for frame in self.frames]


def test_outputs_files_mlflow_and_index(drift_run, env) -> None:
    out = Path(drift_run.report_path).parent
    assert {p.name for p in out.iterdir()} >= {"report.html", "evidently.html", "summary.json", "drift_summary.json"}
    assert read_summary(out / "summary.json") == drift_run
    latest = latest_summary_path(env / "reports", "drift", "drift-m")
    assert read_summary(latest).content_hash == drift_run.content_hash
    # Evidently's page is self-contained (no external script, style or font)
    html = (out / "evidently.html").read_text()
    parser = _Resources()
    parser.feed(html)
    assert not [u for u in parser.urls if re.match(r"^(https?:)?//", u)]
    assert "url(http" not in html
    page = _EvidentlyPage(html)
    drift = drift_summary_of(drift_run)
    # Its first section says that lockgate's verdict decides, and gives both verdicts per tested column.
    assert page.sections[0] == "Which verdict counts"
    assert "verdict decides the gates, not this page." in html
    rows = {r[0]: r for r in page.rows}
    assert set(rows) == {c.column for c in drift.columns if c.tested}
    for col in drift.columns:
        if col.tested:
            assert rows[col.column][5] == ("drift" if col.drifted else "no drift"), col.column
            assert rows[col.column][2] in ("drift", "no drift"), col.column
            assert (rows[col.column][6] == "differ") == (rows[col.column][2] != rows[col.column][5])
    # Then Evidently's own reports, each in a sandboxed frame: the columns, and each embedding set.
    embedded = [c.column for c in drift.columns if c.tested and c.kind == "embedding"]
    assert embedded, "no embedding set tested"
    assert page.sections[1:] == ["Operational metrics and text descriptors", *(f"Embeddings: {e}" for e in embedded)]
    pages = page.evidently_pages()
    assert len(pages) == len(page.sections) - 1
    assert "drawDashboard" in pages[0] and "latency_ms" in pages[0]
    for inner in pages:  # self-contained too
        parser = _Resources()
        parser.feed(inner)
        assert not [u for u in parser.urls if re.match(r"^(https?:)?//", u)]
        assert "url(http" not in inner
    assert all(e in p for e, p in zip(embedded, pages[1:], strict=True))
    # Evidently computed the same effect sizes with the explicit methods lockgate asked for
    for col in drift.columns:
        if col.tested and col.kind != "embedding":
            assert col.evidently_value == pytest.approx(col.effect_size, rel=1e-6, abs=1e-9), col.column
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = drift_run.mlflow_run_ids["drift"]
    names = {a.path for a in client.list_artifacts(run_id, "drift_report")}
    assert {"drift_report/report.html", "drift_report/evidently.html", "drift_report/summary.json"} <= names
    run = client.get_run(run_id)
    assert run.data.metrics["drift_share"] == pytest.approx(drift.drift_share)
    # One filter finds a model's runs of every kind: both spellings of the model tag, as the benchmark's
    assert run.data.tags["lockgate.model"] == run.data.tags["lockgate.model_name"] == "drift-m"
    from lockgate.reports.index import list_reports

    entries = [e for e in list_reports(kind="drift", model_name="drift-m") if e.run_key == "drift-run"]
    assert len(entries) == 1 and entries[0].path == drift_run.report_path and entries[0].status == "warn"
    # The history page's rows: the run with its drifted columns, and its drift share.
    from lockgate.reports.history import history_series, state_engine

    history = history_series(state_engine(), "drift-m", drift_run.created_at - timedelta(days=1))
    (run,) = [r for r in history.runs if r.run_key == "drift-run"]
    assert run.drifted_columns == tuple(drift.drifted_columns) and run.drifted_columns
    share = [p.value for p in history.points[("drift", "drift_share")] if p.run_key == "drift-run"]
    assert share == [pytest.approx(drift.drift_share)]


def test_healthy_canary_window_is_not_flagged(healthy_run) -> None:
    drift = drift_summary_of(healthy_run)
    assert healthy_run.status == "ok"
    assert drift.drifted_columns == []
    assert drift.drift_share == 0.0 and drift.drift_detected is False
    assert drift.n_tested >= 14
    assert _gate(healthy_run, "healthy-m").status == "pass"


@pytest.mark.parametrize("model", ["empty-m", "tiny-m"])
def test_empty_or_tiny_window_is_missing_evidence_not_no_drift(env, model) -> None:
    summary = run_drift(RunContext(model, run_key="small", data_interval=CURRENT), embed=fake_embed)
    drift = drift_summary_of(summary)
    assert summary.status == "insufficient_data" and summary.valid is False
    assert summary.metrics == {}
    assert drift.drift_share is None and drift.drift_detected is None
    assert "too few usable rows" in (summary.message or "")
    page = Path(summary.report_path).read_text()
    assert "insufficient data" in page and "no drift" not in page.replace("not a &#39;no drift&#39; result", "")
    assert not (Path(summary.report_path).parent / "evidently.html").exists()
    assert _gate(summary, model).status == "missing"


def test_hostile_text_is_escaped_in_every_page(env) -> None:
    summary = run_drift(RunContext("hostile-m", run_key="hostile", data_interval=CURRENT), embed=fake_embed)
    out = Path(summary.report_path).parent
    report = (out / "report.html").read_text()
    evidently = (out / "evidently.html").read_text()
    assert HOSTILE_VERSION not in report and "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in report
    for payload in ("<script>alert(", "<img src=x onerror", "<iframe src=javascript", HOSTILE_VERSION):
        assert payload not in report
        assert payload not in evidently
    # nor inside Evidently's own pages, which the browser parses from the frames' srcdoc
    for page in _EvidentlyPage(evidently).evidently_pages():
        for payload in ("<script>alert(", "<img src=x onerror", "<iframe src=javascript", HOSTILE_VERSION):
            assert payload not in page


def test_evidently_own_html_is_unsafe_and_ours_is_not(tmp_path) -> None:
    """Why no `<` of a logged value reaches Evidently, and why its pages run in sandboxed frames anyway."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    from lockgate.drift.evidently_report import column_part, write_parts

    evil = "</script><script>window.pwned=1</script>"
    ref = pd.DataFrame({"status": ["ok", "error", evil] * 20})
    cur = pd.DataFrame({"status": ["ok", evil, evil] * 20})
    dd = DataDefinition(categorical_columns=["status"])
    snap = Report([ValueDrift(column="status", method="jensenshannon")]).run(
        Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd)
    )
    snap.save_html(str(tmp_path / "evidently_default.html"))
    assert evil in (tmp_path / "evidently_default.html").read_text()  # Evidently's own page: breakout possible
    part = column_part(ref, cur, ["status"], {"status": 0.05})
    assert part.values["status"] == pytest.approx(snap.dict()["metrics"][0]["value"])  # one to one: same distance
    write_parts(tmp_path / "evidently.html", [part], "t")
    ours = (tmp_path / "evidently.html").read_text()
    (inner,) = _EvidentlyPage(ours).evidently_pages()
    assert evil not in ours and evil not in inner
    assert "window.pwned" in inner  # the value is still there, as inert text


def test_rerun_of_a_run_key_replaces_its_outputs(env, caplog) -> None:
    import logging

    from mlflow import MlflowClient

    from lockgate.reports.index import list_reports

    with caplog.at_level(logging.INFO, logger="lockgate.progress"):
        first = run_drift(RunContext("healthy-m", run_key="again", data_interval=CURRENT), embed=fake_embed)
    # Each step is said as it ends (`lockgate run` and the task log show these lines).
    said = [r.getMessage() for r in caplog.records if r.name == "lockgate.progress"]
    assert [m.split(":")[0] for m in said] == [f"drift healthy-m step {i}/5" for i in range(1, 6)], said
    assert (
        "sampled: reference" in said[1]
        and "compared: ok" in said[2]
        and said[4].startswith("drift healthy-m step 5/5: done in")
    )
    second = run_drift(RunContext("healthy-m", run_key="again", data_interval=CURRENT), embed=fake_embed)
    assert first.mlflow_run_ids == second.mlflow_run_ids
    assert first.metrics == second.metrics  # deterministic sampling and tests
    runs = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("lockgate/healthy-m").experiment_id],
        filter_string="tags.`lockgate.run_key` = 'again'",
    )
    assert len(runs) == 1
    assert len([e for e in list_reports(kind="drift", model_name="healthy-m") if e.run_key == "again"]) == 1


def test_after_promotion_reference_window_follows_the_champion(env) -> None:
    from mlflow import MlflowClient

    from lockgate.devtools.testing.registry import register_stub_version

    uri = f"sqlite:///{env / 'mlflow.db'}"
    # no champion yet: the reference window cannot be placed
    missing = run_drift(RunContext("promo-m", run_key="no-champion", data_interval=CURRENT), embed=fake_embed)
    assert missing.status == "insufficient_data" and "champion" in (missing.message or "")
    assert missing.metrics == {}

    version = register_stub_version("promo-m", uri, alias="champion", artifact_root=env / "stubs")
    promoted = START + timedelta(days=2)
    MlflowClient(uri, uri).set_model_version_tag("promo-m", version, "lockgate.promoted_at", promoted.isoformat())
    summary = run_drift(RunContext("promo-m", run_key="champion", data_interval=CURRENT), embed=fake_embed)
    drift = drift_summary_of(summary)
    assert summary.status == "ok" and summary.champion_version == version
    # 7 days after the promotion, cut where the current window starts
    assert (drift.reference.start, drift.reference.end) == (promoted, CURRENT[0])
    assert "after_promotion" in drift.reference.mode


def test_run_parameters_override_windows_and_sample_size(env) -> None:
    ref = Window(START, START + timedelta(days=3))
    summary = run_drift(
        RunContext("healthy-m", run_key="params"),
        reference_window=ref,
        current_window=Window(*CURRENT),
        sample_size=100,
        embed=fake_embed,
    )
    drift = drift_summary_of(summary)
    assert (drift.reference.start, drift.reference.end) == (ref.start, ref.end)
    assert drift.reference.sampled == 100 and drift.current.sampled == 100


def test_evidently_page_without_embedding_sets(tmp_path) -> None:
    """`drift.evidently_embeddings: false`: Evidently's page covers the columns; its verdict table says why
    the embedding columns have no Evidently verdict, and lockgate's verdict on them is unchanged."""
    from dataclasses import replace

    from lockgate.devtools.synthetic import generate_traffic
    from lockgate.drift.evidently_report import NOT_SENT
    from lockgate.drift.summary import WindowSample
    from lockgate.jobs.drift import compare_frames
    from lockgate.logs.sampling import logs_frame

    spec = _spec("drift-m", topic_drift=0.6, prompt_length_factor=2.5, malformed_rate=0.0, hostile_rate=0.0)
    reference = logs_frame(list(generate_traffic(replace(spec, current_rows=0))))
    current = logs_frame(list(generate_traffic(replace(spec, reference_rows=0, seed=8))))
    windows = [
        WindowSample(role=role, mode="test", window_rows=len(f), sampled=len(f), usable=len(f))
        for role, f in (("reference", reference), ("current", current))
    ]
    policy = load_policy()
    results = {}
    for sent in (True, False):
        drift_cfg = policy.drift.model_copy(
            update={"evidently_embeddings": sent, "embedding_sample_size": 80, "min_rows": 50}
        )
        run_policy = policy.model_copy(update={"drift": drift_cfg})
        out = tmp_path / str(sent)
        drift = compare_frames("drift-m", reference, current, run_policy, *windows, out, embed=fake_embed)
        results[sent] = (drift, _EvidentlyPage((out / "evidently.html").read_text()))
    (with_sets, page_with), (without_sets, page_without) = results[True], results[False]
    embedded = [c.column for c in without_sets.columns if c.tested and c.kind == "embedding"]
    assert embedded
    assert page_without.sections == ["Which verdict counts", "Operational metrics and text descriptors"]
    assert page_with.sections[2:] == [f"Embeddings: {e}" for e in embedded]
    rows = {r[0]: r for r in page_without.rows}
    for column in embedded:
        assert rows[column][1:3] == ["-", NOT_SENT] and rows[column][6] == ""
    assert all(rows[c][2] in ("drift", "no drift") for c in rows if c not in embedded)
    # Lockgate's verdicts do not depend on what Evidently is given.
    assert [(c.column, c.drifted, c.p_adjusted) for c in with_sets.columns] == [
        (c.column, c.drifted, c.p_adjusted) for c in without_sets.columns
    ]
    assert {c.column for c in without_sets.columns if c.evidently_value is not None}.isdisjoint(embedded)
