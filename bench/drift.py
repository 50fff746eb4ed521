"""Drift on 2 x 50,000 logged requests with their text: lockgate's drift job against Evidently's default preset.

Both sides get the same windows, generated in memory by lockgate's traffic generator
(`lockgate.logs.synthetic`), and compare the same source columns: latency_ms, ttft_ms,
tokens_per_s, prompt_tokens, completion_tokens, status, prompt, response.

* lockgate: what the drift job does with the policy's settings, minus reading the log store
  and MLflow: a bounded sample of each window (`drift.sample_size`, 5,000 by default; the
  job draws it inside the database, here it is drawn in memory and timed), then
  `lockgate.jobs.drift.compare_frames`: offline text descriptors, MiniLM embeddings of
  `drift.embedding_sample_size` rows per window, one explicit test per column,
  Benjamini-Hochberg, minimum effect sizes, Evidently's report over the same columns
  (written to disk), plus lockgate's own page. `--sample-size 0` compares all rows instead;
* Evidently: `Report([DataDriftPreset()], include_tests=True).run(...)` and `save_html`, with
  its defaults (above 1,000 rows: normed Wasserstein for numbers, Jensen-Shannon for
  categories, a domain classifier for raw text).

Imports and the MiniLM load are done before any timing, for both sides.

Scenarios (the current window changes, the reference window is shared):

* `control`: same traffic, a canary version with 30% of the current window: every flag is a false positive;
* `trivial`: all requests 1% slower: a real but negligible shift (0.04 standard deviations of the time to
  first token), so every flag is a false positive too;
* `input-drift`: the demo's `input-drift` knobs (topic_drift 0.6, prompt_length_factor 2.5);
  injected signals: prompt text, prompt_tokens;
* `operational`: a new version serves all current traffic 1.5x slower with 5% errors;
  injected signals: latency_ms, ttft_ms, tokens_per_s, status.

Detection is compared per source signal (lockgate's prompt descriptors and prompt embedding
all speak for "prompt text", as Evidently's raw-text column does). Flags on signals that
the generator moves as a side effect of a knob (longer prompts also mean a longer time to
first token) are listed but not scored.

Targets: lockgate at least 3x faster over all scenarios; recall on injected signals at
least Evidently's; false positives on the controls at most Evidently's. The same job with
`drift.embeddings: false` is timed too and reported beside it: the preset has no embedding
drift, so that is the like-for-like comparison; MiniLM costs ~10 ms a text on a busy 2-core
machine and dominates the full job. The exit status follows the full job.

    .venv/bin/python bench/drift.py [--rows 50000] [--scenarios control,trivial,input-drift,operational]
                                    [--sample-size N] [--embedding-sample-size N]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SOURCE = ["latency_ms", "ttft_ms", "tokens_per_s", "prompt_tokens", "completion_tokens", "status", "prompt", "response"]

# source signal -> (lockgate columns that speak for it, Evidently preset columns that speak for it)
SIGNALS: dict[str, tuple[set[str], set[str]]] = {
    "prompt text": (
        {"prompt_length", "prompt_words", "prompt_non_letter_share", "prompt_has_link", "prompt_valid_json",
         "prompt_embedding"},
        {"prompt"},
    ),
    "response text": (
        {"response_length", "response_words", "response_non_letter_share", "response_has_link",
         "response_valid_json", "response_refusal", "response_embedding"},
        {"response"},
    ),
    **{c: ({c}, {c}) for c in SOURCE[:6]},
}  # fmt: skip


@dataclass
class Scenario:
    name: str
    injected: set[str]  # empty: a control, every flag is a false positive
    knobs: dict[str, object] = field(default_factory=dict)
    versions: list[tuple[str, float, float, float]] = field(default_factory=list)  # version, share, latency, errors


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("control", set(), versions=[("1", 0.7, 1.0, 0.01), ("2", 0.3, 1.0, 0.01)]),
        Scenario("trivial", set(), versions=[("1", 1.0, 1.01, 0.01)]),
        Scenario(
            "input-drift",
            {"prompt text", "prompt_tokens"},
            knobs={"topic_drift": 0.6, "prompt_length_factor": 2.5},
            versions=[("1", 0.7, 1.0, 0.01), ("2", 0.3, 1.0, 0.01)],
        ),
        Scenario("operational", {"latency_ms", "ttft_ms", "tokens_per_s", "status"}, versions=[("2", 1.0, 1.5, 0.05)]),
    )
}


def _frame(rows: list[dict]) -> object:
    import pandas as pd

    from lockgate.logs.schema import CONTRACT_COLUMNS

    frame = pd.DataFrame(rows, columns=list(CONTRACT_COLUMNS))
    for col in ("latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def generate(rows: int) -> tuple[object, dict[str, object]]:
    """The shared reference window and each scenario's current window (usable rows only)."""
    from lockgate.logs.synthetic import TrafficSpec, VersionTraffic, generate_traffic

    start = datetime(2026, 1, 1, tzinfo=UTC)
    reference = list(generate_traffic(TrafficSpec(reference_start=start, reference_rows=rows, current_rows=0, seed=1)))
    currents = {}
    for i, sc in enumerate(SCENARIOS.values()):
        versions = [VersionTraffic(v, share=s, latency_factor=lat, error_rate=err) for v, s, lat, err in sc.versions]
        spec = TrafficSpec(
            reference_start=start, reference_rows=0, current_rows=rows, current_versions=versions, seed=100 + i,
            **sc.knobs,  # type: ignore[arg-type]
        )  # fmt: skip
        currents[sc.name] = _frame(list(generate_traffic(spec)))
    return _frame(reference), currents


def _window(role: str, frame: object) -> object:
    from lockgate.drift.summary import WindowSample

    n = len(frame)  # type: ignore[arg-type]
    return WindowSample(role=role, mode="bench", window_rows=n, sampled=n, usable=n)  # type: ignore[arg-type]


def run_lockgate(
    reference: object, current: object, policy: object, out: Path, sample_size: int | None
) -> tuple[float, set[str], dict, list[str]]:
    from lockgate.drift.report import render_drift_page
    from lockgate.jobs.drift import REPORT_FILE, compare_frames

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if sample_size:
        # The job's bounded sample of each window (in the job, a top-n by md5 rank inside the database).
        reference = reference.sample(n=min(sample_size, len(reference)), random_state=0)  # type: ignore[attr-defined]
        current = current.sample(n=min(sample_size, len(current)), random_state=1)  # type: ignore[attr-defined]
    drift = compare_frames(
        "bench",
        reference,
        current,
        policy,
        _window("reference", reference),
        _window("current", current),
        out,  # type: ignore[arg-type]
    )
    (out / REPORT_FILE).write_text(render_drift_page(drift, run_key=out.name, evidently_href="evidently.html"))
    seconds = time.perf_counter() - t0
    # significant after BH but below the minimum effect: what a p-value-only rule would have flagged
    significant_only = [c.column for c in drift.columns if c.significant and not c.drifted]
    return seconds, set(drift.drifted_columns), drift.timings_s, significant_only


def _preset_input(frame: object) -> object:
    from lockgate.drift.columns import build_features

    f = frame.copy()  # type: ignore[attr-defined]
    f["tokens_per_s"] = build_features(frame, ())["tokens_per_s"]  # type: ignore[arg-type]
    return f[SOURCE]


def run_preset(reference: object, current: object, out: Path) -> tuple[float, set[str], dict[str, str]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=SOURCE[:5], categorical_columns=["status"], text_columns=["prompt", "response"]
    )
    ref, cur = _preset_input(reference), _preset_input(current)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition)
    )
    snapshot.save_html(str(out / "evidently_preset.html"))
    seconds = time.perf_counter() - t0
    flagged, methods = set(), {}
    for test in snapshot.dict()["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        column = params.get("column")
        if test.get("id") == "drift" and column:
            methods[column] = params.get("method")
            if test.get("status") == "FAIL":
                flagged.add(column)
    return seconds, flagged, methods


def signals_of(columns: set[str], side: int) -> set[str]:
    return {name for name, cols in SIGNALS.items() if cols[side] & columns}


def warm_up(policy: object) -> float:
    """Imports and model load for both sides, and one tiny run of each, before any timing."""
    t0 = time.perf_counter()
    import evidently  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    from lockgate.embeddings import embed_texts

    embed_texts(["warm up"])
    reference, currents = generate(300)
    with tempfile.TemporaryDirectory() as tmp:
        run_lockgate(reference, currents["control"], policy, Path(tmp) / "l", None)
        run_preset(reference, currents["control"], Path(tmp) / "p")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows per window")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", default=None, help="where reports go (default: a temporary folder)")
    parser.add_argument(
        "--sample-size",
        type=int,
        default=None,
        help="rows lockgate samples per window (default: the policy's drift.sample_size, as the job does; 0: all)",
    )
    parser.add_argument("--embedding-sample-size", type=int, default=None, help="override the policy's value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")

    from lockgate.settings import load_policy

    policy = load_policy()
    if args.embedding_sample_size:
        drift_cfg = policy.drift.model_copy(update={"embedding_sample_size": args.embedding_sample_size})
        policy = policy.model_copy(update={"drift": drift_cfg})
    sample_size = policy.drift.sample_size if args.sample_size is None else args.sample_size
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    out = Path(args.out or tempfile.mkdtemp(prefix="lockgate-bench-drift-"))
    cfg = policy.drift
    print(f"cpus: {os.cpu_count()}, load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"lockgate drift settings: fdr_alpha {cfg.fdr_alpha}, min_effect_size {cfg.min_effect_size} "
        f"(overrides {cfg.min_effect_sizes}), embedding_sample_size {cfg.embedding_sample_size}; "
        f"lockgate samples {sample_size or 'all'} rows per window"
    )
    print(f"warm-up (imports, MiniLM load, one small run of each side): {warm_up(policy):.1f} s")
    t0 = time.perf_counter()
    reference, currents = generate(args.rows)
    print(f"generated {args.rows:,} reference rows and {args.rows:,} current rows per scenario "
          f"in {time.perf_counter() - t0:.1f} s; reports under {out}")  # fmt: skip

    # The same job without the MiniLM stage: the preset computes no embedding drift at all, so this
    # is the like-for-like comparison of the columns both sides cover; reported beside the full job.
    no_emb = policy.model_copy(update={"drift": policy.drift.model_copy(update={"embeddings": False})})
    total_l = total_p = total_n = 0.0
    hits_l = hits_p = hits_n = injected_n = fp_l = fp_p = fp_n = 0
    rows = []
    for name in names:
        sc = SCENARIOS[name]
        current = currents[name]
        tl, cols_l, timings, sig_only = run_lockgate(reference, current, policy, out / f"{name}-lockgate", sample_size)
        tp, cols_p, methods = run_preset(reference, current, out / f"{name}-evidently")
        tn, cols_n, _, _ = run_lockgate(reference, current, no_emb, out / f"{name}-lockgate-no-embeddings", sample_size)
        total_l += tl
        total_p += tp
        total_n += tn
        sig_l, sig_p, sig_n = signals_of(cols_l, 0), signals_of(cols_p, 1), signals_of(cols_n, 0)
        if sc.injected:
            hits_l += len(sig_l & sc.injected)
            hits_p += len(sig_p & sc.injected)
            hits_n += len(sig_n & sc.injected)
            injected_n += len(sc.injected)
        else:
            fp_l += len(sig_l)
            fp_p += len(sig_p)
            fp_n += len(sig_n)
        rows.append((sc, tl, tp, sig_l, sig_p, cols_l, timings, sig_only, tn))

    print()
    print(
        f"{'scenario':<12} {'lockgate s':>10} {'preset s':>9} {'ratio':>6} {'no-emb s':>9} {'ratio':>6}  "
        "injected signals -> lockgate / preset"
    )
    for sc, tl, tp, sig_l, sig_p, _cols, _t, _m, tn in rows:
        if sc.injected:
            verdict = (
                f"recall {len(sig_l & sc.injected)}/{len(sc.injected)} / {len(sig_p & sc.injected)}/{len(sc.injected)}"
            )
            extra_l, extra_p = sorted(sig_l - sc.injected), sorted(sig_p - sc.injected)
            verdict += f"; side effects flagged: {extra_l or '-'} / {extra_p or '-'}"
        else:
            verdict = f"false positives {len(sig_l)} {sorted(sig_l) or ''} / {len(sig_p)} {sorted(sig_p) or ''}"
        print(f"{sc.name:<12} {tl:>10.2f} {tp:>9.2f} {tp / tl:>5.1f}x {tn:>9.2f} {tp / tn:>5.1f}x  {verdict}")
    print()
    for sc, _tl, _tp, _sl, _sp, cols_l, timings, sig_only, _tn in rows:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
        print(f"{sc.name}: lockgate drifted columns {sorted(cols_l) or '-'}; lockgate stages (s): {parts}")
        if sig_only:
            print(f"  significant after BH but below their minimum effect (not flagged): {sorted(sig_only)}")
    print(f"Evidently preset methods at {args.rows:,} rows: {methods}")
    ratio = total_p / total_l if total_l else float("nan")
    recall_l = hits_l / injected_n if injected_n else float("nan")
    recall_p = hits_p / injected_n if injected_n else float("nan")
    print()
    print(f"total: lockgate {total_l:.1f} s, Evidently preset {total_p:.1f} s, ratio {ratio:.1f}x (target >= 3x)")
    print(
        f"recall on injected signals: lockgate {hits_l}/{injected_n} ({recall_l:.0%}), "
        f"preset {hits_p}/{injected_n} ({recall_p:.0%})"
    )
    print(f"false positives on the controls: lockgate {fp_l}, preset {fp_p}")
    ok = ratio >= 3 and hits_l >= hits_p and fp_l <= fp_p
    print(f"targets (full job, MiniLM embeddings included): {'MET' if ok else 'NOT MET'}")
    ratio_n = total_p / total_n if total_n else float("nan")
    ok_n = ratio_n >= 3 and hits_n >= hits_p and fp_n <= fp_p
    print(
        f"without the embedding stage (the columns both sides cover): lockgate {total_n:.1f} s, ratio {ratio_n:.1f}x, "
        f"recall {hits_n}/{injected_n}, false positives {fp_n}: {'MET' if ok_n else 'NOT MET'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))
    raise SystemExit(main())
