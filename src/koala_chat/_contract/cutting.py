"""Cut a streamed reply at a stop sequence or a length, on our side.

Koala has no `stop` or `max_tokens` (docs/protocol.md, "Request"), so the OpenAI
client and server apply them to the text as it streams by. The result is the same
however the reply is split into pieces: the text before the stop sequence that
is completed first, cut to at most `max_chars` characters. Text that might be the
start of a stop sequence is held back until the next piece settles it, so nothing
past a stop sequence is ever emitted. Pure: no I/O.

The work is linear in the text fed, whatever the stop sequences: each one is
matched by a Knuth-Morris-Pratt automaton whose state (the longest end of the
text so far that starts the sequence) carries over from piece to piece, so no
character is looked at again when the next piece comes. While every automaton
is at rest, a regular expression skips ahead at C speed to the next character
that could start a sequence.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence

from .types import FinishReason

__all__ = ["ReplyCutter", "cut_reply"]


def _borders(sequence: str) -> list[int]:
    """Return the KMP failure table: the longest proper border of each prefix.

    `table[q - 1]` is the length of the longest proper prefix of `sequence[:q]`
    that is also its suffix.
    """
    table = [0] * len(sequence)
    border = 0
    for index in range(1, len(sequence)):
        while border and sequence[index] != sequence[border]:
            border = table[border - 1]
        if sequence[index] == sequence[border]:
            border += 1
        table[index] = border
    return table


class ReplyCutter:
    """Cut a reply fed in pieces.

    `steps` counts the automaton steps taken so far: it grows linearly with the
    text fed (at most twice its length per stop sequence), which tests check.

    Example:
        >>> cutter = ReplyCutter(stop=["END"])
        >>> cutter.feed("Hello E") + cutter.feed("ND world") + cutter.flush()
        'Hello '
        >>> cutter.done, cutter.finish_reason
        (True, 'stop')
    """

    __slots__ = (
        "_borders",
        "_emitted",
        "_firsts",
        "_front",
        "_held",
        "_held_size",
        "_max_chars",
        "_starts",
        "_states",
        "_stop",
        "done",
        "finish_reason",
        "steps",
        "stop_sequence",
    )

    def __init__(self, stop: Sequence[str] = (), max_chars: int | None = None) -> None:
        self._stop = tuple(dict.fromkeys(sequence for sequence in stop if sequence))
        self._borders = [_borders(sequence) for sequence in self._stop]
        self._firsts = frozenset(sequence[0] for sequence in self._stop)
        self._starts = re.compile(
            "[" + "".join(re.escape(char) for char in sorted(self._firsts)) + "]"
            if self._firsts
            else "(?!)"  # matches nowhere: there is no stop sequence
        )
        # Per stop sequence: how many of its first characters end the text so far.
        self._states = [0] * len(self._stop)
        self._max_chars = max_chars
        # The text held back, in pieces; the first one from `_front` on.
        self._held: deque[str] = deque()
        self._held_size = 0
        self._front = 0
        self._emitted = 0
        #: True once the cut was made: the rest of the reply can be dropped.
        self.done = False
        #: "length" when `max_chars` cut the reply, else "stop".
        self.finish_reason: FinishReason = "stop"
        #: The stop sequence that ended the reply, once one did (None: none).
        self.stop_sequence: str | None = None
        self.steps = 0

    def feed(self, text: str) -> str:
        """Return the part of the reply that can be emitted after `text` came."""
        if self.done or not text:
            return ""
        if not self._stop or (
            not self._held_size and not any(char in text for char in self._firsts)
        ):
            # Nothing held back and nothing that could start a stop sequence:
            # every automaton stays at rest (the usual piece, at C speed).
            return self._limit(text)
        found = self._scan(text)
        if found is not None:
            # The stop sequence ends `found` characters into `text` and starts
            # within the text held back or in `text` itself.
            end, size = found
            self.done = True
            self._held.append(text[:end])
            self._held_size += end
            return self._limit(self._release(self._held_size - size))
        self._held.append(text)
        self._held_size += len(text)
        return self._limit(self._release(self._held_size - max(self._states)))

    def flush(self) -> str:
        """Return the text held back, once the reply has ended."""
        text = self._release(self._held_size)
        if self.done:
            return ""
        self.done = True
        return self._limit(text)

    def _scan(self, text: str) -> tuple[int, int] | None:
        """Advance the automata over `text`.

        Returns where in `text` the first stop sequence to be completed ends and
        its length (the longest, of those ending there), or None.
        """
        stops, borders, states = self._stop, self._borders, self._states
        next_start = self._starts.search
        steps = 0
        index, size = 0, len(text)
        resting = not any(states)
        while index < size:
            if resting:
                # At rest, only a sequence's first character moves an automaton:
                # the regular expression skips to the next one at C speed.
                start = next_start(text, index)
                if start is None:
                    break
                index = start.start()
            char = text[index]
            completed = 0
            which = ""
            for number, sequence in enumerate(stops):
                state = states[number]
                while state and sequence[state] != char:
                    state = borders[number][state - 1]
                    steps += 1
                if sequence[state] == char:
                    state += 1
                    if state == len(sequence) and state > completed:
                        completed, which = state, sequence
                states[number] = state
                steps += 1
            index += 1
            resting = not any(states)
            if completed:
                # A model stops as soon as one sequence appears; of those
                # ending here, the longest started first.
                self.steps += steps
                self.stop_sequence = which
                return index, completed
        self.steps += steps
        return None

    def _release(self, size: int) -> str:
        """Remove and return the first `size` characters held back."""
        parts: list[str] = []
        held = self._held
        self._held_size -= size
        while size:
            piece, front = held[0], self._front
            available = len(piece) - front
            if available <= size:
                held.popleft()
                parts.append(piece[front:])
                self._front = 0
                size -= available
            else:
                # An offset rather than a copy of the rest: a long piece
                # released a little at a time is not copied each time.
                parts.append(piece[front : front + size])
                self._front = front + size
                size = 0
        return "".join(parts)

    def _limit(self, text: str) -> str:
        if self._max_chars is None:
            self._emitted += len(text)
            return text
        room = self._max_chars - self._emitted
        if len(text) > room:
            self.done = True
            self.finish_reason = "length"
            self._held.clear()
            self._held_size = self._front = 0
            text = text[:room]
        self._emitted += len(text)
        return text


def cut_reply(
    text: str, stop: Sequence[str] = (), max_chars: int | None = None
) -> tuple[str, FinishReason]:
    """Return a whole reply cut as `ReplyCutter` would, and the finish reason."""
    cutter = ReplyCutter(stop, max_chars)
    result = cutter.feed(text) + cutter.flush()
    return result, cutter.finish_reason
