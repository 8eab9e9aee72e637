"""How a reply reaches the terminal or a pipe: text or JSON lines, a spinner.

`Output` writes each streamed value as it arrives (flushing, so a pipe sees it
at once) or keeps them for the end (`--no-stream`). `Spinner` turns on stderr
until the first piece, only when a person is watching (stdout and stderr are
terminals); a pipe or a file gets nothing extra.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from ..messages import JSONValue, text_of

if TYPE_CHECKING:
    import asyncio

__all__ = ["Output", "Spinner", "is_terminal"]


def is_terminal(stream: TextIO | None) -> bool:
    """Tell whether `stream` is an interactive terminal (False if unknown)."""
    if stream is None:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        # A closed or unusual stream is not a terminal.
        return False


class Output:
    """Writes a reply's values to stdout as text or as one JSON value per line."""

    def __init__(
        self,
        *,
        json_lines: bool = False,
        stream: bool = True,
        out: TextIO | None = None,
    ) -> None:
        self.json_lines = json_lines
        self.stream = stream
        self.out = out if out is not None else sys.stdout
        self._kept: list[str] = []
        self._open_line = False

    def emit(self, value: JSONValue) -> None:
        """Write one streamed value (or keep it, without streaming)."""
        if self.json_lines:
            import json  # not at startup: `koala --help` needs no JSON

            text = json.dumps(value, ensure_ascii=False) + "\n"
        else:
            text = text_of(value)
        if not text:
            return
        if self.stream:
            _write(self.out, text)
            self.out.flush()
            self._open_line = not text.endswith("\n")
        else:
            self._kept.append(text)

    def finish(self) -> None:
        """Write what was kept, then end the last line if it is open."""
        if self._kept:
            _write(self.out, "".join(self._kept))
            self._open_line = not self._kept[-1].endswith("\n")
            self._kept.clear()
        if self._open_line:
            self.out.write("\n")
        self._open_line = False
        self.out.flush()

    def interrupted(self) -> None:
        """End a line left open by a reply that was stopped."""
        self._kept.clear()
        if self._open_line:
            self.out.write("\n")
            self.out.flush()
        self._open_line = False


def _write(out: TextIO, text: str) -> None:
    """Write `text`, replacing what `out` cannot encode instead of failing: a
    lone surrogate from a provider becomes U+FFFD, a character a non-UTF-8
    terminal lacks becomes its codec's replacement."""
    try:
        out.write(text)
    except UnicodeEncodeError:
        from .conversation import without_surrogates

        encoding = getattr(out, "encoding", None) or "utf-8"
        text = without_surrogates(text)[0]
        out.write(text.encode(encoding, "replace").decode(encoding, "replace"))


class Spinner:
    """A spinner on stderr while waiting for the first piece of a reply.

    Use as `async with Spinner(enabled) as spinner:` and call `spinner.stop()`
    when the first piece arrives; leaving the block stops it too. Disabled, it
    writes nothing.
    """

    FRAMES = "|/-\\"
    PERIOD = 0.1
    LABEL = " waiting for Koala"

    def __init__(self, enabled: bool, err: TextIO | None = None) -> None:
        self.enabled = enabled
        self.err = err if err is not None else sys.stderr
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Spinner:
        import asyncio  # loaded already (a loop runs); not at startup

        if self.enabled:
            self._task = asyncio.create_task(self._spin())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        import asyncio

        task = self._task
        self.stop()
        if task is not None:
            # Let the cancelled task end here, not on some later loop run.
            await asyncio.wait({task})

    def stop(self) -> None:
        """Stop spinning and erase the spinner; harmless when not spinning."""
        if self._task is None:
            return
        self._task.cancel()
        self._task = None
        self.err.write("\r" + " " * (1 + len(self.LABEL)) + "\r")
        self.err.flush()

    async def _spin(self) -> None:
        import asyncio

        frame = 0
        while True:
            self.err.write(f"\r{self.FRAMES[frame % len(self.FRAMES)]}{self.LABEL}")
            self.err.flush()
            frame += 1
            await asyncio.sleep(self.PERIOD)
