"""Offline text descriptors and the feature table: values agree with the obvious per-text definitions."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from lockgate.drift.columns import CATALOG, build_features, selected_columns
from lockgate.drift.descriptors import describe_texts
from lockgate.metrics import DRIFT_COLUMNS
from lockgate.policy.schema import DEFAULT_REFUSAL_PHRASES

TEXTS = [
    "How do I reset my password?",
    "",
    "   spaced\tout\nwords  ",
    "Ünïcödé 日本語 テキスト 😀 ok",
    "see https://example.com/docs or www.example.org",
    '{"answer": "yes", "n": 2}',
    "[1, 2",
    "I'm sorry, but I can't help with that request.",
    "As an AI MODEL I cannot",
    "İstanbul I'M SORRY",  # lower-cases to a longer string: the per-text fallback
    "</script><script>alert(1)</script>",
]


def _non_letter(t: str) -> float:
    non_space = [c for c in t if not c.isspace()]
    return sum(not c.isalpha() for c in non_space) / len(non_space) if non_space else 0.0


def test_descriptors_match_per_text_definitions() -> None:
    d = describe_texts(TEXTS, DEFAULT_REFUSAL_PHRASES)
    assert d.length.tolist() == [float(len(t)) for t in TEXTS]
    assert d.words.tolist() == [float(len(t.split())) for t in TEXTS]
    assert d.non_letter_share.tolist() == pytest.approx([_non_letter(t) for t in TEXTS])
    assert d.has_link == [("://" in t or "www." in t.lower()) for t in TEXTS]
    assert d.valid_json == [False, False, False, False, False, True, False, False, False, False, False]
    assert d.refusal == [False] * 7 + [True, True, True, False]


def test_descriptors_keep_missing_texts_missing() -> None:
    d = describe_texts([None, "ok", None], ("sorry",))
    assert math.isnan(d.length[0]) and d.length[1] == 2 and math.isnan(d.words[2])
    assert d.has_link == [None, False, None]
    assert d.refusal == [None, False, None]


def test_descriptors_empty_input() -> None:
    d = describe_texts([], ())
    assert d.length.size == 0 and d.refusal == []


def test_json_scalars_are_not_documents() -> None:
    assert describe_texts(["42", "true", '"s"', json.dumps({"a": [1]})], ()).valid_json == [False, False, False, True]


def test_catalog_matches_settings() -> None:
    assert tuple(CATALOG) == DRIFT_COLUMNS
    assert [c.name for c in selected_columns(None, embeddings=False)] == [
        n for n in DRIFT_COLUMNS if not n.endswith("_embedding")
    ]
    assert [c.name for c in selected_columns(["status", "prompt_embedding"], embeddings=True)] == [
        "status",
        "prompt_embedding",
    ]


def test_build_features() -> None:
    logs = pd.DataFrame(
        {
            "status": ["ok", "error", "ok"],
            "latency_ms": [1000.0, 30.0, 500.0],
            "ttft_ms": [100.0, None, 50.0],
            "prompt_tokens": [10, 20, 30],
            "completion_tokens": [50, 0, 10],
            "model_version": ["1", "1", "2"],
            "prompt": ["hi there", "visit www.x.org", "{}"],
            "response": ["I'm sorry, no.", None, "fine"],
        }
    )
    f = build_features(logs, DEFAULT_REFUSAL_PHRASES)
    assert list(f.columns) == [n for n in DRIFT_COLUMNS if not n.endswith("_embedding")]
    assert f["tokens_per_s"].tolist()[0] == pytest.approx(50.0)
    assert np.isnan(f["tokens_per_s"].tolist()[1]) and np.isnan(f["ttft_ms"].tolist()[1])
    assert f["tokens_per_s"].tolist()[2] == pytest.approx(20.0)
    assert f["status"].tolist() == ["ok", "error", "ok"]
    assert f["prompt_has_link"].tolist() == ["no", "yes", "no"]
    assert f["prompt_valid_json"].tolist() == ["no", "no", "yes"]
    assert f["response_refusal"].tolist() == ["yes", None, "no"]
    assert np.isnan(f["response_length"].tolist()[1])
