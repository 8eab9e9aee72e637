"""Cut a streamed reply at a stop sequence or a length, on our side.

Koala has no `stop` or `max_tokens` (docs/protocol.md, "Request"), so the OpenAI
client and server apply them to the text as it streams by. The result is the same
however the reply is split into pieces: the text before the stop sequence that
is completed first, cut to at most `max_chars` characters. Text that might be the
start of a stop sequence is held back until the next piece settles it, so nothing
past a stop sequence is ever emitted. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import FinishReason

__all__ = ["ReplyCutter", "cut_reply"]


class ReplyCutter:
    """Cut a reply fed in pieces.

    Example:
        >>> cutter = ReplyCutter(stop=["END"])
        >>> cutter.feed("Hello E") + cutter.feed("ND world") + cutter.flush()
        'Hello '
        >>> cutter.done, cutter.finish_reason
        (True, 'stop')
    """

    __slots__ = ("_emitted", "_max_chars", "_pending", "_stop", "done", "finish_reason")

    def __init__(self, stop: Sequence[str] = (), max_chars: int | None = None) -> None:
        self._stop = tuple(sequence for sequence in stop if sequence)
        self._max_chars = max_chars
        self._pending = ""
        self._emitted = 0
        #: True once the cut was made: the rest of the reply can be dropped.
        self.done = False
        #: "length" when `max_chars` cut the reply, else "stop".
        self.finish_reason: FinishReason = "stop"

    def feed(self, text: str) -> str:
        """Return the part of the reply that can be emitted after `text` came."""
        if self.done:
            return ""
        text = self._pending + text
        self._pending = ""
        if self._stop:
            # The stop sequence completed first wins (the longest, of those
            # ending at the same place): a model stops as soon as one appears,
            # so a longer one that would start earlier but end later never does.
            found = min(
                (
                    (index + len(s), -len(s), index)
                    for s in self._stop
                    if (index := text.find(s)) >= 0
                ),
                default=None,
            )
            if found is not None:
                self.done = True
                return self._limit(text[: found[2]])
            hold = self._partial_stop(text)
            if hold:
                self._pending = text[-hold:]
                text = text[:-hold]
        return self._limit(text)

    def flush(self) -> str:
        """Return the text held back, once the reply has ended."""
        text, self._pending = self._pending, ""
        if self.done:
            return ""
        self.done = True
        return self._limit(text)

    def _limit(self, text: str) -> str:
        if self._max_chars is None:
            self._emitted += len(text)
            return text
        room = self._max_chars - self._emitted
        if len(text) > room:
            self.done = True
            self.finish_reason = "length"
            self._pending = ""
            text = text[:room]
        self._emitted += len(text)
        return text

    def _partial_stop(self, text: str) -> int:
        """Return the length of the longest end of `text` that starts a stop."""
        longest = 0
        for sequence in self._stop:
            for size in range(min(len(sequence) - 1, len(text)), longest, -1):
                if text.endswith(sequence[:size]):
                    longest = size
                    break
        return longest


def cut_reply(
    text: str, stop: Sequence[str] = (), max_chars: int | None = None
) -> tuple[str, FinishReason]:
    """Return a whole reply cut as `ReplyCutter` would, and the finish reason."""
    cutter = ReplyCutter(stop, max_chars)
    result = cutter.feed(text) + cutter.flush()
    return result, cutter.finish_reason
