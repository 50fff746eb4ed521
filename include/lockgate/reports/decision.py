"""The decision page: what was decided and why, each gate's numbers, how to approve, and the history.

Every value shown comes from data (model names, versions, reasons, tag values a person typed in
the MLflow UI): the functions here turn a decision into plain rows and facts, and the template
(`templates/decision.html`, autoescaped) lays them out.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from lockgate.policy.model import Decision, GateVerdict
from lockgate.registry import tags as T
from lockgate.registry.audit import AuditEntry, DecisionRow
from lockgate.reports.charts import ForestRow, ForestStatus, forest_plot
from lockgate.reports.html import Badge, Link, Table, fmt
from lockgate.reports.templating import render

log = logging.getLogger(__name__)

PAGE_NAME = "index.html"
AUDIT_HEADERS = (
    "time (UTC)",
    "event",
    "actor",
    "approved by",
    "alias",
    "from",
    "to",
    "version",
    "evidence",
    "policy",
    "note",
)

ACTION_TEXT = {
    "promote": "Promote the challenger",
    "await_approval": "Waiting for an approval",
    "hold": "Hold: nothing moves",
    "rollback": "Roll back the champion",
    "no_op": "Nothing to do",
}


def _href(target: str | None, page_dir: Path, reports_dir: Path) -> str | None:
    """A link from the page to a report: relative when both lie under the reports folder."""
    if not target:
        return None
    p = Path(target)
    if not p.is_absolute():
        p = reports_dir / p
    try:
        return Path(os.path.relpath(p, page_dir)).as_posix()
    except ValueError:  # another drive (Windows): keep the absolute path
        return p.as_posix()


def _interval(v: GateVerdict) -> str:
    if v.ci_low is None or v.ci_high is None:
        return "–"
    level = f" @ {v.confidence:.0%}" if v.confidence is not None else ""
    return f"[{fmt(v.ci_low)}, {fmt(v.ci_high)}]{level}"


def _rule(v: GateVerdict) -> str:
    sign = "≤" if v.direction == "lower_is_better" else "≥"
    if v.subject == "champion" and v.comparison in ("ratio", "difference"):
        what = {"ratio": "champion / its baseline", "difference": "champion − its baseline"}[v.comparison]
    else:
        what = {"ratio": "challenger / champion", "difference": "challenger − champion"}.get(v.comparison, v.subject)
    return f"{what} {sign} {fmt(v.limit)}"


def _change(v: GateVerdict) -> str:
    """`TTFT p90 +38% [+31%, +45%]` (ratio) or `error rate +0.021 [+0.010, +0.032]` (difference)."""
    name = v.metric.split(".", 1)[1].replace("_ms_", " ").replace("_", " ")
    if v.value is None:
        return f"{name}: no estimate"

    def show(x: float) -> str:
        return f"{(x - 1) * 100:+.1f}%" if v.comparison == "ratio" else f"{x:+.3f}"

    text = f"{name} {show(v.value)}"
    if v.ci_low is not None and v.ci_high is not None:
        text += f" [{show(v.ci_low)}, {show(v.ci_high)}]"
    return text


def _no_change(v: GateVerdict) -> bool:
    """The interval includes no change (ratio 1, difference 0)."""
    null = 1.0 if v.comparison == "ratio" else 0.0
    return v.ci_low is not None and v.ci_high is not None and v.ci_low <= null <= v.ci_high


def _family(metric: str) -> str:
    return metric.split(".", 1)[1].split("_", 1)[0]  # ttft, tpot, latency, ...


def disagreements(decision: Decision) -> list[str]:
    """One sentence for each latency the offline benchmark and the production canary judge differently.

    The benchmark measures the artifacts on the benchmark machine; the canary, the versions on the
    serving stack under real load. Where one passes its gate and the other does not, a person should
    see both numbers before anything else.
    """
    bench = [v for v in decision.verdicts if v.kind == "benchmark" and v.comparison == "ratio"]
    live = [v for v in decision.verdicts if v.kind == "live" and v.comparison == "ratio" and v.subject == "challenger"]
    out = []
    for lv in live:
        for bv in bench:
            if _family(bv.metric) != _family(lv.metric) or "missing" in (bv.status, lv.status):
                continue
            if (bv.status == "pass") == (lv.status == "pass"):
                continue
            b_text = f"no difference ({_change(bv)})" if _no_change(bv) else _change(bv)
            l_text = f"no difference ({_change(lv)})" if _no_change(lv) else _change(lv)
            out.append(f"benchmark: {b_text}; canary: {l_text}")
    return out


def _verdict_row(v: GateVerdict) -> list[object]:
    return [v.gate, _rule(v), _change(v), Badge(v.status), v.reason]


VERDICT_HEADERS = ("gate", "passes when", "change [interval]", "verdict", "why")


def canary_context(decision: Decision, page_dir: Path, reports_dir: Path) -> dict[str, object] | None:
    """The offline benchmark's gates beside the production evidence's, challenger against champion."""
    bench = [v for v in decision.verdicts if v.kind == "benchmark"]
    live = [v for v in decision.verdicts if v.kind == "live"]
    if not live:
        return None
    ref = decision.evidence.get("live")
    return {
        "benchmark": Table(VERDICT_HEADERS, [_verdict_row(v) for v in bench]) if bench else None,
        "live": Table(VERDICT_HEADERS, [_verdict_row(v) for v in live]),
        "live_href": _href(ref.report_path if ref else None, page_dir, reports_dir),
    }


def forest_row(v: GateVerdict) -> ForestRow:
    """A verdict as a row of the forest plot: a warn gate that did not pass is `warn`, not `fail`,
    because it never blocks; a missing verdict stays `missing` whatever the action."""
    status: ForestStatus = "warn" if v.action == "warn" and v.status == "fail" else v.status
    detail = [f"passes when {_rule(v)}"]
    if v.confidence is not None and v.ci_low is not None:
        detail.append(f"{v.confidence:.0%} interval")
    if v.compared is not None:
        detail.append(f"compared {fmt(v.compared)}")
    detail.append(f"{v.action}: {v.reason}")
    return ForestRow(
        label=v.gate,
        metric=v.metric,
        comparison=v.comparison,
        status=status,
        direction=v.direction,
        limit=v.limit,
        value=v.value,
        ci_low=v.ci_low,
        ci_high=v.ci_high,
        detail="; ".join(detail),
    )


def gates_table(decision: Decision, page_dir: Path, reports_dir: Path) -> Table:
    rows = []
    for v in decision.verdicts:
        href = _href(v.report_path, page_dir, reports_dir)
        rows.append(
            [
                v.gate,
                v.metric,
                Badge(v.action),
                _rule(v),
                v.value,
                _interval(v),
                f"{v.required_confidence:.0%}" if v.required_confidence else "–",
                v.compared,
                Badge(v.status),
                v.reason,
                Link(href, v.kind + " report") if href else None,
            ]
        )
    head = [
        "gate",
        "metric",
        "action",
        "passes when",
        "value",
        "interval",
        "needs",
        "compared",
        "verdict",
        "why",
        "evidence",
    ]
    return Table(head, rows, numeric=(4, 7))


def evidence_table(decision: Decision, page_dir: Path, reports_dir: Path) -> Table:
    rows = []
    for kind, ref in sorted(decision.evidence.items()):
        href = _href(ref.report_path, page_dir, reports_dir)
        rows.append(
            [
                kind,
                Badge("ok" if ref.usable else "missing"),
                ref.reason,
                ref.created_at.isoformat() if ref.created_at else None,
                ref.age_hours,
                ref.challenger_version,
                ref.champion_version,
                ref.content_hash,
                Link(href, "report") if href else None,
            ]
        )
    head = ["kind", "usable", "why", "created", "age (h)", "challenger", "champion", "content hash", "report"]
    return Table(head, rows, numeric=(4,))


def approval_context(
    decision: Decision, approvers: Sequence[str], mlflow_auth: bool = False
) -> dict[str, object] | None:
    """What an approver needs: the facts, the tags to set and the command to run; None without a challenger.

    With `mlflow_auth` (the policy's `approvals.mlflow_auth`), the tags and the command are given
    with the approver's own MLflow login, and the page says so.
    """
    version = decision.challenger
    if version is None or version == decision.champion:
        return None
    model = decision.model_name
    cli = f"lockgate approve {shlex.quote(model)} {shlex.quote(version)}"
    if not mlflow_auth:
        cli += " --by YOUR_NAME"
    check = decision.approval
    identity = None
    if check is not None and check.by:
        if check.authenticated and check.authenticated_via:
            identity = (
                f"{check.auth_label}: the {check.authenticated_via} server recorded that {check.by}, "
                "with permission on the model, wrote the approval"
            )
        elif check.authenticated:
            identity = f"authenticated as {check.by}"
        else:
            identity = f"unauthenticated: {check.by!r} is a name set in a tag or typed after --by, not verified"
    facts: list[tuple[str, str | None]] = [
        ("version", version),
        ("approval", check.reason if check else "not asked: a gate blocks"),
        ("approver identity", identity),
        ("counts for evidence", decision.evidence_hash),
        ("approvers", ", ".join(approvers) or "none"),
    ]
    return {
        "facts": [(k, v) for k, v in facts if v is not None],
        "model": model,
        "version": version,
        "tag_lines": f"{T.APPROVAL}=approved\n{T.APPROVED_BY}=<your name>",
        "tags_note": (
            "logged in to MLflow as yourself, with your MLflow username; the MLflow server records who wrote "
            "them, and only your own name, with EDIT or MANAGE permission on the model, counts: recorded as "
            "authenticated (MLflow: <you>)"
            if mlflow_auth
            else "a name only asserted: recorded as unauthenticated"
        ),
        "cli_note": " with your own MLflow credentials (MLFLOW_TRACKING_USERNAME and _PASSWORD)" if mlflow_auth else "",
        "approval_tag": T.APPROVAL,
        "champion_alias": T.CHAMPION,
        "cli": cli,
    }


def decisions_table(history: Sequence[DecisionRow], page_dir: Path, reports_dir: Path) -> Table:
    rows = [
        [
            r.decided_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.run_key,
            Badge(r.action),
            r.outcome,
            r.champion,
            r.challenger,
            r.evidence_hash,
            Link(_href(r.report_path, page_dir, reports_dir), "page") if r.report_path else None,
        ]
        for r in history
    ]
    return Table(["time (UTC)", "run", "action", "outcome", "champion", "challenger", "evidence", "page"], rows)


def audit_table(audit: Sequence[AuditEntry]) -> Table:
    rows = [
        [
            a.at.strftime("%Y-%m-%d %H:%M:%S"),
            a.kind,
            a.actor,
            f"{a.approved_by} ({a.approval_auth})" if a.approved_by and a.approval_auth else a.approved_by,
            a.alias,
            a.from_version,
            a.to_version,
            a.version,
            a.evidence_hash,
            a.policy_hash,
            a.message,
        ]
        for a in audit
    ]
    return Table(AUDIT_HEADERS, rows)


def render_decision_page(
    decision: Decision,
    *,
    page_dir: Path,
    reports_dir: Path,
    approvers: Sequence[str] = (),
    history: Sequence[DecisionRow] = (),
    audit: Sequence[AuditEntry] = (),
    mlflow_auth: bool = False,
) -> str:
    """The HTML of one decision page.

    Args:
        decision: the decision (with the job's outcome filled in).
        page_dir: the folder the page is written to (links are relative to it).
        reports_dir: the reports root (relative evidence paths are resolved against it).
        approvers: the policy's approver list, shown beside the approval instructions.
        history: recent decisions of the model, newest first.
        audit: recent audit rows of the model, newest first.
        mlflow_auth: the policy's `approvals.mlflow_auth` (how to approve with MLflow authentication).
    """
    d = decision
    summary: list[tuple[str, object]] = [
        ("decision", Badge(d.action)),
        ("outcome", d.outcome if not d.dry_run else "dry run: nothing was written to the registry"),
        ("model", d.model_name),
        ("champion", d.champion),
        ("challenger", d.challenger),
        ("previous_champion", d.previous_champion),
        ("champion moves to", d.target),
        ("status set on", f"version {d.subject_version}: {d.subject_status}" if d.subject_version else None),
        ("evidence hash", d.evidence_hash),
        ("policy hash", d.policy_hash),
        ("decided at", d.decided_at.isoformat()),
        ("run", d.run_key),
    ]
    approval = approval_context(d, approvers, mlflow_auth) if d.action in ("await_approval", "hold") else None
    return render(
        "decision.html",
        title=f"Lockgate decision: {d.model_name}",
        subtitle=f"{d.action} · run {d.run_key or '-'}",
        generated_at=d.decided_at,
        action_text=ACTION_TEXT.get(d.action, d.action),
        disagreements=disagreements(d),
        summary=summary,
        reasons=d.reasons,
        forest=forest_plot([forest_row(v) for v in d.verdicts]) if d.verdicts else None,
        gates=gates_table(d, page_dir, reports_dir),
        canary=canary_context(d, page_dir, reports_dir),
        evidence=evidence_table(d, page_dir, reports_dir),
        approval=approval,
        decisions=decisions_table(history, page_dir, reports_dir),
        audit=audit_table(audit),
    )


def write_decision_page(path: Path, html_text: str) -> Path:
    """Write atomically (a reader, the Airflow plugin, never sees half a page), then put it in the reports store.

    A page outside the reports folder (a test's, a script's) stays where it is written.
    """
    from lockgate.evidence import write_text_atomic
    from lockgate.reports.store import reports_store

    write_text_atomic(path, html_text)
    store = reports_store()
    if not store.is_local:
        try:
            store.put_files([path])
        except ValueError:
            log.warning("decision page %s is outside the reports folder: not put in %s", path, store.url)
    return path
