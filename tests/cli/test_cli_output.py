"""Text, JSON lines and the spinner (koala_chat._cli.output)."""

from __future__ import annotations

import asyncio
import io

import pytest

from koala_chat._cli.output import Output, Spinner, is_terminal
from koala_chat._cli.reply import spinner_wanted


class Recorder(io.StringIO):
    """A stream that remembers each write."""

    def __init__(self, terminal: bool = False) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.terminal = terminal

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def isatty(self) -> bool:
        return self.terminal


def test_text_is_written_piece_by_piece_and_ended_with_a_newline() -> None:
    out = Recorder()
    output = Output(out=out)
    for value in ["Hel", {"text": "lo"}, 1, None]:
        output.emit(value)
    assert out.writes == ["Hel", "lo"]
    output.finish()
    assert out.getvalue() == "Hello\n"


def test_a_reply_ending_in_a_newline_gets_no_second_one() -> None:
    out = Recorder()
    output = Output(out=out)
    output.emit("line\n")
    output.finish()
    assert out.getvalue() == "line\n"


def test_no_stream_writes_once_at_the_end() -> None:
    out = Recorder()
    output = Output(stream=False, out=out)
    output.emit("a")
    output.emit("b")
    assert out.writes == []
    output.finish()
    assert out.writes[0] == "ab"
    assert out.getvalue() == "ab\n"


def test_json_lines_keep_every_value() -> None:
    out = Recorder()
    output = Output(json_lines=True, out=out)
    for value in ["é", {"a": [1]}, None]:
        output.emit(value)
    output.finish()
    assert out.getvalue() == '"é"\n{"a": [1]}\nnull\n'


def test_an_interrupted_reply_ends_its_line() -> None:
    out = Recorder()
    output = Output(out=out)
    output.emit("partial")
    output.interrupted()
    assert out.getvalue() == "partial\n"


def test_the_spinner_draws_until_stopped_and_erases_itself() -> None:
    err = Recorder()

    async def wait_for_a_piece() -> None:
        async with Spinner(True, err) as spinner:
            await asyncio.sleep(0)  # let it draw its first frame
            spinner.stop()
            drawn = len(err.writes)
            await asyncio.sleep(0)
            assert len(err.writes) == drawn  # no frame after stop

    asyncio.run(wait_for_a_piece())
    assert err.writes[0] == f"\r|{Spinner.LABEL}"
    assert err.getvalue().endswith("\r")
    assert err.writes[-1].strip() == ""


def test_a_disabled_spinner_writes_nothing() -> None:
    err = Recorder()

    async def wait() -> None:
        async with Spinner(False, err):
            await asyncio.sleep(0)

    asyncio.run(wait())
    assert err.writes == []


@pytest.mark.parametrize(
    ("stdout_terminal", "stderr_terminal", "json_lines", "wanted"),
    [
        (True, True, False, True),
        (False, True, False, False),  # piped or redirected: nothing extra
        (True, False, False, False),
        (True, True, True, False),
    ],
)
def test_the_spinner_turns_only_for_a_person_watching(
    monkeypatch: pytest.MonkeyPatch,
    stdout_terminal: bool,
    stderr_terminal: bool,
    json_lines: bool,
    wanted: bool,
) -> None:
    monkeypatch.setattr("sys.stderr", Recorder(stderr_terminal))
    output = Output(json_lines=json_lines, out=Recorder(stdout_terminal))
    assert spinner_wanted(output) is wanted


def test_is_terminal_of_odd_streams() -> None:
    assert is_terminal(None) is False
    closed = io.StringIO()
    closed.close()
    assert is_terminal(closed) is False


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("utf-8", "a\ufffdb\u00e9\n"), ("ascii", "a?b?\n")],
)
@pytest.mark.parametrize("stream", [True, False])
def test_text_the_terminal_cannot_encode_is_replaced_not_fatal(
    encoding: str, expected: str, stream: bool
) -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="\n")
    output = Output(out=out, stream=stream)
    output.emit("a\ud800b")
    output.emit("\u00e9")
    output.finish()
    assert raw.getvalue().decode(encoding) == expected
