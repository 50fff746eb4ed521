"""The refusal phrase detector, shared by the quality job (Python) and the live job (SQL).

Deterministic, so a refusal rate is a signal even when no LLM judge is trusted.
"""

from __future__ import annotations

import re

REFUSAL_PATTERN = (
    r"\b(?:I(?:'m| am) sorry,? but I (?:can(?:'|no)t|cannot|am unable|won't)"
    r"|I (?:can(?:'|no)t|cannot|won't|am unable to|am not able to) (?:help|assist|answer|do that|provide)"
    r"|as an AI(?: language)? model,? I (?:am unable|can(?:'|no)t|cannot)"
    r"|I(?:'m| am) (?:not able|unable) to (?:help|assist|answer)"
    r"|unfortunately,? I(?:'m| am)? (?:not able|unable|can(?:'|no)t)"
    r"|I (?:won't|will not) be able to"
    r"|(?:that|this) is not something I can (?:help|assist|answer))"
)
REFUSAL_RE = re.compile(REFUSAL_PATTERN, re.IGNORECASE)


def is_refusal(text: str | None) -> bool:
    return bool(text) and REFUSAL_RE.search(text or "") is not None


def postgres_refusal_pattern() -> str:
    """The same pattern for PostgreSQL's `~*` (its word boundary is `\\y`; `\\b` means backspace there)."""
    return REFUSAL_PATTERN.replace(r"\b", r"\y")
