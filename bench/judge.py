"""Judging samples: lockgate's batched label-distribution scoring against one-at-a-time generate-and-parse.

Same model, same judge prompts (the relevance rubric over production-shaped samples
from the synthetic traffic generator), same run, alternating the approaches:

* baseline: what MLflow's and Evidently's judges do with a local model: for each sample,
  `generate()` the answer (`--gen-tokens` new tokens, enough for "Score: 4"), then parse it;
* lockgate: `LocalJudge.judge()`: batches of `--batch-size` prompts, one forward pass each,
  the rubric's shared instruction prefix computed once and its KV cache reused, the score
  read from the next-token probabilities of the label tokens;
* lockgate without the shared prefix (plain left-padded batches), for transparency.

Prints samples/s of each and the ratio lockgate / baseline. Target: >= 10x on CPU with the
tiny model. The model is built from a config, so the same script measures a >= 100M-parameter
model on a GPU (`--hidden 1024 --layers 12 --heads 16` is 137M; bfloat16 on CUDA):

    .venv/bin/python bench/judge.py [--samples 64] [--batch-size 16] [--gen-tokens 8]
    .venv/bin/python bench/judge.py --hidden 1024 --layers 12 --heads 16 --samples 256 --batch-size 32

Exit status 1 when the ratio misses the target.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

TARGET = 10.0


def samples(n: int, seed: int) -> list:
    """Production-shaped judge requests: prompts, answers and contexts from the synthetic traffic."""
    from lockgate.judge.rubrics import load_rubric
    from lockgate.judge.scoring import JudgeRequest
    from lockgate.logs.synthetic import TrafficSpec, generate_traffic

    rubric = load_rubric("relevance")
    spec = TrafficSpec(reference_rows=n * 3, current_rows=0, seed=seed)
    out = []
    for row in generate_traffic(spec):
        if row["status"] == "ok" and row["response"] and row["prompt"]:
            out.append(JudgeRequest(row["request_id"], rubric, row["prompt"], row["response"], row["context"]))
        if len(out) == n:
            break
    return out


def timed(fn, repeats: int) -> list[float]:  # noqa: ANN001 - a bench helper
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=None, help="an existing HF causal LM directory (default: build one)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--samples", type=int, default=64, help="samples judged by the batched judge per repeat")
    parser.add_argument("--baseline-samples", type=int, default=32, help="samples the slow baseline judges per repeat")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--gen-tokens", type=int, default=8, help="tokens the baseline generates per sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from lockgate.judge.backends.local import LocalJudge
    from lockgate.models import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="lockgate-bench-judge-") as tmp:
        model_dir = (
            Path(args.model_dir)
            if args.model_dir
            else build_tiny_model(
                Path(tmp) / "judge", seed=args.seed, hidden=args.hidden, layers=args.layers, heads=args.heads
            )
        )
        judge = LocalJudge(model_dir, batch_size=args.batch_size, device=args.device)
        reqs = samples(args.samples, args.seed)
        base_reqs = reqs[: min(args.baseline_samples, args.samples)]
        tokens = [len(judge.tokenizer.encode(judge.prompt_text(r))) for r in reqs]
        print(
            f"model: {model_dir.name}, {judge.n_params:,} parameters, device {judge.device}, "
            f"dtype {next(judge.model.parameters()).dtype}, torch threads {torch.get_num_threads()}"
        )
        print(
            f"samples: {len(reqs)} (baseline {len(base_reqs)}), judge prompt tokens: median "
            f"{int(statistics.median(tokens))}, max {max(tokens)}; batch size {args.batch_size}; "
            f"baseline generates {args.gen_tokens} tokens per sample"
        )

        def sync() -> None:
            if judge.device == "cuda":
                torch.cuda.synchronize()

        def baseline() -> None:
            for r in base_reqs:
                judge.judge_by_generation(r, max_new_tokens=args.gen_tokens)
            sync()

        def batched() -> None:
            judge.prefix_cache = True
            judge.judge(reqs)
            sync()

        def padded() -> None:
            judge.prefix_cache = False
            judge.judge(reqs)
            sync()

        # Warm-up (first-call allocations, lazy inits) outside the timings.
        judge.judge_by_generation(base_reqs[0], max_new_tokens=args.gen_tokens)
        judge.judge(reqs[: args.batch_size])
        results: dict[str, list[float]] = {"baseline": [], "batched": [], "padded": []}
        for _ in range(args.repeats):  # alternate, so machine noise hits every approach alike
            results["baseline"] += timed(baseline, 1)
            results["batched"] += timed(batched, 1)
            results["padded"] += timed(padded, 1)
        per_s = {
            "baseline": len(base_reqs) / statistics.median(results["baseline"]),
            "batched": len(reqs) / statistics.median(results["batched"]),
            "padded": len(reqs) / statistics.median(results["padded"]),
        }
        scored = sum(j.scored for j in judge.judge(reqs))
        parsed = sum(judge.judge_by_generation(r, max_new_tokens=args.gen_tokens).scored for r in base_reqs[:16])
    print(f"{'approach':<46} {'median s':>9} {'samples/s':>10}")
    labels = {
        "baseline": "one at a time: generate + parse (baseline)",
        "padded": "lockgate: batched, label distribution",
        "batched": "lockgate: batched, shared prefix, label distr.",
    }
    for key in ("baseline", "padded", "batched"):
        print(f"{labels[key]:<46} {statistics.median(results[key]):>9.3f} {per_s[key]:>10.1f}")
    ratio = per_s["batched"] / per_s["baseline"]
    print(
        f"scored by lockgate: {scored}/{len(reqs)}; baseline answers that parsed: {parsed}/16 "
        "(random weights write gibberish: unparseable answers are unscored, never zero)"
    )
    print(
        f"ratio lockgate / baseline: {ratio:.1f}x (without shared prefix: "
        f"{per_s['padded'] / per_s['baseline']:.1f}x); target >= {TARGET:.0f}x: "
        f"{'met' if ratio >= TARGET else 'NOT met'}"
    )
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
