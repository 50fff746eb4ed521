"""The benchmark's HTML report: verdict, headline ratios, charts, every cell, measurement quality.

Built from the evidence summary (what the gates read) and, when the run measured
anything, the analysis (for the raw samples behind the charts). An error summary
still gets a page: the message says what went wrong and what to do. The functions here
prepare tables, facts and charts; `templates/benchmark.html` (autoescaped) lays them out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lockgate.benchmark.analysis import Analysis, CellResult
from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence
from lockgate.reports import charts
from lockgate.reports.html import Badge, Markup, Table, Tone, fmt
from lockgate.reports.templating import render

HEADLINE_ORDER = (
    "ttft_ms_p50",
    "ttft_ms_p90",
    "ttft_ms_p99",
    "tpot_ms_p50",
    "itl_ms_p50",
    "e2e_ms_p50",
    "e2e_ms_p99",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "peak_memory_mb",
    "mfu_prefill",
    "mbu_decode",
    "energy_mj_per_token",
)
ROLE_COLORS = {"challenger": charts.CHALLENGER_COLOR, "champion": charts.CHAMPION_COLOR}


def _est(e: Estimate | None) -> str:
    if e is None:
        return "–"
    if e.ci_low is None or e.ci_high is None:
        return fmt(e.value)
    return f"{fmt(e.value)} [{fmt(e.ci_low)}, {fmt(e.ci_high)}]"


def _ratio_cell(m: MetricEvidence) -> str | Tone:
    r = m.ratio
    if r is None:
        return "–"
    text = _est(r)
    worse_high = not (m.description or "").endswith("higher is better)")
    # Colour only what the interval shows: a whole interval beyond 1 either way.
    if r.ci_low is not None and r.ci_high is not None:
        if (worse_high and r.ci_low > 1) or (not worse_high and r.ci_high < 1):
            return Tone(text, "worse")
        if (worse_high and r.ci_high < 1) or (not worse_high and r.ci_low > 1):
            return Tone(text, "better")
    return text


def _metric_rows(metrics: dict[str, MetricEvidence], names: Sequence[str]) -> list[list[Any]]:
    rows = []
    for name in names:
        m = metrics.get(name)
        if m is None:
            continue
        rows.append([name, m.unit or "", _est(m.challenger), _est(m.champion), _ratio_cell(m)])
    return rows


def _cell_charts(cell: CellResult, roles: Sequence[str]) -> list[Markup]:
    parts = []
    for key, label in (
        ("ttft_ms", "Time to first token"),
        ("tpot_ms", "Time per output token"),
        ("e2e_ms", "End-to-end"),
    ):
        groups = [
            charts.BoxGroup(f"{role}", cell.per_role[role]["samples_ms"][key], ROLE_COLORS.get(role, charts.PALETTE[i]))
            for i, role in enumerate(roles)
            if role in cell.per_role
        ]
        parts.append(charts.box_plot(f"{label} — {cell.config}, batch size {cell.batch_size}", groups, "ms"))
    return parts


def _throughput_charts(cells: Sequence[CellResult], roles: Sequence[str]) -> list[Markup]:
    out = []
    for metric, title in (
        ("decode_tokens_per_s", "Decode throughput against batch size"),
        ("prefill_tokens_per_s", "Prefill throughput against batch size"),
    ):
        series = []
        configs = sorted({c.config for c in cells}, key=lambda c: (c != "eager", c))
        for ci, config in enumerate(configs):
            for ri, role in enumerate(roles):
                pts = [
                    (float(c.batch_size), float(c.per_role[role].get("metrics", {}).get(metric) or math.nan))
                    for c in cells
                    if c.config == config and role in c.per_role
                ]
                series.append(
                    charts.Series(
                        f"{role} · {config}",
                        pts,
                        ROLE_COLORS.get(role, charts.PALETTE[ri % len(charts.PALETTE)]),
                        dashed=ci > 0,
                    )
                )
        out.append(charts.line_chart(title, series, "batch size", "tokens/s"))
    return out


def _cells_table(cells: Sequence[CellResult], roles: Sequence[str]) -> Table:
    rows = []
    for c in cells:
        for role in roles:
            info = c.per_role.get(role)
            if not info:
                continue
            for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
                d = info[key]
                rows.append(
                    [c.config, c.batch_size, role, key, d["n"], d["mean"], d["std"], d["p50"], d["p90"], d["p99"]]
                )
    return Table(
        ["config", "batch", "version", "metric", "n", "mean", "std", "p50", "p90", "p99"], rows, numeric=range(4, 10)
    )


def _quality_table(cells: Sequence[CellResult], roles: Sequence[str], max_cv: float | None) -> Table:
    rows = []
    for c in cells:
        for role in roles:
            info = c.per_role.get(role)
            if not info:
                continue
            cvs = [info.get(f"cv_{k}") for k in ("ttft_ms", "tpot_ms", "e2e_ms")]
            # Validity reads the comparison's CV (on the challenger's row) when there are two versions.
            judged = [info.get(f"paired_cv_{k}") for k in ("ttft_ms", "tpot_ms", "e2e_ms")] if len(roles) > 1 else cvs
            worst = max((v for v in judged if v is not None), default=None)
            verdict = Badge("ok") if worst is None or max_cv is None or worst <= max_cv else Badge("invalid")
            rows.append(
                [
                    c.config,
                    c.batch_size,
                    role,
                    f"{c.repetitions} x {c.requests}",
                    *cvs,
                    *[info.get(f"paired_cv_{k}") for k in ("ttft_ms", "tpot_ms", "e2e_ms")],
                    info.get("first_warmup_ms"),
                    info.get("compile_s"),
                    info.get("prefill_gflops_per_s"),
                    info.get("decode_gbytes_per_s"),
                    info.get("weights_mb"),
                    info.get("workset_mb_max"),
                    info.get("gpu_reserved_mb_max"),
                    verdict,
                ]
            )
    return Table(
        [
            "config",
            "batch",
            "version",
            "reps x requests",
            "CV ttft",
            "CV tpot",
            "CV e2e",
            "ratio CV ttft",
            "ratio CV tpot",
            "ratio CV e2e",
            "first warm-up ms",
            "compile s",
            "prefill GFLOP/s",
            "decode GB/s",
            "weights MiB",
            "request MiB (max)",
            "GPU reserved MiB",
            "noise",
        ],
        rows,
        numeric=range(4, 17),
    )


def _workload(d: dict[str, Any]) -> dict[str, Any] | None:
    wl = d.get("workload")
    if not wl:
        return None
    config = d.get("config", {})
    facts = [
        ("prompt lengths from", wl.get("source")),
        ("detail", wl.get("detail")),
        ("window", f"{wl.get('window_start')} – {wl.get('window_end')}" if wl.get("window_start") else None),
        ("prompts", wl.get("n")),
        ("truncated to the context", wl.get("truncated")),
        ("batch sizes", ", ".join(str(b) for b in config.get("batch_sizes", []))),
        ("new tokens per request", config.get("max_new_tokens")),
        ("repetitions / warm-ups", f"{config.get('repetitions')} / {config.get('warmups')}"),
        ("serving configurations", ", ".join(config.get("serving_configs", []))),
        ("order", "versions interleaved request by request (A B, then B A)"),
        ("generation", "greedy, full length (end-of-sequence ignored), random token ids of the sampled lengths"),
    ]
    return {"facts": facts, "chart": charts.histogram("Prompt lengths", wl.get("lengths", []), "tokens")}


def _versions_table(models: dict[str, Any]) -> Table | None:
    if not models:
        return None
    return Table(
        ["role", "version", "parameters", "weights MiB", "load s", "architecture"],
        [
            [
                role,
                m.get("version"),
                m.get("n_params"),
                (m.get("weight_bytes") or 0) / 2**20,
                m.get("load_s"),
                m.get("architecture"),
            ]
            for role, m in models.items()
        ],
        numeric=(2, 3, 4),
    )


def render_report(summary: EvidenceSummary, analysis: Analysis | None, run_key: str) -> str:
    """The full page; everything from data is escaped by the template."""
    d = summary.details
    roles = [r for r, v in (("challenger", summary.challenger_version), ("champion", summary.champion_version)) if v]
    versions = " vs ".join(
        f"{r} v{v}"
        for r, v in (("challenger", summary.challenger_version), ("champion", summary.champion_version))
        if v
    )
    result: list[tuple[str, Any]] = [
        ("status", Badge(summary.status)),
        ("usable by gates", "yes" if summary.valid and summary.status == "ok" else "no"),
        ("message", summary.message),
        ("challenger version", summary.challenger_version),
        ("champion version", summary.champion_version),
        (
            "headline cell",
            f"{d['headline']['config']}, batch size {d['headline']['batch_size']}" if d.get("headline") else None,
        ),
        ("device", f"{d.get('device', {}).get('name', '–')} ({d.get('device', {}).get('dtype', '–')})"),
        ("clock", d.get("clock")),
        ("MLflow runs", ", ".join(f"{k}: {v}" for k, v in summary.mlflow_run_ids.items()) or None),
    ]
    metric_headers = ["metric", "unit", "challenger [CI]", "champion [CI]"]
    head = [n for n in HEADLINE_ORDER if n in summary.metrics]
    others = sorted(n for n in summary.metrics if n not in head)
    cells = analysis.cells if analysis else []
    failures = d.get("failures") or []
    return render(
        "benchmark.html",
        title=f"Benchmark — {summary.model_name}",
        subtitle=f"{summary.model_name} · {versions or 'no versions'} · run {run_key}",
        generated_at=summary.created_at,
        result=result,
        error=(summary.message or "unknown error") if summary.status == "error" else None,
        headline=Table([*metric_headers, "ratio challenger/champion [CI]"], _metric_rows(summary.metrics, head))
        if head
        else None,
        confidence=fmt(d.get("confidence")),
        resamples=d.get("bootstrap_resamples"),
        latency_charts=[chart for c in cells for chart in _cell_charts(c, roles)],
        throughput_charts=_throughput_charts(cells, roles) if cells else [],
        cells=_cells_table(cells, roles) if cells else None,
        others=Table([*metric_headers, "ratio [CI]"], _metric_rows(summary.metrics, others)) if others else None,
        noise=_quality_table(cells, roles, d.get("config", {}).get("max_cv")) if cells else None,
        max_cv=fmt(d.get("config", {}).get("max_cv")),
        problems=d.get("problems", []),
        failures=Table(
            ["config", "batch size", "version", "kind", "message"],
            [[f["config"], f["batch_size"] or "all", f["role"] or "all", f["kind"], f["message"]] for f in failures],
        )
        if failures
        else None,
        notes=d.get("notes", []),
        workload=_workload(d),
        versions=_versions_table(d.get("models") or {}),
        environment=sorted((d.get("fingerprint") or {}).items()),
    )
