"""The command line against a careless user and odd failures, in-process.

Conversation files (koala_chat._cli.conversation) through the REPL's own
`Session.handle`, `koala check --json` when something unexpected fails, and
passwords of every shape kept out of every line the command prints
(koala_chat._cli.redaction).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from koala_chat import Koala
from koala_chat._cli import main
from koala_chat._cli.conversation import MAX_CONVERSATION_BYTES
from koala_chat._cli.exits import ExitCode
from koala_chat._cli.interactive import MAX_NOTE_CHARS, Session
from koala_chat._cli.options import Connection
from koala_chat._cli.output import Output
from koala_chat._cli.redaction import Redactor
from koala_chat.messages import Messages
from koala_chat.sandbox import Reply, Sandbox, default_reply

HISTORY: Messages = [
    {"role": "user", "content": "kept question"},
    {"role": "assistant", "content": "kept answer"},
]


@pytest.fixture(autouse=True)
def no_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOALA_API_ENDPOINT", raising=False)


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


def session_for(
    endpoint: str, provider: type[Koala] = Koala, **options: Any
) -> Session:
    connection = Connection(endpoint=endpoint, retries=0, **options)
    session = Session(provider, connection, [], Output(out=io.StringIO()))
    session.messages = list(HISTORY)
    return session


@pytest.fixture
def session(sandbox: Sandbox) -> Session:
    return session_for(sandbox.api_endpoint)


def note_of(capsys: pytest.CaptureFixture[str]) -> str:
    """The one note a command printed."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def refused(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    line: str,
) -> str:
    """Run a line that must fail; return its note after checking nothing changed."""
    assert session.handle(line, runner) is False
    assert session.messages == HISTORY
    note = note_of(capsys)
    assert note.startswith("koala: error: "), note
    return note


# /load: every bad file is a note, and the conversation stays.


def test_load_of_json_nested_too_deeply(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    note = refused(session, runner, capsys, f"/load {tmp_path / 'deep.json'}")
    assert "nested too deeply" in note


def test_load_of_a_number_with_5000_digits(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    (tmp_path / "long.json").write_text("[" + "9" * 5000 + "]")
    note = refused(session, runner, capsys, f"/load {tmp_path / 'long.json'}")
    assert "is not a JSON file" in note


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "fifo", "folder"])
def test_load_refuses_what_is_not_a_regular_file_without_reading_it(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    special: str,
) -> None:
    path = Path(special) if special.startswith("/") else tmp_path / special
    if special == "fifo":
        os.mkfifo(path)  # no writer: reading would block forever
    elif special == "folder":
        path.mkdir()
    note = refused(session, runner, capsys, f"/load {path}")
    assert f"{path} is not a regular file" in note


def test_load_reads_up_to_the_limit_and_refuses_one_byte_more(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    at_limit = tmp_path / "at-limit.json"
    at_limit.write_bytes(b"[" + b" " * (MAX_CONVERSATION_BYTES - 2) + b"]")
    assert at_limit.stat().st_size == MAX_CONVERSATION_BYTES
    over = tmp_path / "over.json"
    over.write_bytes(b"[" + b" " * (MAX_CONVERSATION_BYTES - 1) + b"]")

    note = refused(session, runner, capsys, f"/load {over}")
    assert "is larger than 16 MiB" in note
    assert session.handle(f"/load {at_limit}", runner) is False
    assert session.messages == []
    assert "loaded 0 messages" in note_of(capsys)


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("~nosuchuser-koala/x.json", "no such user"),
        ("a\0b.json", "cannot hold a NUL character"),
        ("missing.json", "missing.json: No such file or directory"),
    ],
)
def test_load_of_a_name_that_cannot_be_opened(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    argument: str,
    expected: str,
) -> None:
    assert expected in refused(session, runner, capsys, f"/load {argument}")


def test_a_note_quoting_a_huge_value_stays_short(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = tmp_path / "role.json"
    path.write_text(json.dumps([{"role": "x" * 1_000_000, "content": "hi"}]))
    note = refused(session, runner, capsys, f"/load {path}")
    assert "unknown role" in note
    assert len(note) <= len("koala: ") + MAX_NOTE_CHARS


# /save: the file is replaced whole or left as it was.


def test_save_of_a_lone_surrogate_replaces_it_and_keeps_the_file_valid(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    target = tmp_path / "saved.json"
    target.write_text("the previous save\n")
    session.messages.append({"role": "user", "content": "bad \ud800 text"})
    assert session.handle(f"/save {target}", runner) is False
    notes = capsys.readouterr().err
    assert "saved 3 messages" in notes
    assert "1 character(s) that were not text saved as U+FFFD" in notes
    saved = json.loads(target.read_bytes().decode("utf-8"))
    assert saved[-1] == {"role": "user", "content": "bad \ufffd text"}
    assert session.messages[-1]["content"] == "bad \ud800 text"


def test_a_failed_save_keeps_the_previous_file_and_no_temporary(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "saved.json"
    target.write_text("the previous save\n")

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    note = refused(session, runner, capsys, f"/save {target}")
    assert "No space left on device" in note
    assert target.read_text() == "the previous save\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved.json"]


@pytest.mark.parametrize("special", ["fifo", "folder"])
def test_save_refuses_to_replace_what_is_not_a_regular_file(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    special: str,
) -> None:
    path = tmp_path / special
    if special == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    note = refused(session, runner, capsys, f"/save {path}")
    assert "is not a regular file" in note
    assert (stat.S_ISFIFO if special == "fifo" else stat.S_ISDIR)(path.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == [special]


def test_save_keeps_a_files_mode_and_link_and_makes_new_files_private(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared.json"
    shared.write_text("old\n")
    shared.chmod(0o644)
    link = tmp_path / "link.json"
    link.symlink_to(shared)
    assert session.handle(f"/save {link}", runner) is False
    assert session.handle(f"/save {tmp_path / 'new.json'}", runner) is False
    capsys.readouterr()
    assert link.is_symlink()
    assert json.loads(shared.read_text()) == HISTORY
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600


# Typed lines and unexpected failures.


def test_a_typed_line_with_bytes_that_are_not_utf8(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    sandbox: Sandbox,
) -> None:
    # What input() returns for b"caf\xe9" once stdin decodes with surrogateescape.
    typed = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert session.handle(typed, runner) is False
    err = capsys.readouterr().err
    assert "1 byte(s) of the line were not UTF-8 text; each is kept as U+FFFD" in err
    assert sandbox.requests[-1].json["input"] == "caf\ufffd"
    assert session.messages[-2] == {"role": "user", "content": "caf\ufffd"}


class Broken(Koala):
    """A provider that fails in a way nobody expects."""

    @classmethod
    async def create_async_generator(  # type: ignore[override]
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncIterator[str]:
        yield "half a reply"
        raise RuntimeError("something nobody expected")

    @classmethod
    def get_model(cls, model: str, **kwargs: Any) -> str:
        if model == "explode":
            raise ZeroDivisionError("nobody expected this either")
        return super().get_model(model, **kwargs)


def test_an_unexpected_error_in_a_turn_or_a_command_keeps_the_session(
    runner: asyncio.Runner, capsys: pytest.CaptureFixture[str], sandbox: Sandbox
) -> None:
    session = session_for(sandbox.api_endpoint, Broken)
    assert session.handle("ask", runner) is False
    assert session.messages == HISTORY
    assert session.output.out.getvalue() == "half a reply\n"  # type: ignore[attr-defined]
    assert "Unexpected RuntimeError: something nobody expected" in note_of(capsys)

    assert session.handle("/model explode", runner) is False
    assert session.messages == HISTORY
    assert "Unexpected ZeroDivisionError" in note_of(capsys)


# `koala check --json`: one JSON object, whatever fails.

# Percent-encoded: a raw "#" in a password is refused before any request.
SECRET_URL = "http://me:s3cr%23etZ@127.0.0.1:1/api/gpt/"


class ExplodingCheck(Koala):
    @classmethod
    def get_model(cls, model: str, **kwargs: Any) -> str:
        if model == "interrupt":
            raise KeyboardInterrupt
        raise RuntimeError(f"cannot use {SECRET_URL}")


def check_json(
    capsys: pytest.CaptureFixture[str], argv: list[str], provider: type[Koala] = Koala
) -> tuple[int, dict[str, Any], str]:
    code = main(["check", "--json", *argv], provider=provider)
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # exactly one JSON document
    assert isinstance(report, dict)
    assert report["exit_code"] == code
    assert report["works"] is False
    for text in (captured.out, captured.err):
        assert "s3cr" not in text
        assert "etZ" not in text
    return code, report, captured.err


def test_check_json_reports_an_unexpected_error_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report, err = check_json(
        capsys, ["--endpoint", SECRET_URL], provider=ExplodingCheck
    )
    assert code == ExitCode.ERROR
    assert report["reason"] == "error"
    assert report["error"].startswith("unexpected RuntimeError: cannot use http://me:")
    assert report["endpoint"].startswith("http://me:")
    assert err.startswith("koala: error: Unexpected RuntimeError")
    assert "Traceback" not in err


def test_check_json_reports_ctrl_c_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report, err = check_json(
        capsys, ["--endpoint", SECRET_URL, "-m", "interrupt"], provider=ExplodingCheck
    )
    assert code == ExitCode.INTERRUPTED
    assert report["reason"] == "interrupted"
    assert err == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--endpoint", "ftp://me:s3cr#etZ@host/"],
        ["--proxy", "http://me:s3cr#etZ@127.0.0.1:1"],
        ["--proxy", "http://me:s3cr/etZ@127.0.0.1:99999"],
    ],
)
def test_check_json_reports_a_usage_error_as_json(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, argv: list[str]
) -> None:
    code, report, err = check_json(capsys, ["--endpoint", sandbox.api_endpoint, *argv])
    assert code == ExitCode.USAGE
    assert report["reason"] in ("usage error", "unknown model")
    assert err.startswith("koala: error: ")


@pytest.mark.parametrize("retry_after", ["\u00b2", "9" * 400, "-1", "1e999"])
def test_check_json_survives_an_odd_retry_after(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, retry_after: str
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": retry_after}, body=b"quota"))
    code, report, err = check_json(capsys, ["--endpoint", sandbox.api_endpoint])
    assert code != ExitCode.OK
    assert report["reason"]
    assert "Traceback" not in err


# Passwords of every shape, in every line the command prints.

PASSWORDS = ["s3cr#etZ", "s3cr/etZ", "s3cr?etZ", "s3cr@etZ", "s3cr%40etZ", "s3cr%zetZ"]


def assert_no_password(*texts: str) -> None:
    for text in texts:
        assert "s3cr" not in text, text
        assert "etZ" not in text, text


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("port", ["1", "99999", "x"])
@pytest.mark.parametrize("option", ["--endpoint", "--proxy", "environment"])
@pytest.mark.parametrize("command", ["chat", "check", "check-json"])
def test_no_error_line_shows_a_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    port: str,
    option: str,
    command: str,
) -> None:
    url = f"http://me:{password}@127.0.0.1:{port}/api/"
    argv = [command.removesuffix("-json"), "--retries", "0", "--timeout", "5"]
    if command == "check-json":
        argv.append("--json")
    if option == "environment":
        monkeypatch.setenv("KOALA_API_ENDPOINT", url)
    else:
        argv += [option, url]
    if option == "--proxy":
        argv += ["--endpoint", "http://127.0.0.1:1/api/"]
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi"))
    code = main(argv)
    captured = capsys.readouterr()
    assert code != ExitCode.OK
    assert captured.out or captured.err
    assert_no_password(captured.out, captured.err)


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_session_masks_passwords_in_its_notes(
    runner: asyncio.Runner, capsys: pytest.CaptureFixture[str], password: str
) -> None:
    session = session_for(f"http://me:{password}@127.0.0.1:1/api/")
    assert session.handle("hello", runner) is False
    err = capsys.readouterr().err
    assert err.startswith("koala: error: ")
    assert_no_password(err)
    assert session.messages == HISTORY


def test_debug_tracebacks_mask_passwords_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--debug", "check", "--endpoint", SECRET_URL], provider=ExplodingCheck)
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR
    assert "Traceback" in err
    assert_no_password(err)


def test_the_redactor_leaves_words_that_merely_contain_a_short_password() -> None:
    redact = Redactor.from_values(["http://me:p#ss@host:1/"], ["sk-key"])
    assert redact("Port 'p' of http://me:p#ss@host:1/ with sk-key") == (
        "Port '***' of http://me:***@host:1/ with ***"
    )


def test_a_good_turn_after_every_failure(
    session: Session,
    runner: asyncio.Runner,
    capsys: pytest.CaptureFixture[str],
    sandbox: Sandbox,
) -> None:
    for line in ["/load /dev/zero", "/load ~nosuchuser-koala/x", "/save /"]:
        assert session.handle(line, runner) is False
    assert session.handle("and now", runner) is False
    capsys.readouterr()
    expected = "".join(
        default_reply(
            {
                "input": "and now",
                "inputHistory": ["kept question"],
                "outputHistory": ["kept answer"],
            }
        )
    )
    assert session.messages[-1] == {"role": "assistant", "content": expected}
