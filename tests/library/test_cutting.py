"""`ReplyCutter` and `cut_reply`: stop sequences and lengths cut on our side."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koala_chat.client import ReplyCutter, cut_reply


@pytest.mark.parametrize(
    ("pieces", "stop", "max_chars", "expected", "reason"),
    [
        (["Hello"], ["l"], None, "He", "stop"),
        (["ab", "cX", "Yd"], ["XY"], None, "abc", "stop"),
        (["abXY"], ["XY", "bX"], None, "a", "stop"),
        (["abc", "def"], [], 4, "abcd", "length"),
        (["abcd"], [], 4, "abcd", "stop"),
        (["abc", "dX"], ["X"], 4, "abcd", "stop"),
        (["abcdeX"], ["X"], 4, "abcd", "length"),
        (["tail X"], ["XY"], None, "tail X", "stop"),
        # A model stops at the first stop sequence it completes: "X" here, before
        # "YXX" could be; any split gives the same.
        (["YXX"], ["X", "YXX"], None, "Y", "stop"),
        (["YX", "X"], ["X", "YXX"], None, "Y", "stop"),
        (["aX"], ["X", "aX"], None, "", "stop"),
    ],
)
def test_reply_cutter(
    pieces: list[str],
    stop: list[str],
    max_chars: int | None,
    expected: str,
    reason: str,
) -> None:
    cutter = ReplyCutter(stop, max_chars)
    emitted = "".join(cutter.feed(piece) for piece in pieces) + cutter.flush()
    assert emitted == expected
    assert cutter.finish_reason == reason


@given(
    text=st.text(alphabet="abXY ", max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=8),
    stop=st.lists(st.text(alphabet="abXY", min_size=1, max_size=3), max_size=3),
    max_chars=st.none() | st.integers(0, 30),
)
def test_any_split_gives_the_whole_text_cut(
    text: str, cuts: list[int], stop: list[str], max_chars: int | None
) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    cutter = ReplyCutter(stop, max_chars)
    emitted = []
    for piece in pieces:
        emitted.append(cutter.feed(piece))
        # Never anything past a stop sequence, at any moment.
        so_far = "".join(emitted)
        assert not any(s in so_far for s in stop)
    emitted.append(cutter.flush())
    expected, reason = cut_reply(text, stop, max_chars)
    assert "".join(emitted) == expected
    assert cutter.finish_reason == reason
    # The reference: the text before the stop sequence completed first (the
    # longest of those ending at the same place), then the length limit.
    ends = [(i + len(s), -len(s), i) for s in stop if (i := text.find(s)) >= 0]
    reference = text[: min(ends)[2]] if ends else text
    if max_chars is not None and len(reference) > max_chars:
        assert (expected, reason) == (reference[:max_chars], "length")
    else:
        assert (expected, reason) == (reference, "stop")
