from __future__ import annotations

import pytest

from lockgate.logs.redaction import Redactor, luhn_valid
from lockgate.settings import RedactionConfig


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe@example.com please", "mail me at [EMAIL] please"),
        ("card 4111 1111 1111 1111 was charged", "card [CARD] was charged"),
        ("card 4111-1111-1111-1111.", "card [CARD]."),
        ("call (555) 123-4567 now", "call [PHONE] now"),
        ("call +44 20 7946 0958", "call [PHONE]"),
        ("my ip is 192.168.10.24.", "my ip is [IP]."),
        # Not PII: a 13-digit order id that fails Luhn, an ISO timestamp, a version number.
        ("order 1234567890123 shipped", "order 1234567890123 shipped"),
        ("at 2026-01-02 12:30 UTC", "at 2026-01-02 12:30 UTC"),
        ("torch 2.13.0 works", "torch 2.13.0 works"),
    ],
)
def test_default_redaction(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


def test_user_patterns_and_counts() -> None:
    redactor = Redactor(RedactionConfig(patterns={"api_key": r"sk-[A-Za-z0-9]{16,}"}))
    out = redactor("key sk-abcdefghijklmnopqrstuv and a@b.io, c@d.io")
    assert out == "key [API_KEY] and [EMAIL], [EMAIL]"
    assert redactor.counts == {"api_key": 1, "email": 2}


def test_disabled_categories_are_left_alone() -> None:
    redactor = Redactor(RedactionConfig(emails=False, phone_numbers=False))
    assert redactor("a@b.io (555) 123-4567") == "a@b.io (555) 123-4567"


def test_none_passes_through() -> None:
    assert Redactor()(None) is None


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_invalid_user_pattern_names_the_key() -> None:
    with pytest.raises(ValueError, match="broken"):
        RedactionConfig(patterns={"broken": "("})
