"""The production evidence page: canary against champion in the same hours, champion against its baseline."""

from __future__ import annotations

import math
from typing import Any

from lockgate.evidence import EvidenceSummary
from lockgate.reports.html import Markup, badge, esc, key_values, page, section, table


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


def _comparison_section(
    title: str,
    cmp: dict[str, Any] | None,
    exact: dict[str, dict[str, float]],
    versions: tuple[str | None, str | None],
    problem: str | None,
) -> Markup:
    if cmp is None:
        return section(title, Markup(f"<p>{badge('missing')} {esc(problem or 'not computed')}</p>"))
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
                Markup(f"<b>{esc(format_change(strat['compared'], m['comparison']))}</b>"),
                format_change(raw["compared"], m["comparison"]),
                exact_text,
            ]
        )
    strata = ", ".join(f"<= {c:g}" for c in cmp["cutoffs"]) or "one stratum"
    intro = Markup(
        f"<p class='muted'>{esc(cmp['a'])}: {esc(cmp['a_requests'])} requests; {esc(cmp['b'])}: "
        f"{esc(cmp['b_requests'])} requests. Stratified: each group weighted to the pooled mix of prompt-length "
        f"strata ({esc(strata)} prompt tokens), with bootstrap intervals; the gates read it. Raw: as the requests "
        f"came (point estimates; intervals for rates).</p>"
    )
    return section(
        title,
        intro,
        table(
            [
                "metric",
                "unit",
                f"{cmp['a']} (stratified)",
                f"{cmp['b']} (stratified)",
                "change, stratified [interval]",
                "change, raw [interval]",
                "whole window (exact, PostgreSQL)",
            ],
            rows,
        ),
    )


def render_live_page(evidence: EvidenceSummary, *, run_key: str) -> str:
    d = evidence.details
    problems: dict[str, str] = d.get("problems") or {}
    cur, base = d.get("current_window") or {}, d.get("baseline_window") or {}
    overview = key_values(
        [
            ("status", badge(evidence.status)),
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
            ("minimum requests per version", d.get("min_requests")),
            ("missing", "; ".join(f"{k}: {v}" for k, v in problems.items()) or "nothing"),
        ]
    )
    needed_rows = [
        [
            r["gate"],
            r["metric"],
            r["limit"],
            r["canary_requests"],
            r["needed"] if r["needed"] is not None else "–",
            r["note"],
        ]
        for r in d.get("requests_needed") or []
    ]
    sections = [
        section("Overview", overview),
        _comparison_section(
            "Production canary: challenger against champion, same hours",
            d.get("canary"),
            d.get("window_quantiles") or {},
            (evidence.challenger_version, evidence.champion_version),
            problems.get("challenger") or problems.get("champion"),
        ),
        section(
            "Canary requests needed to resolve each gate",
            Markup(
                "<p class='muted'>The interval narrows as 1/sqrt(n): this many canary requests make it clear "
                "the gate's limit on one side (estimated from the current interval).</p>"
            ),
            table(["gate", "metric", "limit", "canary requests now", "needed", "note"], needed_rows),
        ),
        _comparison_section(
            "Champion health: the champion now against its own baseline",
            d.get("champion_vs_baseline"),
            {**{f"{k}": v for k, v in (d.get("window_quantiles") or {}).items()}},
            (evidence.champion_version, None),
            problems.get("baseline") or problems.get("champion"),
        ),
    ]
    return page(
        f"Production evidence: {evidence.model_name}",
        f"run {run_key} · live traffic per version",
        *sections,
        generated_at=evidence.created_at,
    )
