"""SIGTERM ends a command the way Ctrl-C does, then exits with 143.

Python's default answer to SIGTERM is to die at once: a reply streamed to a
terminal or a pipe is left without its final newline and its response is not
closed. While `handle_sigterm()` is active, SIGTERM instead does what Ctrl-C
does at that moment: inside `asyncio.run` it cancels the running task (the
reply is closed, its line ended), elsewhere it raises `KeyboardInterrupt`.
`terminated()` then tells the two apart, so that the process exits with
128 + SIGTERM, as a shell reports a process that SIGTERM killed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["handle_sigterm", "terminated"]

_received = threading.Event()


def terminated() -> bool:
    """Tell whether SIGTERM arrived while `handle_sigterm()` was active."""
    return _received.is_set()


@contextmanager
def handle_sigterm() -> Iterator[None]:
    """Treat SIGTERM as Ctrl-C within the block (main thread only; elsewhere a
    signal handler cannot be set and nothing changes)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _received.set()
    # `asyncio.Runner` puts its own SIGINT handler in place while it runs: it
    # cancels the main task instead of raising inside the event loop.
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt
