"""Per-sample descriptors and their distributions, challenger against champion, as an Evidently report.

Our own page carries the evidence and the verdict; Evidently's TextEvals preset is
used where it fits: descriptor distributions per sample (lengths, word counts,
MiniLM scores, judge scores), current = challenger, reference = champion. Only
offline-safe descriptors are used (see the team notes: Sentiment and
OOVWordsPercentage download NLTK data at run time). The precomputed scores are plain
numerical columns named `score: <metric>` that TextEvals summarises beside the descriptors
(its `columns`), so only Evidently's public API is used (`Report`, `Dataset`, `DataDefinition`,
`evidently.descriptors`, `evidently.presets`, the snapshot's `save_html`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("prompt", "response")


DESCRIPTORS = ("response length", "response words", "response sentences", "prompt length")


def score_column(metric: str) -> str:
    """The report's name of a precomputed score."""
    return f"score: {metric}"


def _frame(rows: Sequence[Mapping[str, Any]], numeric: Sequence[str]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=[*TEXT_COLUMNS, *numeric])
    for col in TEXT_COLUMNS:
        frame[col] = frame[col].fillna("").astype(str)
    for col in numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame.rename(columns={col: score_column(col) for col in numeric})


def write_evidently_report(
    challenger_rows: Sequence[Mapping[str, Any]],
    champion_rows: Sequence[Mapping[str, Any]],
    numeric: Sequence[str],
    path: Path,
) -> Path | None:
    """Write the report to `path`; None (and a log line) when there is nothing to compare."""
    if not challenger_rows and not champion_rows:
        return None
    from evidently import DataDefinition, Dataset, Report
    from evidently.descriptors import SentenceCount, TextLength, WordCount
    from evidently.presets import TextEvals

    scores = [score_column(col) for col in numeric]

    def dataset(rows: Sequence[Mapping[str, Any]]) -> Any:
        descriptors: list[Any] = [
            TextLength("response", alias=DESCRIPTORS[0]),
            WordCount("response", alias=DESCRIPTORS[1]),
            SentenceCount("response", alias=DESCRIPTORS[2]),
            TextLength("prompt", alias=DESCRIPTORS[3]),
        ]
        definition = DataDefinition(text_columns=list(TEXT_COLUMNS), numerical_columns=scores)
        return Dataset.from_pandas(_frame(rows, numeric), data_definition=definition, descriptors=descriptors)

    current_rows = challenger_rows or champion_rows
    reference = dataset(champion_rows) if challenger_rows and champion_rows else None
    snapshot = Report([TextEvals(columns=[*DESCRIPTORS, *scores])]).run(dataset(current_rows), reference)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path
