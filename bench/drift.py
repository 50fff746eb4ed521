"""Drift on 2 x 50,000 logged requests with their text: lockgate's drift job against Evidently's default preset.

Both sides get the same windows, generated in memory by lockgate's traffic generator
(`lockgate.devtools.synthetic`), and compare the same source columns: latency_ms, ttft_ms,
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

The lockgate job is timed seven ways per scenario, each beside the same preset run:

* `daily` (the target): the job as it runs every day against a reference window that does not
  change until the next promotion: the embedding cache (`lockgate.embeddings.EmbeddingCache`,
  a fresh file for this benchmark) holds the reference window's texts, embedded by "yesterday's"
  run (untimed); the current window's texts are new and encoded;
* `cold`: the cache emptied first, every text encoded (a first run, or the cache turned off);
* `no-emb`: `drift.embeddings: false`: the preset has no embedding drift, so this is the
  like-for-like comparison of the columns both sides cover;
* `no-evidently`: the daily job with `drift.evidently_report: false`: lockgate's own report
  (every verdict, the embedding drift included) without Evidently's page beside it, whose two
  embeddings pictures (t-SNE) are most of the daily job's time. Same detection: the verdicts are
  lockgate's either way;
* `cold-no-evidently`: the cold job with `drift.evidently_report: false`;
* `ev-columns` and `cold-ev-columns`: the daily and the cold job with
  `drift.evidently_embeddings: false`: Evidently's page covers the operational metrics and text
  descriptors (its column report runs while MiniLM encodes), not the embedding sets, whose drift is
  on lockgate's page.

MiniLM dominates the job (~3-6 ms a text on two cores in bfloat16). The number of texts
encoded and read from the cache is printed for each run.

Targets: the daily job at least 8x and the cold job at least 5x faster than the preset over all
scenarios; for each, recall on injected signals at least Evidently's and false positives on the
controls at most Evidently's. The exit status follows these (the job as it runs by default, with
Evidently's page); whether the job meets them with Evidently's page over the columns only, and
without Evidently's page, is printed after them.
The script also prints the power of the embedding test at its minimum effect for the embedded
sample (`classifier_test_power`): the embedded rows per window are the lever on the encoder's
time, and that power is what fewer rows would cost.

    .venv/bin/python bench/drift.py [--rows 50000] [--scenarios control,trivial,input-drift,operational]
                                    [--sample-size N] [--embedding-sample-size N] [--embedding-power P]
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


def generate(rows: int) -> tuple[object, dict[str, object]]:
    """The shared reference window and each scenario's current window (usable rows only)."""
    from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, generate_traffic
    from lockgate.logs.sampling import logs_frame

    start = datetime(2026, 1, 1, tzinfo=UTC)
    reference = list(generate_traffic(TrafficSpec(reference_start=start, reference_rows=rows, current_rows=0, seed=1)))
    currents = {}
    for i, sc in enumerate(SCENARIOS.values()):
        versions = [VersionTraffic(v, share=s, latency_factor=lat, error_rate=err) for v, s, lat, err in sc.versions]
        spec = TrafficSpec(
            reference_start=start, reference_rows=0, current_rows=rows, current_versions=versions, seed=100 + i,
            **sc.knobs,  # type: ignore[arg-type]
        )  # fmt: skip
        currents[sc.name] = logs_frame(list(generate_traffic(spec)))
    return logs_frame(reference), currents


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
    reference, current = bounded_samples(reference, current, sample_size)
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


def bounded_samples(reference: object, current: object, sample_size: int | None) -> tuple[object, object]:
    """The job's bounded sample of each window (in the job, a top-n by hash rank inside the database)."""
    if sample_size:
        reference = reference.sample(n=min(sample_size, len(reference)), random_state=0)  # type: ignore[attr-defined]
        current = current.sample(n=min(sample_size, len(current)), random_state=1)  # type: ignore[attr-defined]
    return reference, current


def prime_cache_with_reference(reference: object, policy: object, sample_size: int | None) -> int:
    """What yesterday's run left in the embedding cache: the reference window's embedded texts."""
    from lockgate.drift.analysis import _embedding_inputs
    from lockgate.drift.columns import EMBEDDING_SOURCES
    from lockgate.embeddings import embed_texts

    reference, _ = bounded_samples(reference, reference, sample_size)
    from lockgate.drift.analysis import embedded_rows

    n = embedded_rows(policy.drift, list(EMBEDDING_SOURCES))  # type: ignore[attr-defined]
    texts = [t for source in EMBEDDING_SOURCES.values() for t in _embedding_inputs(reference, source, n)]  # type: ignore[arg-type]
    embed_texts(texts)
    return len(set(texts))


class CacheCounter(logging.Handler):
    """Counts the texts the job encoded and read from the cache (from lockgate.embeddings' log)."""

    def __init__(self) -> None:
        from lockgate.embeddings import ENCODED_LOG

        super().__init__(logging.DEBUG)
        self.message = ENCODED_LOG
        self.encoded = self.cached = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == self.message:
            self.encoded += record.args[0]  # type: ignore[index]
            self.cached += record.args[1]  # type: ignore[index]


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
    cache = os.environ.get("LOCKGATE_EMBEDDINGS_CACHE")
    os.environ["LOCKGATE_EMBEDDINGS_CACHE"] = "off"  # the warm-up's texts are not cached for the timed runs
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_lockgate(reference, currents["control"], policy, Path(tmp) / "l", None)
            run_preset(reference, currents["control"], Path(tmp) / "p")
    finally:
        if cache is None:
            os.environ.pop("LOCKGATE_EMBEDDINGS_CACHE")
        else:
            os.environ["LOCKGATE_EMBEDDINGS_CACHE"] = cache
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
    parser.add_argument(
        "--embedding-power",
        type=float,
        default=None,
        help="drift.embedding_power: embed as many rows as give the embedding test this power (e.g. 0.8)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")

    from lockgate.policy.schema import load_policy

    policy = load_policy()
    if args.embedding_sample_size:
        drift_cfg = policy.drift.model_copy(update={"embedding_sample_size": args.embedding_sample_size})
        policy = policy.model_copy(update={"drift": drift_cfg})
    if args.embedding_power:
        drift_cfg = policy.drift.model_copy(update={"embedding_power": args.embedding_power})
        policy = policy.model_copy(update={"drift": drift_cfg})
    sample_size = policy.drift.sample_size if args.sample_size is None else args.sample_size
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    out = Path(args.out or tempfile.mkdtemp(prefix="lockgate-bench-drift-"))
    # A cache of this run's own: never the user's, never one left by an earlier run.
    os.environ["LOCKGATE_EMBEDDINGS_CACHE"] = str(out / "embedding-cache.sqlite")
    cfg = policy.drift
    from lockgate.benchmark.environment import cpu_features

    print(f"cpu: {cpu_features()}; load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"lockgate drift settings: fdr_alpha {cfg.fdr_alpha}, min_effect_size {cfg.min_effect_size} "
        f"(overrides {cfg.min_effect_sizes}), embedding_sample_size {cfg.embedding_sample_size}, "
        f"embedding_power {cfg.embedding_power}; "
        f"lockgate samples {sample_size or 'all'} rows per window"
    )
    print(f"warm-up (imports, MiniLM load, one small run of each side): {warm_up(policy):.1f} s")
    t0 = time.perf_counter()
    reference, currents = generate(args.rows)
    print(f"generated {args.rows:,} reference rows and {args.rows:,} current rows per scenario "
          f"in {time.perf_counter() - t0:.1f} s; reports under {out}")  # fmt: skip

    # The same job without the MiniLM stage: the preset computes no embedding drift at all, so this is the
    # like-for-like comparison of the columns both sides cover.
    no_emb = policy.model_copy(update={"drift": policy.drift.model_copy(update={"embeddings": False})})
    no_evidently = policy.model_copy(update={"drift": policy.drift.model_copy(update={"evidently_report": False})})
    ev_columns = policy.model_copy(update={"drift": policy.drift.model_copy(update={"evidently_embeddings": False})})
    policies = {
        "daily": policy,
        "cold": policy,
        "no-emb": no_emb,
        "no-evidently": no_evidently,
        "cold-no-evidently": no_evidently,
        "ev-columns": ev_columns,
        "cold-ev-columns": ev_columns,
    }
    cache_file = Path(os.environ["LOCKGATE_EMBEDDINGS_CACHE"])
    counter = CacheCounter()
    embed_log = logging.getLogger("lockgate.embeddings")
    embed_log.addHandler(counter)
    embed_log.setLevel(logging.INFO)
    embed_log.propagate = False  # counted, not printed
    modes = ("daily", "cold", "no-emb", "no-evidently", "cold-no-evidently", "ev-columns", "cold-ev-columns")
    totals = dict.fromkeys((*modes, "preset"), 0.0)
    hits = dict.fromkeys((*modes, "preset"), 0)
    false_pos = dict.fromkeys((*modes, "preset"), 0)
    injected_n = 0
    results = []
    for name in names:
        sc = SCENARIOS[name]
        current = currents[name]
        res: dict[str, dict] = {}
        for mode in modes:
            cache_file.unlink(missing_ok=True)
            if not mode.startswith("cold"):
                prime_cache_with_reference(reference, policy, sample_size)
            counter.encoded = counter.cached = 0
            t, cols, timings, sig_only = run_lockgate(
                reference, current, policies[mode], out / f"{name}-lockgate-{mode}", sample_size
            )
            res[mode] = {"s": t, "signals": signals_of(cols, 0), "cols": cols, "timings": timings,
                         "sig_only": sig_only, "encoded": counter.encoded, "cached": counter.cached}  # fmt: skip
        tp, cols_p, methods = run_preset(reference, current, out / f"{name}-evidently")
        res["preset"] = {"s": tp, "signals": signals_of(cols_p, 1)}
        for side, r in res.items():
            totals[side] += r["s"]
            if sc.injected:
                hits[side] += len(r["signals"] & sc.injected)
            else:
                false_pos[side] += len(r["signals"])
        injected_n += len(sc.injected)
        results.append((sc, res))

    print()
    print(
        f"{'scenario':<12} {'preset s':>9} {'daily s':>8} {'ratio':>6} {'cold s':>7} {'ratio':>6} "
        f"{'no-emb s':>9} {'ratio':>6} {'no-evid s':>9} {'ratio':>6} {'cold no-evid s':>14} {'ratio':>6} "
        f"{'ev-cols s':>9} {'ratio':>6} {'cold ev-cols s':>14} {'ratio':>6}  "
        "injected signals -> lockgate daily / preset"
    )
    for sc, res in results:
        tp, sig_l, sig_p = res["preset"]["s"], res["daily"]["signals"], res["preset"]["signals"]
        if sc.injected:
            verdict = (
                f"recall {len(sig_l & sc.injected)}/{len(sc.injected)} / {len(sig_p & sc.injected)}/{len(sc.injected)}"
            )
            extra_l, extra_p = sorted(sig_l - sc.injected), sorted(sig_p - sc.injected)
            verdict += f"; side effects flagged: {extra_l or '-'} / {extra_p or '-'}"
        else:
            verdict = f"false positives {len(sig_l)} {sorted(sig_l) or ''} / {len(sig_p)} {sorted(sig_p) or ''}"
        widths = zip(modes, (8, 7, 9, 9, 14, 9, 14), strict=True)
        cells = " ".join(f"{res[m]['s']:>{w}.2f} {tp / res[m]['s']:>5.1f}x" for m, w in widths)
        print(f"{sc.name:<12} {tp:>9.2f} {cells}  {verdict}")
    print()
    for sc, res in results:
        for mode in (m for m in modes if m != "no-emb"):
            r = res[mode]
            parts = ", ".join(f"{k} {v:.2f}" for k, v in r["timings"].items())
            print(
                f"{sc.name} {mode}: texts encoded {r['encoded']}, from the cache {r['cached']}; "
                f"lockgate stages (s): {parts}"
            )
        print(f"{sc.name}: lockgate drifted columns {sorted(res['daily']['cols']) or '-'}")
        if res["daily"]["sig_only"]:
            below = sorted(res["daily"]["sig_only"])
            print(f"  significant after BH but below their minimum effect (not flagged): {below}")
    print(f"Evidently preset methods at {args.rows:,} rows: {methods}")
    print()
    from lockgate.drift.analysis import embedded_rows
    from lockgate.drift.columns import EMBEDDING_SOURCES
    from lockgate.drift.stats import classifier_test_power

    n_emb = min(embedded_rows(cfg, list(EMBEDDING_SOURCES)), sample_size or args.rows, args.rows)
    gini = cfg.min_effect("prompt_embedding")
    power = classifier_test_power(n_emb, n_emb, gini, cfg.fdr_alpha)
    print(
        f"embedding test: {n_emb} rows embedded per window; its power at the minimum effect (AUC "
        f"{0.5 + gini / 2:.2f}) is {power:.0%} at level {cfg.fdr_alpha} before Benjamini-Hochberg "
        f"(half as many rows: {classifier_test_power(n_emb // 2, n_emb // 2, gini, cfg.fdr_alpha):.0%})"
    )
    targets = {"daily": 8.0, "cold": 5.0, "no-evidently": 8.0, "cold-no-evidently": 5.0, "ev-columns": 8.0,
               "cold-ev-columns": 5.0}  # fmt: skip
    configurations = {
        "the job as it runs by default": ("daily", "cold"),
        "with Evidently's page over the columns only (drift.evidently_embeddings: false)": (
            "ev-columns",
            "cold-ev-columns",
        ),
        "without Evidently's page (drift.evidently_report: false)": ("no-evidently", "cold-no-evidently"),
    }
    met = dict.fromkeys(modes, False)
    for mode in modes:
        ratio = totals["preset"] / totals[mode] if totals[mode] else float("nan")
        detection = hits[mode] >= hits["preset"] and false_pos[mode] <= false_pos["preset"]
        label = {
            "daily": "daily job",
            "cold": "cold job (no cache)",
            "no-emb": "job without embeddings",
            "no-evidently": "daily, no Evidently page",
            "cold-no-evidently": "cold, no Evidently page",
            "ev-columns": "daily, Evidently columns only",
            "cold-ev-columns": "cold, Evidently columns only",
        }
        target = targets.get(mode)
        verdict = f"target >= {target:.0f}x: {'MET' if ratio >= target and detection else 'NOT MET'}" if target else ""
        print(
            f"{label[mode]:<29} {totals[mode]:6.1f} s vs preset {totals['preset']:.1f} s: ratio {ratio:.1f}x; "
            f"recall {hits[mode]}/{injected_n} vs {hits['preset']}/{injected_n}; "
            f"false positives {false_pos[mode]} vs {false_pos['preset']}; {verdict}"
        )
        met[mode] = target is not None and ratio >= target and detection
    print("target: daily >= 8x and cold >= 5x the preset, recall >= preset's, false positives <= preset's")
    for configuration, (daily, cold) in configurations.items():
        print(f"  {configuration}: {'MET' if met[daily] and met[cold] else 'NOT MET'}")
    # the exit status follows the job as it runs by default
    return 0 if met["daily"] and met["cold"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))
    raise SystemExit(main())
