"""Fidelity of lockgate's benchmark harness: its numbers against an independent minimal timing loop.

The harness (`lockgate.benchmark.harness.Session.measure`, the per-request code `run_plan`
drives in the `lockgate_benchmark` DAG) and a minimal manual prefill + decode loop written
here, independently (CUDA events on a GPU, the same clock as the harness on a CPU), time
the same model on the same prompt token ids. They take turns request by request (H M, then
M H) so that drift of the machine hits both. Printed: TTFT, TPOT and end-to-end p50 and
decode tokens/s of each, their ratio, and the coefficient of variation of each one's
per-block p50s (repeated runs).

Targets: the two agree within 5%; on a GPU, repeated runs have a CV of at most 3%. Exit
status 0 when the targets are met.

On CPU it builds the tiny model into a temporary directory:

    .venv/bin/python bench/benchmark_fidelity.py

On a GPU machine, a model of over 100M parameters built from a config, with MBU and MFU:

    .venv/bin/python bench/benchmark_fidelity.py --device cuda --dtype bfloat16 \\
        --hidden 1024 --layers 12 --heads 16 --prompt-len 512 --new-tokens 128 --blocks 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lockgate.benchmark import hardware
from lockgate.benchmark.environment import DeviceChoice, choose_device, cpu_model
from lockgate.benchmark.harness import Plan, Session, load_model
from lockgate.benchmark.stats import coefficient_of_variation
from lockgate.benchmark.workload import PromptSet, synthetic_lengths
from lockgate.devtools.tiny_model import build_tiny_model


def minimal_request(model, ids, new_tokens, cuda, clock):
    """The simplest correct KV-cache greedy loop for one batch of prompt ids; (ttft_ms, e2e_ms)."""
    with torch.inference_mode():
        if cuda:
            start, first, end = (torch.cuda.Event(enable_timing=True) for _ in range(3))
            start.record()
        else:
            t0 = clock()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        if cuda:
            first.record()
        else:
            t1 = clock()
        past = out.past_key_values
        for _ in range(new_tokens - 1):
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            token = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        if cuda:
            end.record()
            end.synchronize()
            return start.elapsed_time(first), start.elapsed_time(end)
        t2 = clock()
    return (t1 - t0) * 1e3, (t2 - t0) * 1e3


def summarise(ttft, e2e, batch, new_tokens):
    ttft, e2e = np.asarray(ttft), np.asarray(e2e)
    tpot = (e2e - ttft) / (new_tokens - 1)
    return {
        "ttft_ms_p50": float(np.median(ttft)),
        "tpot_ms_p50": float(np.median(tpot)),
        "e2e_ms_p50": float(np.median(e2e)),
        "decode_tokens_per_s": float(batch * (new_tokens - 1) * len(e2e) / ((e2e - ttft).sum() / 1e3)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16", help="GPU dtype")
    p.add_argument("--model-dir", default=None, help="an existing Hugging Face causal LM directory (else built)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=None, help="fixed prompt length (default: synthetic lengths)")
    p.add_argument("--prompts", type=int, default=16, help="prompts per block")
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--blocks", type=int, default=8, help="alternating blocks of each timer")
    p.add_argument("--reps", type=int, default=2, help="repetitions of the prompts inside one block")
    p.add_argument("--warmups", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    p.add_argument("--cpu-clock", choices=["wall", "thread_cpu"], default="wall")
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--max-cv", type=float, default=0.03)
    args = p.parse_args(argv)

    if args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()):
        device = DeviceChoice("cpu", cpu_model(), "float32")
    else:
        device = choose_device(args.dtype, require_gpu=True)
    if device.kind == "cpu":
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="lockgate-fidelity-") as tmp:
        path = (
            Path(args.model_dir)
            if args.model_dir
            else build_tiny_model(Path(tmp) / "model", seed=0, hidden=args.hidden, layers=args.layers, heads=args.heads)
        )
        m = load_model("challenger", "fidelity", path, device)
        lengths = [args.prompt_len] * args.prompts if args.prompt_len else synthetic_lengths(args.prompts, seed=0)
        if args.batch_size > 1 and not args.prompt_len:
            # Equal lengths inside a batch: neither loop pads, so both do the same work.
            lengths = sorted(lengths)
        if m.max_positions:
            lengths = [min(n, m.max_positions - args.new_tokens) for n in lengths]
        prompts = PromptSet(tuple(lengths), "synthetic", "fidelity")
        plan = Plan(
            batch_sizes=(args.batch_size,),
            new_tokens=args.new_tokens,
            repetitions=args.reps,
            warmups=args.warmups,
            seed=0,
            cpu_threads=args.threads if device.kind == "cpu" else None,
            cpu_clock=args.cpu_clock,
        )
        clock = time.thread_time if args.cpu_clock == "thread_cpu" else time.perf_counter
        cuda = device.kind == "cuda"
        # The harness's own measurement (Session.measure: the code run_plan drives in the DAG) and the
        # minimal loop take turns on the same request, H M then M H, so drift of the machine hits both.
        session = Session([m], prompts, plan, device)
        session.setup_runners()
        requests = session.requests[args.batch_size]
        minimal_ids = [session.inputs(args.batch_size, req).ids for req in requests]
        with torch.inference_mode():
            for w in range(args.warmups):
                session.measure("challenger", "eager", args.batch_size, requests[w % len(requests)], -1)
                minimal_request(m.model, minimal_ids[w % len(requests)], args.new_tokens, cuda, clock)
            harness_blocks, minimal_blocks = [], []
            h_ttft, h_e2e, m_ttft, m_e2e, records = [], [], [], [], []
            for block in range(args.blocks):
                bt, be, mt, me = [], [], [], []
                for rep in range(args.reps):
                    for req, ids in zip(requests, minimal_ids, strict=True):
                        first = "harness" if (block + rep + req.index) % 2 == 0 else "minimal"
                        for who in (first, "minimal" if first == "harness" else "harness"):
                            if who == "harness":
                                r = session.measure("challenger", "eager", args.batch_size, req, rep)
                                records.append(r)
                                bt.append(r.ttft_ms)
                                be.append(r.e2e_ms)
                            else:
                                t, e = minimal_request(m.model, ids, args.new_tokens, cuda, clock)
                                mt.append(t)
                                me.append(e)
                harness_blocks.append(summarise(bt, be, args.batch_size, args.new_tokens))
                minimal_blocks.append(summarise(mt, me, args.batch_size, args.new_tokens))
                h_ttft += bt
                h_e2e += be
                m_ttft += mt
                m_e2e += me

    h = summarise(h_ttft, h_e2e, args.batch_size, args.new_tokens)
    mn = summarise(m_ttft, m_e2e, args.batch_size, args.new_tokens)
    clock_name = "CUDA events" if device.kind == "cuda" else f"{clock.__name__} ({args.cpu_clock})"
    print(f"device: {device.kind} {device.name}, dtype {device.dtype}, clock {clock_name}, "
          f"torch threads {torch.get_num_threads() if device.kind == 'cpu' else '-'}")  # fmt: skip
    layers, hidden = (m.shape.layers, m.shape.hidden) if m.shape else ("?", "?")
    print(f"model: {m.config.get('model_type')} {layers} layers x {hidden} hidden, {m.n_params:,} parameters")
    print(f"workload: {len(lengths)} prompts (length p50 {statistics.median(lengths):g}, max {max(lengths)}), "
          f"batch size {args.batch_size}, {args.new_tokens} new tokens, {args.blocks} alternating blocks x "
          f"{args.reps} repetitions; {len(h_ttft)} requests per timer")  # fmt: skip
    # Paired ratios: harness / minimal loop of the same prompt, measured back to back; bootstrap over pairs.
    ht, he, mt, me = (np.asarray(x) for x in (h_ttft, h_e2e, m_ttft, m_e2e))
    k = args.new_tokens - 1
    pairs = {"ttft_ms_p50": ht / mt, "tpot_ms_p50": ((he - ht) / k) / ((me - mt) / k), "e2e_ms_p50": he / me}
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ht), size=(2000, len(ht)))
    print(f"{'metric':22s} {'harness':>12s} {'minimal loop':>13s} {'ratio':>8s} {'paired ratio [95% CI]':>26s}  target")
    agree = True
    for name in ("ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50", "decode_tokens_per_s"):
        ratio = h[name] / mn[name]
        if name in pairs:
            paired = float(np.median(pairs[name]))
            lo, hi = np.percentile(np.median(pairs[name][idx], axis=1), [2.5, 97.5])
            shown = f"{paired:.4f} [{lo:.4f}, {hi:.4f}]"
        else:
            paired, shown = ratio, "(aggregate)"
        # The paired ratio is the estimate: each pair shares the prompt and the moment.
        ok = abs(paired - 1) <= args.tolerance
        agree &= ok
        print(f"{name:22s} {h[name]:12.4f} {mn[name]:13.4f} {ratio:8.4f} {shown:>26s}  within {args.tolerance:.0%}: "
              f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    cvs = {
        k: coefficient_of_variation([b[k] for b in harness_blocks])
        for k in ("ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50")
    }
    mcvs = {k: coefficient_of_variation([b[k] for b in minimal_blocks]) for k in cvs}
    steady = all(v <= args.max_cv for v in cvs.values())
    scope = "target on GPU" if device.kind == "cuda" else "target applies on GPU; reported on CPU"
    print("repeated runs, CV of per-block p50 (harness | minimal loop): "
          + ", ".join(f"{k.split('_')[0]} {cvs[k]:.3f} | {mcvs[k]:.3f}" for k in cvs)
          + f"  ({scope}: <= {args.max_cv:.0%}: {'PASS' if steady else 'FAIL'})")  # fmt: skip

    shape = m.shape
    if shape is not None:
        dtype_bytes = hardware.DTYPE_BYTES[device.dtype]
        flops = sum(hardware.prefill_flops(shape, r.batch_size, r.padded_len) for r in records)
        nbytes = sum(hardware.decode_bytes(shape, r.batch_size, r.padded_len, r.new_tokens - 1, dtype_bytes)
                     for r in records)  # fmt: skip
        prefill_s = sum(r.ttft_ms for r in records) / 1e3
        decode_s = sum(r.e2e_ms - r.ttft_ms for r in records) / 1e3
        spec = hardware.lookup_gpu(device.name) if device.kind == "cuda" else None
        print(f"achieved: prefill {flops / prefill_s / 1e9:.2f} GFLOP/s, decode {nbytes / decode_s / 1e9:.3f} GB/s")
        if spec is not None:
            mfu = hardware.utilisation(flops, prefill_s, spec.peak_flops(device.dtype))
            mbu = hardware.utilisation(nbytes, decode_s, spec.peak_bytes_per_s)
            print(f"{spec.name}: MFU prefill {mfu:.3%}, MBU decode {mbu:.3%} "
                  f"(peaks {spec.tflops.get(device.dtype)} TFLOP/s, {spec.memory_bandwidth_gbs:g} GB/s)")  # fmt: skip
        else:
            print(
                "MFU / MBU: n/a"
                + (" on CPU (no peak figures)" if device.kind == "cpu" else f" ({device.name} unknown)")
            )
    ok = agree and (steady or device.kind != "cuda")
    print("RESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
