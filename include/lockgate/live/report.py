"""The production evidence page: canary against champion in the same hours, champion against its baseline.

The functions here prepare the comparisons as tables; `templates/live.html` (autoescaped) lays them out.
"""

from __future__ import annotations

import math
from typing import Any

from lockgate.evidence import EvidenceSummary
from lockgate.reports.html import Badge, Strong, Table
from lockgate.reports.templating import render


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(float(v)) else None


def format_change(iv: dict[str, Any] | None, comparison: str) -> str:
    """`+38% [+31%, +45%]` for a ratio, `+0.052 [+0.031, +0.074]` for a difference."""
    if not iv or _num(iv.get("value")) is None:
        return "–"
    value, low, high = _num(iv["value"]), _num(iv.get("low")), _num(iv.get("high"))
    if comparison == "ratio":

        def pct(x: float | None) -> str:
            return "?" if x is None else f"{(x - 1) * 100:+.1f}%"

        text = pct(value)
    else:

        def pct(x: float | None) -> str:
            return "?" if x is None else f"{x:+.3f}"

        text = pct(value)
    if low is None or high is None:
        return text
    return f"{text} [{pct(low)}, {pct(high)}]"


def _value(iv: dict[str, Any] | None) -> str:
    v = _num((iv or {}).get("value"))
    return "–" if v is None else f"{v:.4g}"


def comparison(
    title: str,
    cmp: dict[str, Any] | None,
    exact: dict[str, dict[str, float]],
    versions: tuple[str | None, str | None],
    problem: str | None,
    exact_source: str = "exact",
) -> dict[str, Any]:
    """One comparison (two groups, per metric stratified and raw) as a table; or why there is none."""
    if cmp is None:
        return {"title": title, "problem": problem or "not computed"}
    a_v, b_v = versions
    rows = []
    for name, m in cmp["metrics"].items():
        strat, raw = m["stratified"], m["raw"]
        ex_a = (exact.get(a_v or "", {}) if a_v else {}).get(name)
        ex_b = (exact.get(b_v or "", {}) if b_v else {}).get(name)
        exact_text = "–" if ex_a is None and ex_b is None else f"{_value({'value': ex_a})} / {_value({'value': ex_b})}"
        rows.append(
            [
                name,
                m["unit"],
                _value(strat["a"]),
                _value(strat["b"]),
                Strong(format_change(strat["compared"], m["comparison"])),
                format_change(raw["compared"], m["comparison"]),
                exact_text,
            ]
        )
    table = Table(
        [
            "metric",
            "unit",
            f"{cmp['a']} (stratified)",
            f"{cmp['b']} (stratified)",
            "change, stratified [interval]",
            "change, raw [interval]",
            f"whole window ({exact_source}, PostgreSQL)",
        ],
        rows,
    )
    return {
        "title": title,
        "problem": None,
        "a": cmp["a"],
        "b": cmp["b"],
        "a_requests": cmp["a_requests"],
        "b_requests": cmp["b_requests"],
        "strata": ", ".join(f"<= {c:g}" for c in cmp["cutoffs"]) or "one stratum",
        "table": table,
    }


def render_live_page(evidence: EvidenceSummary, *, run_key: str) -> str:
    d = evidence.details
    problems: dict[str, str] = d.get("problems") or {}
    cur, base = d.get("current_window") or {}, d.get("baseline_window") or {}
    overview = [
        ("status", Badge(evidence.status)),
        ("champion / challenger", f"{evidence.champion_version or '–'} / {evidence.challenger_version or '–'}"),
        ("current window", f"{cur.get('start')} – {cur.get('end')} ({cur.get('mode')})"),
        ("champion baseline window", f"{base.get('start')} – {base.get('end')} ({base.get('mode')})"),
        ("requests (valid)", ", ".join(f"{k} {v}" for k, v in (d.get("requests") or {}).items()) or "–"),
        (
            "rows in the window by version",
            ", ".join(f"{k}: {v}" for k, v in (d.get("window_rows_by_version") or {}).items()) or "–",
        ),
        ("quarantined rows", ", ".join(f"{k}: {v}" for k, v in evidence.quarantined.items()) or "none"),
        ("sampled for intervals", ", ".join(f"{k} {v}" for k, v in evidence.sample_sizes.items()) or "–"),
        ("MiniLM relevance rows", ", ".join(f"{k} {v}" for k, v in (d.get("relevance_rows") or {}).items()) or "–"),
        (
            "KV-cache hits from",
            d.get("kv_cache_source") or "not available (no cached_tokens column or metadata key)",
        ),
        ("counts and percentiles", d.get("aggregation") or "every row of both windows aggregated by this run"),
        ("minimum requests per version", d.get("min_requests")),
        ("missing", "; ".join(f"{k}: {v}" for k, v in problems.items()) or "nothing"),
    ]
    needed = Table(
        ["gate", "metric", "limit", "canary requests now", "needed", "note"],
        [
            [
                r["gate"],
                r["metric"],
                r["limit"],
                r["canary_requests"],
                r["needed"] if r["needed"] is not None else "–",
                r["note"],
            ]
            for r in d.get("requests_needed") or []
        ],
    )
    quantiles = d.get("window_quantiles") or {}
    return render(
        "live.html",
        title=f"Production evidence: {evidence.model_name}",
        subtitle=f"run {run_key} · live traffic per version",
        generated_at=evidence.created_at,
        overview=overview,
        canary=comparison(
            "Production canary: challenger against champion, same hours",
            d.get("canary"),
            quantiles,
            (evidence.challenger_version, evidence.champion_version),
            problems.get("challenger") or problems.get("champion"),
            d.get("quantile_source") or "exact",
        ),
        needed=needed,
        champion=comparison(
            "Champion health: the champion now against its own baseline",
            d.get("champion_vs_baseline"),
            quantiles,
            (evidence.champion_version, None),
            problems.get("baseline") or problems.get("champion"),
            d.get("quantile_source") or "exact",
        ),
    )
