"""The page templates: every one renders autoescaped (hostile names, versions, gates, columns and
reasons come out as text), every one is used, and an installed copy of the package finds them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from markupsafe import Markup

from lockgate.reports.templating import environment, render

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "include" / "lockgate" / "reports" / "templates"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)

# A tag breaker and an attribute breaker: neither may reach a page as markup.
HOSTILE = '<script>alert(1)</script>"onmouseover="alert(2)'
RAW = ("<script>", '"onmouseover=')
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;onmouseover=&#34;alert(2)"


def _decision_page(tmp_path: Path) -> str:
    from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence
    from lockgate.policy import PromotionInputs, decide_promotion
    from lockgate.policy.schema import WatchedModel
    from lockgate.registry.audit import AuditEntry
    from lockgate.reports.decision import render_decision_page

    def summary(kind: str, metric: str, ratio: float) -> EvidenceSummary:
        return EvidenceSummary(
            kind=kind, model_name=HOSTILE, challenger_version=HOSTILE, champion_version="1",
            created_at=NOW - timedelta(hours=1), report_path=f"javascript:{HOSTILE}",
            metrics={metric: MetricEvidence(ratio=Estimate(value=ratio, ci_low=ratio - 0.05, ci_high=ratio + 0.05,
                                                           confidence=0.95))},
        )  # fmt: skip

    wm = WatchedModel(
        name=HOSTILE, approvers=[HOSTILE],
        gates=[
            {"name": HOSTILE, "metric": "benchmark.ttft_ms_p50", "comparison": "ratio", "threshold": 0.1},
            {"name": "live_ttft", "metric": "live.ttft_ms_p90", "comparison": "ratio", "threshold": 0.1},
        ],
    )  # fmt: skip
    inputs = PromotionInputs(
        model_name=HOSTILE, champion="1", challenger=HOSTILE, policy_hash="P",
        evidence={"benchmark": summary("benchmark", "ttft_ms_p50", 1.0), "live": summary("live", "ttft_ms_p90", 1.4)},
    )  # fmt: skip
    decision = decide_promotion(inputs, wm, NOW)
    decision = decision.model_copy(update={"run_key": HOSTILE, "reasons": [*decision.reasons, HOSTILE]})
    assert decision.action == "hold"  # so the page has its approval section too
    audit = [AuditEntry(model_name=HOSTILE, kind="alias_move", actor=HOSTILE, message=HOSTILE, at=NOW)]
    return render_decision_page(
        decision, page_dir=tmp_path / "d", reports_dir=tmp_path, approvers=[HOSTILE], audit=audit
    )


def _drift_page(_: Path) -> str:
    from lockgate.drift.report import render_drift_page
    from lockgate.drift.summary import ColumnDistribution, ColumnDrift, DriftSummary, WindowSample

    column = ColumnDrift(
        column=HOSTILE, kind="numeric", group="prompt", description=HOSTILE, tested=True, method="ks",
        statistic=0.4, p_value=1e-9, p_adjusted=1e-8, effect_measure="wasserstein_norm", effect_size=0.5,
        min_effect=0.1, significant=True, drifted=True, n_reference=300, n_current=300,
    )  # fmt: skip
    untested = column.model_copy(update={"column": "x", "tested": False, "reason": HOSTILE, "drifted": False})
    window = WindowSample(role="current", mode="fixed", start=NOW, end=NOW, quarantined={HOSTILE: 2},
                          versions={HOSTILE: 300})  # fmt: skip
    summary = DriftSummary(
        model_name=HOSTILE, status="ok", drift_detected=True, drift_share=1.0, n_tested=1, fdr_alpha=0.05,
        drifted_columns=[HOSTILE], columns=[column, untested],
        reference=window.model_copy(update={"role": "reference"}), current=window, config={HOSTILE: HOSTILE},
        distributions=[ColumnDistribution(column=HOSTILE, kind="numeric", label=HOSTILE, edges=[0.0, 1.0, 2.0],
                                          reference=[5, 5], current=[1, 9], note=HOSTILE)],
    )  # fmt: skip
    return render_drift_page(summary, run_key=HOSTILE, evidently_href=HOSTILE, champion_version=HOSTILE)


def _evidently_page(_: Path) -> str:
    """Lockgate's page around Evidently's reports (Evidently's own HTML goes into a sandboxed frame's srcdoc)."""
    from lockgate.drift.evidently_report import EvidentlyPart, EvidentlySection, render_evidently_page

    part = EvidentlyPart(sections=[EvidentlySection(HOSTILE, HOSTILE)], verdicts=[[HOSTILE, "0.1", HOSTILE]])
    return render_evidently_page(HOSTILE, [part], subtitle=HOSTILE) + render_evidently_page(HOSTILE, [])


def _quality_page(_: Path) -> str:
    from lockgate.evidence import EvidenceSummary, MetricEvidence
    from lockgate.judge.report import render_quality_report
    from lockgate.judge.summary import Example, QualitySummary, VersionInfo

    quality = QualitySummary(
        model_name=HOSTILE, run_key=HOSTILE, mode="traffic", challenger_version=HOSTILE, champion_version="1",
        window_start=HOSTILE, window_end="2026-01-02", judge_note=HOSTILE, notes=[HOSTILE],
        untrusted_judge_metrics={"judge_tone": MetricEvidence(description=HOSTILE)},
        versions=[VersionInfo(role="challenger", version=HOSTILE, source="logs", unscored={HOSTILE: 1})],
        examples=[Example(role="challenger", version=HOSTILE, request_id=HOSTILE, metric="embedding_relevance",
                          value=0.1, prompt=HOSTILE, response=HOSTILE, context=HOSTILE)],
    )  # fmt: skip
    summary = EvidenceSummary(kind="quality", model_name=HOSTILE, created_at=NOW, message=HOSTILE)
    distributions = {HOSTILE: {"challenger": [0.1, 0.5], "champion": [0.4, 0.6]}}
    return render_quality_report(summary, quality, distributions, evidently_href=HOSTILE)


def _benchmark_page(_: Path) -> str:
    from lockgate.benchmark.report import render_report
    from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence

    summary = EvidenceSummary(
        kind="benchmark", model_name=HOSTILE, challenger_version=HOSTILE, champion_version="1", created_at=NOW,
        status="error", valid=False, message=HOSTILE,
        metrics={"ttft_ms_p50": MetricEvidence(unit=HOSTILE, ratio=Estimate(value=1.3, ci_low=1.2, ci_high=1.4))},
        details={"problems": [HOSTILE], "notes": [HOSTILE], "fingerprint": {HOSTILE: HOSTILE},
                 "failures": [{"config": HOSTILE, "batch_size": 1, "role": HOSTILE, "kind": "oom", "message": HOSTILE}],
                 "workload": {"source": HOSTILE, "lengths": [1, 2, 3]},
                 "models": {"challenger": {"version": HOSTILE, "architecture": HOSTILE}}},
    )  # fmt: skip
    return render_report(summary, None, run_key=HOSTILE)


def _live_page(_: Path) -> str:
    from lockgate.evidence import EvidenceSummary
    from lockgate.live.report import render_live_page

    interval = {"value": 1.2, "low": 1.1, "high": 1.3, "n": 10}
    canary = {
        "a": HOSTILE, "b": "champion 1", "a_requests": 10, "b_requests": 20, "cutoffs": [64.0],
        "metrics": {HOSTILE: {"comparison": "ratio", "unit": HOSTILE,
                              "raw": {"a": interval, "b": interval, "compared": interval},
                              "stratified": {"a": interval, "b": interval, "compared": interval}}},
    }  # fmt: skip
    evidence = EvidenceSummary(
        kind="live", model_name=HOSTILE, challenger_version=HOSTILE, champion_version="1", created_at=NOW,
        quarantined={HOSTILE: 1},
        details={"canary": canary, "problems": {"baseline": HOSTILE},
                 "requests_needed": [{"gate": HOSTILE, "metric": HOSTILE, "limit": 1.1, "canary_requests": 10,
                                      "needed": None, "note": HOSTILE}]},
    )  # fmt: skip
    return render_live_page(evidence, run_key=HOSTILE)


def _history_page(_: Path) -> str:
    from lockgate.reports.history import AliasMove, DecisionMark, EvidenceRun, HistoryData, Point
    from lockgate.reports.history_page import render_history_page

    at = NOW - timedelta(days=1)
    data = HistoryData(
        model_name=HOSTILE, since=NOW - timedelta(days=7), until=NOW,
        runs=(EvidenceRun(kind="drift", run_key=HOSTILE, at=at, status="ok", valid=True, drifted_columns=(HOSTILE,),
                          message=HOSTILE),),
        points={("drift", "drift_share"): (Point(at=at, value=0.5, run_key=HOSTILE, role="model"),),
                ("benchmark", "ttft_ms_p50"): (Point(at=at, value=9.0, run_key=HOSTILE, role="challenger",
                                                     version=HOSTILE),)},
        decisions=(DecisionMark(at=at, action="hold", outcome=HOSTILE, champion="1", challenger=HOSTILE, target=None,
                                run_key=HOSTILE, reasons=(HOSTILE,), report_path=HOSTILE),),
        alias_moves=(AliasMove(at=at, alias="champion", from_version="1", to_version=HOSTILE, actor=HOSTILE,
                               message=HOSTILE),),
    )  # fmt: skip
    unknown = HistoryData(model_name=HOSTILE, since=NOW - timedelta(days=7), until=NOW, known_model=False)
    return render_history_page(
        data, period_href=lambda d: f"/h?model={HOSTILE}&days={d}", report_href=lambda p: p
    ) + render_history_page(unknown)


def _plugin_pages(_: Path) -> str:
    """The plugin's templates with the data its routes hand them (the routes need Airflow: test_plugin.py)."""
    from lockgate.reports.html import Badge, Link, Links, Table
    from lockgate.reports.templating import render_fragment

    links = render_fragment("plugin_history_links.html", models=[(HOSTILE, f"/h?model={HOSTILE}")], problem=HOSTILE)
    index = render(
        "plugin_index.html", title="Lockgate reports", subtitle=HOSTILE, generated_at=None, history_links=links,
        filters=Links([Link(f"/?kind={HOSTILE}", HOSTILE)]),
        reports=Table(["model", "status", "report"], [[HOSTILE, Badge(HOSTILE), Link(HOSTILE, HOSTILE)]]),
    )  # fmt: skip
    message = render(
        "plugin_message.html", title=HOSTILE, subtitle=HOSTILE, generated_at=None, heading=HOSTILE, text=HOSTILE,
        fragment=links,
    )  # fmt: skip
    return index + message


PAGES: dict[str, Callable[[Path], str]] = {
    "decision": _decision_page,
    "drift": _drift_page,
    "evidently": _evidently_page,
    "quality": _quality_page,
    "benchmark": _benchmark_page,
    "live": _live_page,
    "history": _history_page,
    "plugin": _plugin_pages,
}


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The names of the templates loaded while the test runs, includes, imports and parents too."""
    env = environment()
    names: set[str] = set()
    original = env.get_template

    def recording(name, *args, **kwargs):
        names.add(str(name))
        return original(name, *args, **kwargs)

    monkeypatch.setattr(env, "get_template", recording)
    yield names


def test_the_environment_escapes_by_default_and_refuses_undefined_names() -> None:
    env = environment()
    assert env.autoescape is True
    assert env.from_string("{{ v }}").render(v=HOSTILE) == ESCAPED
    assert env.from_string("{{ v }}").render(v=Markup("<svg></svg>")) == "<svg></svg>"
    with pytest.raises(Exception, match="undefined"):
        env.from_string("{{ missing }}").render()


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_page_escapes_hostile_names_versions_gates_columns_and_reasons(page: str, tmp_path: Path) -> None:
    html = PAGES[page](tmp_path)
    for raw in RAW:
        assert raw not in html, (page, raw)
    assert ESCAPED in html, page
    assert 'href="javascript' not in html
    # The shared layout and its stylesheet are there, and no template syntax leaked.
    assert "<header><h1>" in html and ".badge{" in html
    assert "{{" not in html and "{%" not in html


def test_every_template_is_rendered_by_some_page(loaded: set[str], tmp_path: Path) -> None:
    for build in PAGES.values():
        build(tmp_path)
    assert set(environment().list_templates()) == loaded


def _names_the_code_renders() -> set[str]:
    code = "\n".join(
        p.read_text() for p in [*(ROOT / "include" / "lockgate").rglob("*.py"), ROOT / "plugins" / "lockgate_plugin.py"]
    )
    templates = "\n".join(p.read_text() for p in TEMPLATES.iterdir())
    names = set(re.findall(r"render(?:_fragment)?\(\s*\"([\w.-]+\.(?:html|css))\"", code))
    names |= set(re.findall(r"\{%-?\s*(?:extends|import|include)\s+\"([\w.-]+)\"", templates))
    return names


def test_an_installed_package_finds_every_template(tmp_path: Path) -> None:
    """Built as a wheel by its own pyproject.toml, installed elsewhere, the package loads every template it uses."""
    names = _names_the_code_renders()
    assert {"base.html", "macros.html", "style.css", "decision.html", "plugin_index.html"} <= names
    assert names == {p.name for p in TEMPLATES.iterdir()}, "a template the code does not use, or a missing one"

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "include" / "lockgate", src / "include" / "lockgate",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(src)],
        check=True, capture_output=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    site = tmp_path / "site"
    (wheel,) = (tmp_path / "dist").glob("lockgate-*.whl")
    zipfile.ZipFile(wheel).extractall(site)

    check = (
        "import sys, lockgate\n"
        f"assert lockgate.__file__.startswith({str(site)!r}), lockgate.__file__\n"
        "from lockgate.reports.templating import environment, render\n"
        "env = environment()\n"
        f"missing = {sorted(names)!r}\n"
        "missing = [n for n in missing if n not in env.list_templates()]\n"
        "assert not missing, missing\n"
        "page = render('plugin_message.html', title='t', subtitle='s', generated_at=None, heading='h',"
        " text='<b>', fragment=None)\n"
        "assert '&lt;b&gt;' in page and '.badge{' in page, page\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "LOCKGATE_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
