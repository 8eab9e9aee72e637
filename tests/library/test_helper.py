"""get_random_string: the Visitor-ID of every request (docs/protocol.md, "Request")."""

from __future__ import annotations

import collections
import string

import pytest

from koala_chat import get_random_string

ALPHABET = set(string.ascii_lowercase + string.digits)


@pytest.mark.parametrize("length", [0, 1, 10, 20, 64])
def test_length_and_alphabet(length: int) -> None:
    value = get_random_string(length)
    assert len(value) == length
    assert set(value) <= ALPHABET


def test_default_length_is_ten() -> None:
    assert len(get_random_string()) == 10


def test_every_character_occurs_and_none_dominates() -> None:
    # 36 characters, 72,000 draws: 2,000 expected each. A bias as small as
    # taking a random byte modulo 36 (+3.3% for some characters) stays within
    # these bounds, a missing or doubled character does not.
    counts = collections.Counter("".join(get_random_string(20) for _ in range(3600)))
    assert set(counts) == ALPHABET
    assert min(counts.values()) > 1700
    assert max(counts.values()) < 2300


def test_values_differ() -> None:
    assert len({get_random_string(20) for _ in range(1000)}) == 1000
