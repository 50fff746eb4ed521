"""Turning a judge's output into a score: pure functions over plain data.

Two ways, one result type:

* from a distribution over the rubric's label tokens (a local model's next-token
  probabilities, or an endpoint's top logprobs): the expected score, the
  probability of the most likely label (confidence), and the probability mass on
  the labels at all (a judge that puts little mass there wanted to say something else);
* from generated text: the first label found, as a whole word.

A judgment that cannot be scored is *unscored* with a reason, never zero: a
failed or garbled judgment says nothing about the answer it was asked about.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lockgate.judge.rubrics import Rubric

# Why a judgment is unscored; counted per reason in the report.
UNSCORED_REASONS = (
    "unparseable",  # the judge answered, but with no label
    "low_score_mass",  # a local judge put too little probability on the labels
    "http_error",  # the endpoint answered 4xx/5xx after retries
    "timeout",  # the endpoint did not answer in time after retries
    "connection_error",  # the endpoint could not be reached after retries
    "bad_response",  # the endpoint's JSON was not a chat completion
    "budget_exhausted",  # the per-run request budget was spent
    "backend_error",  # the local model raised (e.g. out of memory) on this sample
    "missing_input",  # the rubric needs a field the sample lacks
)


@dataclass(frozen=True)
class JudgeRequest:
    """One question to the judge: a sample under one rubric."""

    item_id: str
    rubric: Rubric
    prompt: str
    response: str
    context: str | None = None
    response_b: str | None = None

    def render(self, max_chars: int = 2000) -> str:
        return self.rubric.render(
            prompt=self.prompt,
            response=self.response,
            context=self.context,
            response_b=self.response_b,
            max_chars=max_chars,
        )


@dataclass
class Judgment:
    """The judge's answer to one request. `score` is None when unscored (see `error`)."""

    item_id: str
    rubric: str  # rubric id, e.g. "relevance.v1"
    score: float | None = None
    label: str | None = None
    confidence: float | None = None
    score_mass: float | None = None
    rationale: str | None = None
    error: str | None = None
    detail: str | None = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.score is not None

    @classmethod
    def unscored(cls, item_id: str, rubric: str, reason: str, detail: str | None = None, attempts: int = 1) -> Judgment:
        if reason not in UNSCORED_REASONS:
            raise ValueError(f"unknown unscored reason {reason!r}")
        return cls(item_id=item_id, rubric=rubric, error=reason, detail=detail, attempts=attempts)


def expected_score(label_probs: Mapping[str, float], rubric: Rubric) -> tuple[float, float, float, str]:
    """Expected score over the rubric's labels from (unnormalised) label probabilities.

    Returns (expected score, confidence = normalised probability of the top label,
    mass = total probability on the labels, top label). Raises ValueError when the
    labels carry no probability at all.
    """
    probs = {label: max(0.0, float(label_probs.get(label, 0.0))) for label in rubric.labels}
    mass = sum(probs.values())
    if not mass > 0 or not math.isfinite(mass):
        raise ValueError("no probability on any label")
    expected = sum(p * rubric.value_of(label) for label, p in probs.items()) / mass
    top = max(rubric.labels, key=lambda label: probs[label])
    return expected, probs[top] / mass, mass, top


def judgment_from_distribution(
    item_id: str, rubric: Rubric, label_probs: Mapping[str, float], min_mass: float = 0.0
) -> Judgment:
    """A judgment from label probabilities; unscored when the mass on labels is below `min_mass`."""
    try:
        score, confidence, mass, top = expected_score(label_probs, rubric)
    except ValueError:
        return Judgment.unscored(item_id, rubric.id, "low_score_mass", "no probability on any label")
    if mass < min_mass:
        return Judgment.unscored(item_id, rubric.id, "low_score_mass", f"mass {mass:.3g} < {min_mass:.3g}")
    return Judgment(item_id=item_id, rubric=rubric.id, score=score, label=top, confidence=confidence, score_mass=mass)


_SCORE_CUE_RE = re.compile(r"(?:score|rating|answer|verdict)\s*[:=]?\s*", re.IGNORECASE)
_TIE_RE = re.compile(r"\b(?:tie|equal(?:ly)?|both (?:are )?(?:equally )?(?:good|bad))\b", re.IGNORECASE)


def _label_pattern(label: str) -> re.Pattern[str]:
    # Whole-word match: "1" must not match inside "10" or "1.5", "A" not inside "An".
    # Single letters ("A"/"B") match only as capitals: "a" is an English word.
    flags = re.IGNORECASE if label.isalpha() and len(label) > 1 else 0
    return re.compile(rf"(?<![\w.]){re.escape(label)}(?![\w]|\.\d)", flags)


def parse_label(text: str, rubric: Rubric) -> str | None:
    """The label a judge wrote: after a cue like "Score:" if there is one, else the first one found."""
    if not text or not text.strip():
        return None
    cue = _SCORE_CUE_RE.search(text)
    candidates = [text[cue.end() :], text] if cue else [text]
    for chunk in candidates:
        best: tuple[int, str] | None = None
        for label in rubric.labels:
            m = _label_pattern(label).search(chunk)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), label)
        if best is not None:
            return best[1]
    return None


def judgment_from_text(item_id: str, rubric: Rubric, text: str | None) -> Judgment:
    """A judgment from generated text; unparseable text is unscored (never zero)."""
    raw = (text or "").strip()
    first_line = raw.split("\n", 1)[0]
    if rubric.kind == "pairwise" and _TIE_RE.search(first_line):
        mid = (rubric.min_value + rubric.max_value) / 2
        return Judgment(item_id=item_id, rubric=rubric.id, score=mid, label="tie", confidence=None)
    label = parse_label(raw, rubric)
    if label is None:
        return Judgment.unscored(item_id, rubric.id, "unparseable", raw[:200])
    rest = raw.split("\n", 1)[1].strip() if "\n" in raw else None
    return Judgment(
        item_id=item_id, rubric=rubric.id, score=rubric.value_of(label), label=label, rationale=rest or None
    )


def unscored_counts(judgments: Iterable[Judgment]) -> dict[str, int]:
    """Unscored judgments by reason."""
    return dict(Counter(j.error for j in judgments if j.error is not None))
