"""PII redaction for any text that leaves the log store (reports, judge prompts).

Card numbers are only replaced when they pass the Luhn check, so order ids and
timestamps survive; phone numbers need 9+ digits with separators typical of phones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lockgate.settings import RedactionConfig

EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?![\w-])")
CARD_RE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w])")
IPV4_RE = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\.?\d)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_sub(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _phone_sub(match: re.Match[str]) -> str:
    if DATE_RE.search(match.group(0)):  # ISO dates and timestamps are not phone numbers
        return match.group(0)
    digits = re.sub(r"\D", "", match.group(0))
    return "[PHONE]" if 9 <= len(digits) <= 15 else match.group(0)


@dataclass
class Redactor:
    """Replaces configured PII with placeholders and counts what it replaced."""

    config: RedactionConfig = field(default_factory=RedactionConfig)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        steps: list[tuple[str, re.Pattern[str], str | Callable[[re.Match[str]], str]]] = []
        for name, pattern in self.config.patterns.items():
            steps.append((name, re.compile(pattern), f"[{name.upper()}]"))
        if self.config.emails:
            steps.append(("email", EMAIL_RE, "[EMAIL]"))
        if self.config.card_numbers:
            steps.append(("card", CARD_RE, _card_sub))
        if self.config.ip_addresses:
            steps.append(("ip", IPV4_RE, "[IP]"))
        if self.config.phone_numbers:
            steps.append(("phone", PHONE_RE, _phone_sub))
        self._steps = steps

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        for name, pattern, repl in self._steps:
            replaced = 0

            def sub(match: re.Match[str], repl: str | Callable[[re.Match[str]], str] = repl) -> str:
                nonlocal replaced
                out = repl if isinstance(repl, str) else repl(match)
                if out != match.group(0):
                    replaced += 1
                return out

            text = pattern.sub(sub, text)
            if replaced:
                self.counts[name] = self.counts.get(name, 0) + replaced
        return text
