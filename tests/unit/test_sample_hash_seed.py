"""Reading the seed back from the catalog's rendering of the stored sample-hash column."""

from __future__ import annotations

import pytest

from lockgate.logs.schema import _parse_hash_seed


@pytest.mark.parametrize(
    ("expression", "seed"),
    [
        ("hashtextextended(request_id, (0)::bigint)", 0),
        ("hashtextextended(request_id, ('-5'::integer)::bigint)", -5),
        ("hashtextextended(request_id, '12345678901'::bigint)", 12345678901),
        ('hashtextextended("request_id", (7)::bigint)', 7),
        ("hashtextextended(other_id, (0)::bigint)", None),  # not the request_id column
        ("hashtext(request_id)", None),
        ("hashtextextended(request_id, (seed_col)::bigint)", None),
        ("hashtextextended(lower(request_id), (0)::bigint)", None),
    ],
)
def test_seed_of_the_generation_expression(expression: str, seed: int | None) -> None:
    assert _parse_hash_seed(expression, "request_id") == seed
