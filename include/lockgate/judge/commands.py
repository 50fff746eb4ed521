"""`lockgate judge ...`: calibrate the policy's judge on a labelled set, and start a set from rated traffic."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from lockgate.errors import ConfigError

log = logging.getLogger(__name__)

MAX_POOL = 50_000  # rows drawn at most while looking for rated ones (the sample is held in memory)


def _fmt(e: Any) -> str:
    if e is None:
        return "n/a (too few items)"
    return f"{e.value:.2f} [{e.ci_low:.2f}, {e.ci_high:.2f}]"


def describe_calibration(result: Any) -> list[str]:
    """The lines `lockgate judge calibrate` prints: the set's provenance, then the judge's agreement."""
    lines = [
        f"calibration set: {result.set_name} ({result.set_path})",
        f"  {result.set_description}",
        f"  how it was made: {result.method}",
        "  labels come from: "
        + ("people outside the project" if result.labels_from == "people" else "the lockgate project (an example)"),
        f"  labellers ({len(result.labellers)}): "
        + (", ".join(f"{lab.id} ({lab.description})" if lab.description else lab.id for lab in result.labellers)),
        f"  size: {result.set_size} labelled items, {result.n_items} of them for these rubrics"
        + (f"; {result.n_unlabelled} not labelled yet" if result.n_unlabelled else ""),
    ]
    if len(result.labellers) < 2:
        lines.append("  labellers' agreement: unknown (one labeller)")
    for pair in result.labeller_agreement:
        lines.append(
            f"  labellers' agreement (the ceiling): {pair.a} vs {pair.b} on {pair.n} items: "
            f"Spearman {_fmt(pair.spearman)}, kappa {_fmt(pair.kappa)}"
        )
    lines += [
        f"judge: {result.description}",
        f"  agreement with {result.provenance}:",
        f"  Spearman {_fmt(result.spearman)}, Cohen's kappa (quadratic) {_fmt(result.kappa)}, "
        f"scored {result.n_scored}/{result.n_items}",
    ]
    for r in result.per_rubric:
        lines.append(f"  {r.rubric}: {r.scored}/{r.n} scored, Spearman {r.spearman:.2f}, kappa {r.kappa:.2f}")
    if result.uncalibrated_rubrics:
        lines.append(f"  no labelled item for: {', '.join(result.uncalibrated_rubrics)} (not evidence)")
    thresholds = ", ".join(f"{k} {v}" for k, v in result.thresholds.items())
    if result.passed:
        lines.append(f"result: PASSED ({thresholds}): judge_* metrics are evidence")
    else:
        lines.append(f"result: FAILED ({'; '.join(result.reasons)}): judge_* metrics are kept out of the evidence")
    return lines


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Run the policy's judge on a calibration set and print the agreement; exit 1 when it fails."""
    from lockgate.judge.backends import make_backend
    from lockgate.judge.calibration import calibrate
    from lockgate.logs.redaction import Redactor
    from lockgate.policy.schema import load_policy, rubric_files
    from lockgate.settings import get_settings

    policy = load_policy()
    qc = policy.quality
    rubrics = list(args.rubrics or qc.rubrics)
    present = rubric_files(qc.rubrics_dir)
    unknown = [r for r in rubrics if r not in present]
    if unknown:
        raise ConfigError(f"no rubric file for {unknown}; present: {sorted(present)}", key="rubrics")
    settings = get_settings()
    backend = make_backend(qc.judge, settings.home)
    try:
        result = calibrate(
            backend.judge,
            judge=backend.identity,
            description=backend.description,
            rubrics=rubrics,
            config=qc,
            statistics=policy.statistics,
            redact=Redactor(policy.redaction),
            cache_dir=settings.home / "judge" / "calibration",
            max_chars=qc.judge.max_input_chars,
            set_path=args.set,
        )
    finally:
        backend.close()
    if args.json:
        print(result.model_dump_json(indent=2, exclude={"items"}))
    else:
        print("\n".join(describe_calibration(result)))
    return 0 if result.passed else 1


def feedback_items(rows: Iterable[Mapping[str, Any]], rubric: Any, limit: int) -> list[dict[str, Any]]:
    """Rated, answered rows as calibration items to label: labels empty, the user's feedback as a hint."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if row.get("feedback") is None or row.get("status") != "ok" or not (row.get("response") or "").strip():
            continue
        if rubric.needs_context and not row.get("context"):
            continue
        ts = row.get("ts")
        out.append(
            {
                "id": str(row["request_id"]),
                "rubric": rubric.name,
                "prompt": row.get("prompt") or "",
                "response": row["response"],
                **({"context": row["context"]} if row.get("context") else {}),
                "labels": {},
                "hint": {
                    "feedback": int(row["feedback"]),
                    "model_version": str(row.get("model_version")),
                    "ts": ts.isoformat() if isinstance(ts, datetime) else str(ts),
                },
            }
        )
        if len(out) >= limit:
            break
    return out


def _window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    def parse(value: str, key: str) -> datetime:
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"not an ISO time: {value!r}", key=key) from None
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    end = parse(args.end, "--end") if args.end else datetime.now(UTC)
    start = parse(args.start, "--start") if args.start else end - timedelta(days=args.days)
    return start, end


def cmd_export_feedback(args: argparse.Namespace) -> int:
    """Sample rated rows of a model (redacted) into a calibration set a person can complete."""
    from lockgate.judge.calibration import MANIFEST_SUFFIX
    from lockgate.judge.rubrics import load_rubric
    from lockgate.logs.db import make_engine
    from lockgate.logs.redaction import Redactor
    from lockgate.logs.sampling import Window, count_window, sample_inference_logs
    from lockgate.policy.schema import load_policy
    from lockgate.settings import resolve_logs_db_url

    policy = load_policy()
    policy.model(args.model)
    rubric = load_rubric(args.rubric, rubrics_dir=policy.quality.rubrics_dir)
    if rubric.kind == "pairwise":
        raise ConfigError("pairwise is calibrated on relevance items: export for relevance", key="--rubric")
    out = Path(args.out)
    if not out.name.endswith(".jsonl"):
        raise ConfigError("the set's file name must end in .jsonl", key="--out")
    meta = out.with_name(out.name.removesuffix(".jsonl") + MANIFEST_SUFFIX)
    if not args.force and (out.exists() or meta.exists()):
        raise ConfigError(f"{out} or its manifest exists (labels may be in it): use --force to replace", key="--out")
    window = Window(*_window(args))
    engine = make_engine(resolve_logs_db_url())
    versions = [args.version] if args.version else None
    total = count_window(engine, args.model, window, versions, policy.logs)
    # The sample is the n rows of smallest seeded rank: a larger n draws a superset, so
    # growing it until enough rows are rated keeps the export deterministic.
    n = min(max(args.size * 4, 100), MAX_POOL)
    while True:
        redactor = Redactor(policy.redaction)
        sample = sample_inference_logs(
            engine, args.model, window, n, policy.statistics.seed, versions, policy.logs, redactor
        )
        items = feedback_items(sample.rows, rubric, args.size)
        if len(items) >= args.size or n >= min(total, MAX_POOL):
            break
        n = min(n * 4, MAX_POOL)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    manifest = {
        "name": out.name.removesuffix(".jsonl"),
        "description": f"Rated answers of {args.model} from its inference logs, to be labelled under the "
        f"{rubric.id} rubric.",
        "labels_from": "people",
        "method": f"Exported by `lockgate judge export-feedback`: a deterministic sample (seed "
        f"{policy.statistics.seed}) of {n} rows of {window}, of which the {len(items)} answered rows with "
        "user feedback are kept; text redacted with the policy's redaction rules. The feedback (-1, 0, 1) "
        "is a hint shown to the labellers, not a label.",
        "labellers": [],
    }
    meta.write_text(
        "# Fill in: add yourself under labellers (id, description), and your score under each row's\n"
        '# "labels" ({"your-id": score}, in the rubric\'s scale). Rows left unlabelled are not used.\n'
        + yaml.safe_dump(manifest, sort_keys=False, width=100)
    )
    rated = sum(1 for r in sample.rows if r.get("feedback") is not None)
    print(
        f"wrote {len(items)} items to label ({rubric.id}) to {out}, manifest {meta}\n"
        f"  drawn {sample.sampled} of {total} rows in {window}: {rated} rated, "
        f"{sum(sample.quarantined.values())} quarantined, redactions {dict(sample.redactions) or 'none'}"
    )
    if len(items) < args.size:
        print(f"  fewer than the {args.size} asked: the window holds no more rated, answered rows")
    return 0


def cmd_push_set(args: argparse.Namespace) -> int:
    """Copy a labelled JSONL set to an MLflow evaluation dataset that `quality.calibration_set: mlflow:NAME` names."""
    from lockgate.judge.calibration import MLFLOW_PREFIX, load_calibration_set, push_calibration_set

    dataset_id = push_calibration_set(args.set, args.name)
    pushed = load_calibration_set(MLFLOW_PREFIX + args.name)
    print(
        f"MLflow evaluation dataset {args.name} ({dataset_id}): {len(pushed.items)} labelled items, labellers "
        f"{', '.join(lab.id for lab in pushed.manifest.labellers) or '-'} ({pushed.manifest.labels_from}); "
        f"use it with quality.calibration_set: {MLFLOW_PREFIX}{args.name}"
    )
    return 0
