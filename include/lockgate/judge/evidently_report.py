"""Per-sample descriptors and their distributions, challenger against champion, as an Evidently report.

Our own page carries the evidence and the verdict; Evidently's TextEvals preset is
used where it fits: descriptor distributions per sample (lengths, word counts,
MiniLM scores, judge scores), current = challenger, reference = champion. Only
offline-safe descriptors are used (see the team notes: Sentiment and
OOVWordsPercentage download NLTK data at run time).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("prompt", "response")


def _frame(rows: Sequence[Mapping[str, Any]], numeric: Sequence[str]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=[*TEXT_COLUMNS, *numeric])
    for col in TEXT_COLUMNS:
        frame[col] = frame[col].fillna("").astype(str)
    for col in numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def _as_numerical(column: Any) -> Any:
    """Identity descriptor: exposes a precomputed score column as a descriptor."""
    from evidently.core.datasets import DatasetColumn
    from evidently.legacy.core import ColumnType

    return DatasetColumn(type=ColumnType.Numerical, data=column.data)


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
    from evidently.descriptors import CustomColumnDescriptor, SentenceCount, TextLength, WordCount
    from evidently.presets import TextEvals

    def dataset(rows: Sequence[Mapping[str, Any]]) -> Any:
        frame = _frame(rows, numeric)
        descriptors: list[Any] = [
            TextLength("response", alias="response length"),
            WordCount("response", alias="response words"),
            SentenceCount("response", alias="response sentences"),
            TextLength("prompt", alias="prompt length"),
        ]
        descriptors += [CustomColumnDescriptor(col, _as_numerical, alias=f"score: {col}") for col in numeric]
        definition = DataDefinition(text_columns=list(TEXT_COLUMNS), numerical_columns=list(numeric))
        return Dataset.from_pandas(frame, data_definition=definition, descriptors=descriptors)

    current_rows = challenger_rows or champion_rows
    reference = dataset(champion_rows) if challenger_rows and champion_rows else None
    snapshot = Report([TextEvals()]).run(dataset(current_rows), reference)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path
