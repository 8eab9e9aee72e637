"""The interactive session on a real pseudo-terminal (koala_chat._cli.interactive).

Each test spawns `python -m koala_chat chat --endpoint URL` under pexpect
against the sandbox and synchronises on the session's output only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from koala_chat._cli.interactive import CUT_MARK
from koala_chat.sandbox import Reply, Sandbox, default_reply

PROMPT = "\r\n> "
TIMEOUT = 15


def spawn(
    sandbox: Sandbox, tmp_path: Path, *options: str, **variables: str
) -> pexpect.spawn:
    """Start a session (`variables` added to its environment) and wait for its
    first prompt."""
    inputrc = tmp_path / "inputrc"
    # A fixed terminal: no bracketed-paste escapes around the prompt, and bytes
    # above 127 passed through as they are (a line that is not UTF-8).
    inputrc.write_text(
        "set enable-bracketed-paste off\n"
        "set input-meta on\nset convert-meta off\nset output-meta on\n"
    )
    env = {
        **os.environ,
        "TERM": "dumb",
        "INPUTRC": str(inputrc),
        "HOME": str(tmp_path),
        **variables,
    }
    env.pop("KOALA_API_ENDPOINT", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "koala_chat", "chat", "--endpoint", sandbox.api_endpoint, *options],
        env=env,
        cwd=str(tmp_path),
        encoding="utf-8",
        codec_errors="replace",
        timeout=TIMEOUT,
        dimensions=(24, 200),
    )
    child.expect_exact("/help lists commands")
    child.expect_exact(PROMPT)
    return child


@pytest.fixture
def session(sandbox: Sandbox, tmp_path: Path) -> Iterator[pexpect.spawn]:
    child = spawn(sandbox, tmp_path)
    try:
        yield child
    finally:
        child.close(force=True)


def say(child: pexpect.spawn, line: str, *expect: str) -> None:
    """Send a line, wait for each of `expect` in order, then for the prompt."""
    child.sendline(line)
    for text in expect:
        child.expect_exact(text)
    child.expect_exact(PROMPT)


def reply_to(text: str, users: int, assistants: int) -> str:
    """The sandbox's default reply to `text` after that much history."""
    body = {
        "input": text,
        "inputHistory": [""] * users,
        "outputHistory": [""] * assistants,
    }
    return "".join(default_reply(body))


def leave(child: pexpect.spawn) -> int:
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert isinstance(child.exitstatus, int)
    return child.exitstatus


def test_three_turns_carry_the_whole_history(
    session: pexpect.spawn, sandbox: Sandbox
) -> None:
    first = reply_to("first", 0, 0)
    second = reply_to("second", 1, 1)
    say(session, "first", first)
    say(session, "second", second)
    say(session, "third", reply_to("third", 2, 2))
    assert sandbox.requests[-1].json == {
        "input": "third",
        "inputHistory": ["first", "second"],
        "outputHistory": [first, second],
        "model": "gpt-4o-mini",
    }
    assert leave(session) == 0


def test_save_then_load_round_trips_the_conversation(
    session: pexpect.spawn, sandbox: Sandbox, tmp_path: Path
) -> None:
    say(session, "/system Be brief.", "system message added")
    say(session, "one", reply_to("one Be brief.", 0, 0))
    say(session, "/save saved.json", "saved 3 messages to saved.json")
    saved = json.loads((tmp_path / "saved.json").read_text(encoding="utf-8"))
    assert saved == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": reply_to("one Be brief.", 0, 0)},
    ]

    say(session, "/reset", "starts over")
    say(session, "fresh", reply_to("fresh", 0, 0))
    assert sandbox.requests[-1].json["inputHistory"] == []

    say(session, "/load saved.json", "loaded 3 messages")
    say(session, "two", reply_to("two Be brief.", 1, 1))
    assert sandbox.requests[-1].json == {
        "input": "two Be brief.",
        "inputHistory": ["one"],
        "outputHistory": [saved[2]["content"]],
        "model": "gpt-4o-mini",
    }
    assert leave(session) == 0


def test_ctrl_c_stops_a_slow_reply_and_keeps_it_marked(
    session: pexpect.spawn, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["partial ", "never shown"], stall_at=1))
    session.sendline("slow")
    session.expect_exact("partial")
    assert sandbox.wait_stalled(TIMEOUT)
    session.sendintr()
    session.expect_exact(f"marked {CUT_MARK}")
    session.expect_exact(PROMPT)
    assert sandbox.wait_disconnect(TIMEOUT)  # the response was closed at once

    say(session, "next", reply_to("next", 1, 1))
    assert sandbox.requests[-1].json["outputHistory"] == [f"partial {CUT_MARK}"]
    assert "never shown" not in session.before
    assert leave(session) == 0


def test_ctrl_c_at_the_prompt_leaves_with_130(session: pexpect.spawn) -> None:
    session.sendintr()
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 130


def test_model_command_and_exit(session: pexpect.spawn, sandbox: Sandbox) -> None:
    say(session, "/model gpt-4.1", "model: gpt-4.1")
    session.sendline("hi")
    session.expect_exact("Model: gpt-4.1.")
    session.expect_exact(PROMPT)
    assert sandbox.requests[-1].json["model"] == "gpt-4.1"
    say(session, "/nope", "unknown command /nope")
    say(session, "//slash", 'You said: "/slash"')
    session.sendline("/exit")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0


def test_a_failed_turn_is_forgotten_and_the_session_goes_on(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    child = spawn(sandbox, tmp_path, "--retries", "0")
    try:
        sandbox.push(Reply(status=429, body=b"quota"))
        say(child, "lost", "koala: error: Rate limited")
        say(child, "/load missing.json", "koala: error: ")
        say(child, "kept", reply_to("kept", 0, 0))
        assert sandbox.requests[-1].json["inputHistory"] == []
        assert leave(child) == 0
    finally:
        child.close(force=True)


def test_bad_files_are_noted_and_the_conversation_goes_on(
    session: pexpect.spawn, sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "long.json").write_text("[" + "9" * 5000 + "]")
    say(session, "one", reply_to("one", 0, 0))
    say(session, "/load deep.json", "koala: error: deep.json is JSON nested too deeply")
    say(session, "/load long.json", "koala: error: long.json is not a JSON file")
    say(session, "/load /dev/zero", "koala: error: /dev/zero is not a regular file")
    say(session, "/load ~nosuchuser-koala/x", "no such user")
    say(session, "/save /", "koala: error: ")
    say(session, "two", reply_to("two", 1, 1))
    assert sandbox.requests[-1].json["inputHistory"] == ["one"]
    assert leave(session) == 0


def test_save_over_a_file_never_loses_it_to_a_lone_surrogate(
    session: pexpect.spawn, tmp_path: Path
) -> None:
    (tmp_path / "saved.json").write_text("[]\n")
    (tmp_path / "odd.json").write_text(
        '[{"role": "user", "content": "odd \\ud800"}, '
        '{"role": "assistant", "content": "fine"}]'
    )
    # The library replaces a lone surrogate where messages enter it (so does
    # /load), and /save replaces any left: the file is always written whole.
    say(session, "/load odd.json", "loaded 2 messages")
    say(session, "/save saved.json", "saved 2 messages to saved.json")
    saved = json.loads((tmp_path / "saved.json").read_bytes().decode("utf-8"))
    assert saved[0] == {"role": "user", "content": "odd \ufffd"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []
    assert leave(session) == 0


def test_a_typed_line_that_is_not_utf8_is_sent_with_a_replacement(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # A strict decoder on stdin, as in an en_US.UTF-8 locale: input() would
    # raise UnicodeDecodeError on the byte 0xFF (never valid in UTF-8).
    child = spawn(sandbox, tmp_path, PYTHONIOENCODING="utf-8:strict")
    try:
        os.write(child.child_fd, b"caf\xff\r")
        child.expect_exact("1 byte(s) of the line were not UTF-8 text")
        child.expect_exact(reply_to("caf\ufffd", 0, 0))
        child.expect_exact(PROMPT)
        assert sandbox.requests[-1].json["input"] == "caf\ufffd"
        say(child, "next", reply_to("next", 1, 1))
        assert leave(child) == 0
    finally:
        child.close(force=True)


def test_sigterm_during_a_reply_ends_its_line_and_exits_143(
    session: pexpect.spawn, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["partial", " never shown"], stall_at=1))
    session.sendline("slow")
    session.expect_exact("partial")
    assert sandbox.wait_stalled(TIMEOUT)
    session.kill(signal.SIGTERM)
    session.expect(pexpect.EOF)
    assert session.before == "\r\n"
    assert "Traceback" not in session.before
    session.close()
    assert session.exitstatus == 143
    assert sandbox.wait_disconnect(TIMEOUT)


def test_sigterm_at_the_prompt_exits_143(session: pexpect.spawn) -> None:
    session.kill(signal.SIGTERM)
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 143
