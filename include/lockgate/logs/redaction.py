"""PII and secret redaction for any text that leaves the log store (reports, judge prompts).

Each category is a candidate regular expression plus, where a format carries one, a
check that tells the real thing from a look-alike: card numbers pass the Luhn check,
IBANs the ISO 13616 mod-97 check, IPv6 candidates Python's `ipaddress` parser. Phone
numbers need the shape of a phone (a leading `+`, a bracketed area code, a North
American 3-3-4 number or a national number with a trunk `0`), so latencies, years,
version strings (`3.11.7`), times (`12:30`) and ISO dates survive.

Order matters: secrets first (a JWT or key can contain digit runs), then e-mail,
IBAN and card numbers (long digit runs), IP addresses (before phones, whose
separators they share), phones last.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lockgate.policy.schema import RedactionConfig

Replacement = str | Callable[[re.Match[str]], str]

# Token characters of keys; a key is only replaced whole, never a piece of a longer token.
_KEY_START = r"(?<![A-Za-z0-9_-])"
_KEY_END = r"(?![A-Za-z0-9_-])"

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    # Three base64url segments, the header a JSON object ('{"' encodes as eyJ); unsigned tokens end in '.'.
    "jwt": re.compile(_KEY_START + r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*" + _KEY_END),
    # OpenAI (sk-…, sk-proj-…, sk-svcacct-…, sk-admin-…) and Anthropic (sk-ant-api03-…): '-' and '_' inside.
    "api_key": re.compile(
        _KEY_START
        + r"(?:sk-[A-Za-z0-9_-]{16,}"
        + r"|AIza[A-Za-z0-9_-]{35}"  # Google API keys
        + r"|xox[abposr]-[A-Za-z0-9-]{10,})"  # Slack tokens
        + _KEY_END
    ),
    # AWS access key ids: long-term (AKIA), temporary (ASIA) and the other documented prefixes.
    "aws_key": re.compile(
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|APKA)[A-Z0-9]{16}(?![A-Za-z0-9])"
    ),
    # GitHub classic (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained (github_pat_) tokens.
    "github_token": re.compile(_KEY_START + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})" + _KEY_END),
}

EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?![\w-])")

# Country code, check digits, then 11-30 alphanumerics, ungrouped or in groups of four.
IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")

# Card numbers in the groupings issuers print (one separator kind per number) or without separators:
# 4-4-4-4(-1..3) (Visa, Mastercard, Discover, 19-digit), 4-6-5 (Amex), 4-6-4 (Diners), 13-19 digits.
CARD_RE = re.compile(
    r"(?<![\d-])(?:"
    r"\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?"
    r"|\d{4}([ -])\d{6}\2\d{4,5}"
    r"|\d{13,19}"
    r")(?![\d])"
)

IPV4_RE = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\.?\d)")
# Candidates only (full, '::'-compressed, v4-mapped, zone ids); `ipaddress` decides.
IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?:%[\w.]+)?(?![\w:])"
)

_SEP = r"[ .-]"
PHONE_RE = re.compile(
    r"(?<![\w+.-])(?:"
    # International: + country code, then digit groups with optional separators and a bracketed group.
    r"\+\d{1,3}(?:" + _SEP + r"?\(?\d{1,5}\)?){1,6}"
    # A bracketed area code: (415) 555-2671, (020) 7946 0958.
    r"|\(\d{2,5}\)" + _SEP + r"?\d{2,4}(?:" + _SEP + r"?\d{2,5}){1,3}"
    # North American 3-3-4 with one separator kind, optionally after a leading 1.
    r"|(?:1([ .-]))?[2-9]\d{2}([ .-])[2-9]\d{2}\2\d{4}"
    # National numbers with a trunk 0: 020 7946 0958, 07946 095800, 06 12 34 56 78.
    r"|0\d{1,4}([ -])\d{2,4}(?:\3\d{2,4}){1,3}"
    # Unseparated: North American 10 or 11 digits, or a national number with its trunk 0.
    r"|1?[2-9]\d{2}[2-9]\d{6}"
    r"|0[1-9]\d{8,9}"
    r")(?![\w])"
)
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


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


def iban_valid(text: str) -> bool:
    """ISO 13616: the rearranged number, letters as 10..35, is 1 mod 97."""
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
    except ValueError:
        return False


def _keep_or(placeholder: str, valid: Callable[[str], bool]) -> Callable[[re.Match[str]], str]:
    def sub(match: re.Match[str]) -> str:
        return placeholder if valid(match.group(0)) else match.group(0)

    return sub


def _card_valid(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _ipv6_valid(text: str) -> bool:
    if not re.search(r"\d", text):  # '::' in prose or code (a::b, std::vector) is punctuation
        return False
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _phone_valid(text: str) -> bool:
    if DATE_RE.search(text):  # ISO dates and timestamps are not phone numbers
        return False
    digits = re.sub(r"\D", "", text)
    low = 8 if text.startswith("+") else 9
    return low <= len(digits) <= 15


@dataclass(frozen=True)
class _Step:
    """One category; `min_digits` and `needs` (any of these substrings) skip texts it cannot match."""

    name: str
    pattern: re.Pattern[str]
    repl: Replacement
    min_digits: int = 0
    needs: tuple[str, ...] = ()


# Cheap tests that rule a category out before its regular expression runs: most log text is
# prose without '@', long digit runs or key prefixes, and the drift job redacts every sampled row.
_SECRET_NEEDS: dict[str, tuple[str, ...]] = {
    "jwt": ("eyJ",),
    "api_key": ("sk-", "AIza", "xox"),
    "aws_key": ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "APKA"),
    "github_token": ("gh",),
}
_DIGIT_RE = re.compile(r"\d")


@dataclass
class Redactor:
    """Replaces configured PII and secrets with placeholders and counts what it replaced."""

    config: RedactionConfig = field(default_factory=RedactionConfig)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The user's own patterns first: they may be narrower than a built-in one and name it better.
        steps = [
            _Step(name, re.compile(pattern), f"[{name.upper()}]") for name, pattern in self.config.patterns.items()
        ]
        if self.config.secrets:
            steps += [
                _Step(name, pattern, f"[{name.upper()}]", needs=_SECRET_NEEDS[name])
                for name, pattern in SECRET_PATTERNS.items()
            ]
        if self.config.emails:
            steps.append(_Step("email", EMAIL_RE, "[EMAIL]", needs=("@",)))
        if self.config.ibans:
            steps.append(_Step("iban", IBAN_RE, _keep_or("[IBAN]", iban_valid), min_digits=2))
        if self.config.card_numbers:
            steps.append(_Step("card", CARD_RE, _keep_or("[CARD]", _card_valid), min_digits=13))
        if self.config.ip_addresses:
            steps.append(_Step("ip", IPV6_RE, _keep_or("[IP]", _ipv6_valid), min_digits=1, needs=(":",)))
            steps.append(_Step("ip", IPV4_RE, "[IP]", min_digits=4, needs=(".",)))
        if self.config.phone_numbers:
            steps.append(_Step("phone", PHONE_RE, _keep_or("[PHONE]", _phone_valid), min_digits=8))
        self._steps = steps

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        digits = len(_DIGIT_RE.findall(text))
        for step in self._steps:
            if digits < step.min_digits or (step.needs and not any(n in text for n in step.needs)):
                continue
            replaced = 0

            def sub(match: re.Match[str], repl: Replacement = step.repl) -> str:
                nonlocal replaced
                out = repl if isinstance(repl, str) else repl(match)
                if out != match.group(0):
                    replaced += 1
                return out

            text = step.pattern.sub(sub, text)
            if replaced:
                self.counts[step.name] = self.counts.get(step.name, 0) + replaced
                # A replacement removes digits: later categories see what is left.
                digits = len(_DIGIT_RE.findall(text))
        return text
