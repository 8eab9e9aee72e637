"""The interactive session on a real pseudo-terminal (koala_chat.cli.interactive).

Each test spawns `python -m koala_chat chat --endpoint URL` under pexpect
against the sandbox and synchronises on the session's output only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from koala_chat.cli.interactive import CUT_MARK
from koala_chat.sandbox import Reply, Sandbox, default_reply

PROMPT = "\r\n> "
TIMEOUT = 15


def spawn(sandbox: Sandbox, tmp_path: Path, *options: str) -> pexpect.spawn:
    """Start a session and wait for its first prompt."""
    inputrc = tmp_path / "inputrc"
    # A fixed terminal: no bracketed-paste escapes around the prompt.
    inputrc.write_text("set enable-bracketed-paste off\n")
    env = {
        **os.environ,
        "TERM": "dumb",
        "INPUTRC": str(inputrc),
        "HOME": str(tmp_path),
    }
    env.pop("KOALA_API_ENDPOINT", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "koala_chat", "chat", "--endpoint", sandbox.api_endpoint, *options],
        env=env,
        cwd=str(tmp_path),
        encoding="utf-8",
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
        say(child, "lost", "koala: error: rate limited")
        say(child, "/load missing.json", "koala: error: ")
        say(child, "kept", reply_to("kept", 0, 0))
        assert sandbox.requests[-1].json["inputHistory"] == []
        assert leave(child) == 0
    finally:
        child.close(force=True)
