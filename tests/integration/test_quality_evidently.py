"""The quality job's Evidently report (real Evidently, small frames): the descriptors and the
precomputed scores, challenger (current) against champion (reference), through the public API."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.judge.evidently_report import DESCRIPTORS, score_column, write_evidently_report

pytestmark = pytest.mark.slow


def _rows(n: int, shift: float) -> list[dict]:
    return [
        {
            "prompt": f"question {i} about the weather",
            "response": "An answer. It has two sentences." * (i % 3 + 1),
            "embedding_relevance": 0.5 + shift + (i % 5) / 20,
            "judge_helpfulness": None if i % 7 == 0 else float(1 + i % 5),
        }
        for i in range(n)
    ]


def test_descriptors_and_scores_of_both_versions(tmp_path: Path) -> None:
    numeric = ["embedding_relevance", "judge_helpfulness"]
    path = write_evidently_report(_rows(40, 0.1), _rows(30, 0.0), numeric, tmp_path / "evidently.html")
    assert path == tmp_path / "evidently.html"
    html = path.read_text()
    assert "drawDashboard" in html  # Evidently's own page
    for name in [*DESCRIPTORS, *(score_column(m) for m in numeric)]:
        assert name in html, name


def test_one_version_alone_and_nothing_at_all(tmp_path: Path) -> None:
    assert write_evidently_report([], [], ["embedding_relevance"], tmp_path / "none.html") is None
    path = write_evidently_report([], _rows(20, 0.0), ["embedding_relevance"], tmp_path / "one.html")
    assert path is not None and score_column("embedding_relevance") in path.read_text()


def test_no_logged_text_reaches_evidently_page(tmp_path: Path) -> None:
    """Evidently writes its data into a `<script>` unescaped: only numbers of the texts may go there."""
    hostile = "</script><script>window.pwned=1</script> reach me at alice@example.com"
    rows = [
        {"prompt": f"prompt-{i} {hostile}", "response": f"answer-{i} {hostile}. Two.", "embedding_relevance": i / 40}
        for i in range(30)
    ]
    path = write_evidently_report(rows, rows[:20], ["embedding_relevance"], tmp_path / "evidently.html")
    assert path is not None
    html = path.read_text()
    assert DESCRIPTORS[0] in html  # the descriptors of the texts are there
    for text in ("window.pwned", "alice@example.com", "prompt-1 ", "answer-1 "):
        assert text not in html, text
