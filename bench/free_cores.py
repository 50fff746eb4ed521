"""How often `lockgate.cpu.free_cores` sees load that is not there, and whether it sees load that is.

The judge and MiniLM size their torch threads with `free_cores()` once per step: a reading that
counts a task runnable for an instant (a kernel worker, a thread between two reads) runs that whole
step on fewer cores. This script calls the estimate many times in a process with torch loaded and
warmed up (as in a job), with one reading of the runnable count (lockgate before 6f7ccbe) and with
`lockgate.cpu.READINGS` readings (now), alternating, first on the machine as it is, then beside
`--busy` busy-looping processes, and prints how often each estimate fell short of the usable cores
and how often it counted the busy processes.

    .venv/bin/python bench/free_cores.py [--calls 300] [--busy 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def _spin() -> None:
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="calls of each estimate per phase")
    parser.add_argument("--busy", type=int, default=1, help="busy-looping processes in the second phase")
    args = parser.parse_args()

    import torch

    from lockgate.cpu import READINGS, free_cores, usable_cores

    cores = usable_cores()
    a = torch.randn(512, 512)
    for _ in range(10):  # torch's thread pool started and warm, as in a job
        a @ a

    def phase() -> dict[int, Counter[int]]:
        seen: dict[int, Counter[int]] = {1: Counter(), READINGS: Counter()}
        for _ in range(args.calls):
            for readings in seen:
                seen[readings][free_cores(readings)] += 1
            time.sleep(0.002)
        return seen

    def show(label: str, seen: dict[int, Counter[int]], expected: int) -> None:
        for readings, counts in seen.items():
            short = sum(n for free, n in counts.items() if free < expected)
            print(
                f"{label}: {readings} reading(s): free cores {dict(sorted(counts.items()))}; "
                f"below {expected} in {short} of {args.calls} calls ({short / args.calls:.1%})"
            )

    print(f"usable cores: {cores}; {args.calls} calls of each estimate per phase, 2 ms apart")
    show("as the machine is", phase(), cores)
    if args.busy:
        spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
        for p in spinners:
            p.start()
        time.sleep(0.5)
        try:
            busy = phase()
        finally:
            for p in spinners:
                p.terminate()
        expected = max(1, cores - args.busy)
        show(f"beside {args.busy} busy process(es)", busy, cores)
        for readings, counts in busy.items():
            counted = sum(n for free, n in counts.items() if free <= expected)
            print(f"  {readings} reading(s) counted the busy process(es) in {counted} of {args.calls} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
