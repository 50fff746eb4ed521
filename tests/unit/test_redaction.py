from __future__ import annotations

import pytest

from lockgate.logs.redaction import Redactor, iban_valid, luhn_valid
from lockgate.policy.schema import RedactionConfig

# Test values only: documented examples (RFC 5737/3849 addresses, Ofcom/NANP fiction numbers,
# the ECBS sample IBANs, issuers' test card numbers) and random strings in the keys' formats.
OPENAI_PROJECT = "sk-proj-Ab3_dE4-fG5hI6jK7lM8nO9pQ0rS1tU2vW3xY4z_Zq-T3BlbkFJ"
OPENAI_LEGACY = "sk-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefGH"
OPENAI_SVC = "sk-svcacct-aB_cD-eF1gH2iJ3kL4mN5oP6qR7sT8uV9"
ANTHROPIC = "sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-dCbA_98765-AAAA"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_TEMP = "ASIAY34FZKBOKMUTVV7A"
GH_PAT = "ghp_1A2b3C4d5E6f7G8h9I0j1K2l3M4n5O6p7Q8r"
GH_OAUTH = "gho_16C7e42F292c6912E7710c838347Ae178B4a"
GH_SERVER = "ghs_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
GH_FINE = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

# (category, raw value, placeholder): every format the redactor must catch, inside a sentence.
POSITIVE = [
    ("openai project key", OPENAI_PROJECT, "[API_KEY]"),
    ("openai legacy key", OPENAI_LEGACY, "[API_KEY]"),
    ("openai service-account key", OPENAI_SVC, "[API_KEY]"),
    ("anthropic key", ANTHROPIC, "[API_KEY]"),
    ("aws access key id", AWS_ID, "[AWS_KEY]"),
    ("aws temporary key id", AWS_TEMP, "[AWS_KEY]"),
    ("github classic token", GH_PAT, "[GITHUB_TOKEN]"),
    ("github oauth token", GH_OAUTH, "[GITHUB_TOKEN]"),
    ("github server token", GH_SERVER, "[GITHUB_TOKEN]"),
    ("github fine-grained token", GH_FINE, "[GITHUB_TOKEN]"),
    ("jwt", JWT, "[JWT]"),
    ("email", "jane.doe+lg@example.co.uk", "[EMAIL]"),
    ("phone uk international", "+44 20 7946 0958", "[PHONE]"),
    ("phone us bracketed", "(415) 555-2671", "[PHONE]"),
    ("phone us dashed", "415-555-2671", "[PHONE]"),
    ("phone us dotted", "415.555.2671", "[PHONE]"),
    ("phone us unseparated", "4155552671", "[PHONE]"),
    ("phone e164", "+14155552671", "[PHONE]"),
    ("phone us with 1", "1-415-555-2671", "[PHONE]"),
    ("phone uk national", "020 7946 0958", "[PHONE]"),
    ("phone uk mobile unseparated", "07946095800", "[PHONE]"),
    ("phone france national", "06 12 34 56 78", "[PHONE]"),
    ("phone germany international", "+49 30 901820", "[PHONE]"),
    ("ipv4", "192.168.10.24", "[IP]"),
    ("ipv6 full", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[IP]"),
    ("ipv6 compressed", "2001:db8::1", "[IP]"),
    ("ipv6 loopback", "::1", "[IP]"),
    ("ipv6 v4-mapped", "::ffff:192.0.2.128", "[IP]"),
    ("ipv6 link-local with zone", "fe80::1ff:fe23:4567:890a%eth0", "[IP]"),
    ("iban grouped", "GB82 WEST 1234 5698 7654 32", "[IBAN]"),
    ("iban ungrouped", "DE89370400440532013000", "[IBAN]"),
    ("iban grouped german", "DE89 3704 0044 0532 0130 00", "[IBAN]"),
    ("card 4-4-4-4 spaces", "4111 1111 1111 1111", "[CARD]"),
    ("card 4-4-4-4 dashes", "5555-5555-5555-4444", "[CARD]"),
    ("card unseparated", "4012888888881881", "[CARD]"),
    ("card amex 4-6-5", "3782 822463 10005", "[CARD]"),
    ("card amex unseparated", "371449635398431", "[CARD]"),
    ("card diners 4-6-4", "3056 930902 5904", "[CARD]"),
    ("card 19 digits", "6011 1111 1111 1111 110", "[CARD]"),
]


@pytest.mark.parametrize(("category", "raw", "placeholder"), POSITIVE, ids=[p[0] for p in POSITIVE])
def test_every_format_is_replaced(category: str, raw: str, placeholder: str) -> None:
    text = f"Hi, it is {raw}, please help."
    assert Redactor()(text) == f"Hi, it is {placeholder}, please help.", category


def test_at_least_twenty_formats_are_covered() -> None:
    assert len(POSITIVE) >= 20
    assert {p[2] for p in POSITIVE} >= {"[API_KEY]", "[AWS_KEY]", "[GITHUB_TOKEN]", "[JWT]", "[EMAIL]"} | {
        "[PHONE]",
        "[IP]",
        "[IBAN]",
        "[CARD]",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe@example.com please", "mail me at [EMAIL] please"),
        ("card 4111 1111 1111 1111 was charged", "card [CARD] was charged"),
        ("card 4111-1111-1111-1111.", "card [CARD]."),
        ("call (555) 123-4567 now", "call [PHONE] now"),
        ("call +44 20 7946 0958", "call [PHONE]"),
        ("my ip is 192.168.10.24.", "my ip is [IP]."),
        ("Authorization: Bearer " + JWT, "Authorization: Bearer [JWT]"),
        ("key=" + OPENAI_PROJECT + ";", "key=[API_KEY];"),
        ("card 4111 1111 1111 1111 2026", "card [CARD] 2026"),
    ],
)
def test_default_redaction_in_context(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


NEGATIVE = [
    "order 1234567890123 shipped",  # 13 digits failing Luhn
    "at 2026-01-02 12:30 UTC",  # ISO date and a time
    "at 2026-01-02T12:30:45Z",  # ISO timestamp
    "the meeting is at 12:30 or 09:15:30",  # times
    "torch 2.13.0 works on python 3.11.7",  # version strings
    "latency p50 152 ms, p90 341 ms, p99 1204 ms",  # latencies
    "latencies 120 340 560 780 910 ms",  # a list of numbers
    "in 1999 and 2026 revenue was 1200000",  # years and amounts
    "epoch 1764589200 seconds",  # a unix timestamp
    "pi is 3.14159265358979",  # a long decimal
    "std::vector and a::b are C++",  # '::' that is not an address
    "the ratio is 1:2:3",  # colon-separated small numbers
    "sk-short is not a key",  # too short to be a key
    "task-1234-5678 done",  # a dashed id
    "GB82 WEST 1234 5698 7654 33",  # IBAN with a wrong check digit
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",  # a git sha
    "price $1,234.56 for 3 items",  # money
    "rate 0.05 and seed 42",  # small numbers
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_ordinary_text_is_left_alone(text: str) -> None:
    redactor = Redactor()
    assert redactor(text) == text
    assert redactor.counts == {}


def test_user_patterns_run_first_and_counts() -> None:
    redactor = Redactor(RedactionConfig(patterns={"api_key": r"sk-[A-Za-z0-9]{16,}"}))
    out = redactor("key sk-abcdefghijklmnopqrstuv and a@b.io, c@d.io")
    assert out == "key [API_KEY] and [EMAIL], [EMAIL]"
    assert redactor.counts == {"api_key": 1, "email": 2}


def test_counts_by_category() -> None:
    redactor = Redactor()
    redactor(f"{AWS_ID} {GH_PAT} 2001:db8::1 10.0.0.1 +14155552671 DE89370400440532013000")
    assert redactor.counts == {"aws_key": 1, "github_token": 1, "ip": 2, "phone": 1, "iban": 1}


def test_disabled_categories_are_left_alone() -> None:
    redactor = Redactor(
        RedactionConfig(emails=False, phone_numbers=False, secrets=False, ibans=False, ip_addresses=False)
    )
    text = f"a@b.io (555) 123-4567 {AWS_ID} DE89370400440532013000 ::1"
    assert redactor(text) == text


def test_none_passes_through() -> None:
    assert Redactor()(None) is None


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_iban_check() -> None:
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33")
    assert not iban_valid("GB82")


def test_invalid_user_pattern_names_the_key() -> None:
    with pytest.raises(ValueError, match="broken"):
        RedactionConfig(patterns={"broken": "("})
