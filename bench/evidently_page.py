"""Size of the drift job's Evidently page: one copy of Evidently's script for all frames, against one per frame.

Builds the page the drift job writes by default (`lockgate.drift.evidently_report`): Evidently's
column report over the operational metrics and one `EmbeddingsDrift` report per embedding set
(prompt and response), each in its own sandboxed frame, from synthetic windows (`--rows` rows of
the numeric columns, 384-dimensional embeddings of `--embedded-rows` rows per window). The same
sections are then rendered twice, alternating `--repeats` times in this process:

* lockgate: `render_evidently_page` as the job calls it (`share_scripts`: a large script that two
  or more frames carry whole is held once by the page, and each frame asks for it);
* baseline: the same page with `share_scripts` replaced by one that shares nothing (each frame
  keeps Evidently's whole script, as before e5b0da0).

Prints each page's size on disk and gzipped (what a browser or MLflow download moves when the
server compresses), their ratios, and the render time of each (median), side by side.

    .venv/bin/python bench/evidently_page.py [--rows 2000] [--embedded-rows 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

COLUMNS = ("latency_ms", "ttft_ms", "tokens_per_s", "prompt_tokens", "completion_tokens")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="rows per window of the numeric columns")
    parser.add_argument("--embedded-rows", type=int, default=300, help="embedded rows per window and set")
    parser.add_argument("--repeats", type=int, default=5, help="alternations of the two renderings")
    args = parser.parse_args()

    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import pandas as pd

    import lockgate.drift.evidently_report as evidently_report
    from lockgate.drift.evidently_report import EvidentlySection, SharedScripts, column_part, embedding_part

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({c: rng.gamma(2.0, 100.0, args.rows) for c in COLUMNS})
    current = pd.DataFrame({c: rng.gamma(2.0, 105.0, args.rows) for c in COLUMNS})
    min_effects = dict.fromkeys(COLUMNS, 0.1) | {"prompt_embedding": 0.1, "response_embedding": 0.1}
    embeddings = {
        name: (
            rng.normal(0.0, 1.0, (args.embedded_rows, 384)).astype(np.float32),
            rng.normal(0.05, 1.0, (args.embedded_rows, 384)).astype(np.float32),
        )
        for name in ("prompt_embedding", "response_embedding")
    }
    started = time.perf_counter()
    parts = [column_part(reference, current, list(COLUMNS), min_effects), embedding_part(embeddings, min_effects)]
    print(f"Evidently's reports: {sum(len(p.sections) for p in parts)} in {time.perf_counter() - started:.1f} s")

    shares = evidently_report.share_scripts

    def shares_nothing(sections: Sequence[EvidentlySection]) -> SharedScripts:
        return SharedScripts(list(sections), [])

    def render(sharing: bool) -> tuple[str, float]:
        evidently_report.share_scripts = shares if sharing else shares_nothing
        try:
            started = time.perf_counter()
            page = evidently_report.render_evidently_page("Evidently drift report", parts)
            return page, time.perf_counter() - started
        finally:
            evidently_report.share_scripts = shares

    times: dict[bool, list[float]] = {True: [], False: []}
    pages: dict[bool, str] = {}
    for _ in range(args.repeats):
        for sharing in (True, False):
            pages[sharing], seconds = render(sharing)
            times[sharing].append(seconds)

    def sizes(page: str) -> tuple[int, int]:
        raw = page.encode()
        return len(raw), len(gzip.compress(raw, 6))

    (ours, ours_gz), (theirs, theirs_gz) = sizes(pages[True]), sizes(pages[False])
    held = len(evidently_report.share_scripts([s for p in parts for s in p.sections]).scripts)
    print(f"scripts held once by the page: {held}")
    print(f"{'page':<40}{'bytes':>14}{'gzipped':>14}{'render (median)':>18}")
    for name, (size, gz), sharing in (
        ("lockgate: one copy for all frames", (ours, ours_gz), True),
        ("baseline: a copy per frame", (theirs, theirs_gz), False),
    ):
        print(f"{name:<40}{size:>14,}{gz:>14,}{statistics.median(times[sharing]) * 1e3:>15.0f} ms")
    print(
        f"ratio baseline / lockgate: {theirs / ours:.2f}x bytes, {theirs_gz / ours_gz:.2f}x gzipped, "
        f"{statistics.median(times[False]) / statistics.median(times[True]):.2f}x render time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
