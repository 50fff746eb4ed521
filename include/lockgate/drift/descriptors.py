"""Text descriptors computed offline, vectorised over a whole column.

Evidently's descriptors that need data at run time fail here: Sentiment and
OOVWordsPercentage call `nltk.download`, SemanticSimilarity wants a hub model. The
descriptors lockgate compares need nothing but the text:

* `length`: characters;
* `words`: whitespace-separated words (as `str.split()` counts them);
* `non_letter_share`: share of the non-space characters that are not letters;
* `has_link`: contains `://` or `www.`;
* `valid_json`: the whole text parses as a JSON object or array;
* `refusal`: contains one of the configured refusal phrases (case-insensitive).

Per-text Python loops with regular expressions are slow on a large window; here all
texts are concatenated once and counted with numpy (code points classified by a 64K
lookup table) and substring searches run over one lower-cased buffer, about 15 times
faster (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

_SEP = "\x00"  # never inside a phrase we search for, so no match spans two texts
_BMP = 0x10000


@dataclass(frozen=True)
class TextDescriptors:
    """Descriptor arrays aligned with the input texts; a missing text (None) gives NaN / None."""

    length: npt.NDArray[np.float64]
    words: npt.NDArray[np.float64]
    non_letter_share: npt.NDArray[np.float64]
    has_link: list[bool | None]
    valid_json: list[bool | None]
    refusal: list[bool | None]


@lru_cache(maxsize=1)
def _char_tables() -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Letter and whitespace flags of every code point of the Basic Multilingual Plane."""
    chars = [chr(i) for i in range(_BMP)]
    alpha = np.fromiter((c.isalpha() for c in chars), dtype=np.bool_, count=_BMP)
    space = np.fromiter((c.isspace() for c in chars), dtype=np.bool_, count=_BMP)
    return alpha, space


def _classify(codepoints: npt.NDArray[np.uint32]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    alpha_t, space_t = _char_tables()
    clipped = np.minimum(codepoints, _BMP - 1)
    is_alpha = alpha_t[clipped]
    is_space = space_t[clipped]
    astral = codepoints >= _BMP
    if astral.any():  # emoji and rare scripts: few distinct code points, classified one by one
        for cp in np.unique(codepoints[astral]):
            mask = codepoints == cp
            ch = chr(int(cp))
            is_alpha[mask] = ch.isalpha()
            is_space[mask] = ch.isspace()
    return is_alpha, is_space


def _segment_sums(
    flags: npt.NDArray[np.bool_], starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    out = np.zeros(len(lengths), dtype=np.int64)
    nonempty = lengths > 0
    if nonempty.any():
        out[nonempty] = np.add.reduceat(flags.astype(np.int64), starts[nonempty])
    return out


def _char_counts(
    texts: list[str],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per text: characters, letters, whitespace characters, words."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    if lengths.sum() == 0:
        zeros = np.zeros(len(texts), dtype=np.int64)
        return lengths, zeros, zeros, zeros
    codepoints = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    is_alpha, is_space = _classify(codepoints)
    # A word starts at a non-space character whose predecessor is a space or the start of its text.
    prev_space = np.empty_like(is_space)
    prev_space[0] = True
    prev_space[1:] = is_space[:-1]
    prev_space[starts[lengths > 0]] = True
    word_starts = ~is_space & prev_space
    return (
        lengths,
        _segment_sums(is_alpha, starts, lengths),
        _segment_sums(is_space, starts, lengths),
        _segment_sums(word_starts, starts, lengths),
    )


def _contains_any(texts: list[str], needles: Sequence[str]) -> npt.NDArray[np.bool_]:
    """Which texts contain any needle (case-insensitive), by scanning one joined buffer."""
    found = np.zeros(len(texts), dtype=np.bool_)
    if not texts or not needles:
        return found
    joined = _SEP.join(texts)
    lowered = joined.lower()
    if len(lowered) != len(joined):
        # A few characters lower-case to two (e.g. "İ"): offsets would shift, so go text by text.
        low = [n.lower() for n in needles]
        return np.array([any(n in t.lower() for n in low) for t in texts], dtype=np.bool_)
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)  # exclusive end (+1 separator) of each text in the buffer
    for needle in needles:
        n = needle.lower()
        if not n:
            continue
        positions = []
        pos = lowered.find(n)
        while pos != -1:
            positions.append(pos)
            pos = lowered.find(n, pos + 1)
        if positions:
            found[np.searchsorted(ends, np.asarray(positions), side="right")] = True
    return found


def _is_json_document(text: str) -> bool:
    stripped = text.strip()
    # Only objects and arrays count: "42" or "true" parse as JSON but are not structured output.
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


def describe_texts(texts: Sequence[str | None], refusal_phrases: Sequence[str] = ()) -> TextDescriptors:
    """Compute every descriptor for a column of texts; None (e.g. a failed request's response) stays missing."""
    present = [t is not None for t in texts]
    clean = [t if isinstance(t, str) else "" for t in texts]
    lengths, letters, spaces, words = _char_counts(clean)
    non_space = lengths - spaces
    non_letter = np.divide(
        (non_space - letters).astype(np.float64),
        non_space.astype(np.float64),
        out=np.zeros(len(clean), dtype=np.float64),
        where=non_space > 0,
    )
    links = _contains_any(clean, ("://", "www."))
    refusals = _contains_any(clean, refusal_phrases)
    mask = np.asarray(present, dtype=np.bool_)
    nan = np.float64("nan")

    def numeric(values: npt.NDArray[np.int64] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.where(mask, values.astype(np.float64), nan)

    def flags(values: npt.ArrayLike) -> list[bool | None]:
        return [bool(v) if p else None for v, p in zip(np.asarray(values), present, strict=True)]

    return TextDescriptors(
        length=numeric(lengths),
        words=numeric(words),
        non_letter_share=numeric(non_letter),
        has_link=flags(links),
        valid_json=flags([_is_json_document(t) for t in clean]),
        refusal=flags(refusals),
    )
