"""The `koala` parser, help, exit codes and startup (koala_chat.cli.app, exits)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from koala_chat import (
    CloudflareChallengeError,
    ConnectError,
    InvalidJSONError,
    KoalaError,
    KoalaTimeoutError,
    ModelNotFoundError,
    NotEventStreamError,
    ProxyError,
    RateLimitError,
    ServerError,
    StatusError,
    TransportError,
    UsageError,
)
from koala_chat.cli import main
from koala_chat.cli.app import build_parser
from koala_chat.cli.exits import ExitCode, exit_code_for, one_line, reason_for
from koala_chat.cli.options import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ENDPOINT_VARIABLE,
    Subparsers,
)


def subcommands() -> dict[str, str]:
    """Return each subcommand's name and its help text."""
    parser = build_parser()
    (action,) = (a for a in parser._actions if a.dest == "command")
    assert isinstance(action.choices, dict)
    return {name: sub.format_help() for name, sub in action.choices.items()}


def test_help_lists_every_command_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("chat", "demo", "check", "models", "sandbox"):
        assert f"\n    {name} " in out
    for code in ExitCode:
        assert f"\n  {int(code):<4} " in out
    assert ENDPOINT_VARIABLE in out


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_each_command_explains_every_option_with_an_example(command: str) -> None:
    parser = build_parser()
    (action,) = (a for a in parser._actions if a.dest == "command")
    assert isinstance(action.choices, dict)
    sub = action.choices[command]
    text = sub.format_help()
    assert "examples:" in text
    assert f"koala {command}" in text.split("examples:", 1)[1]
    for option in sub._actions:
        assert option.help, f"{command} {option.option_strings} has no help"
        for string in option.option_strings:
            assert string in text


def test_without_a_command_the_help_is_shown_with_a_usage_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == ExitCode.USAGE
    assert "usage: koala" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["chat", "--timeout", "soon", "hi"], "--timeout: expected a number"),
        (["chat", "--timeout", "0", "hi"], "must be more than 0 seconds"),
        (["chat", "--retries", "-1", "hi"], "--retries: must be 0 or more"),
        (["sandbox", "--pieces", "0"], "--pieces: must be 1 or more"),
        (["chat", "--no-such-option"], "unrecognized arguments"),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert main(argv) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert says in captured.err
    assert captured.err.startswith("koala")
    assert "--help" in captured.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("koala 0.")


def test_the_repeated_defaults_agree_with_the_provider() -> None:
    from koala_chat import Koala
    from koala_chat.defaults import TOTAL_TIMEOUT as DEFAULT_TOTAL_TIMEOUT
    from koala_chat.providers import options

    assert DEFAULT_TIMEOUT == DEFAULT_TOTAL_TIMEOUT
    assert DEFAULT_RETRIES == options.DEFAULT_MAX_RETRIES
    assert ENDPOINT_VARIABLE == options.ENDPOINT_VARIABLE
    assert Koala.api_endpoint in subcommands()["chat"]


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (UsageError("bad"), ExitCode.USAGE, "usage error"),
        (ModelNotFoundError("no"), ExitCode.USAGE, "unknown model"),
        (ConnectError("down"), ExitCode.TRANSPORT, "unreachable"),
        (ProxyError("proxy"), ExitCode.TRANSPORT, "proxy failed"),
        (KoalaTimeoutError("slow"), ExitCode.TRANSPORT, "timeout"),
        (TransportError("cut"), ExitCode.TRANSPORT, "connection lost"),
        (RateLimitError("quota"), ExitCode.RATE_LIMIT, "rate limit"),
        (CloudflareChallengeError("cf"), ExitCode.STATUS, "cloudflare challenge"),
        (ServerError("500"), ExitCode.STATUS, "server error"),
        (StatusError("404"), ExitCode.STATUS, "error status"),
        (NotEventStreamError("html"), ExitCode.PROTOCOL, "not an event stream"),
        (InvalidJSONError("json"), ExitCode.PROTOCOL, "protocol error"),
        (KoalaError("other"), ExitCode.ERROR, "error"),
        (RuntimeError("bug"), ExitCode.ERROR, "error"),
    ],
)
def test_every_error_has_its_exit_code_and_reason(
    error: BaseException, code: ExitCode, reason: str
) -> None:
    assert exit_code_for(error) == code
    assert reason_for(error) == reason
    line = one_line(error)
    assert "\n" not in line
    assert "; " in line  # what happened; what to do


def test_one_line_flattens_multi_line_messages() -> None:
    error = ServerError("first line\nsecond line\r\n third")
    assert one_line(error).startswith("first line second line third; ")


def test_exit_codes_survive_pickling_of_the_error() -> None:
    error = pickle.loads(pickle.dumps(RateLimitError("quota", retry_after=3.0)))
    assert exit_code_for(error) == ExitCode.RATE_LIMIT


def test_help_imports_neither_aiohttp_nor_asyncio() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from koala_chat.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--help']) == 0\n"
        "heavy = {'aiohttp', 'asyncio', 'msgspec', 'koala_chat.providers'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_a_missing_plugin_only_leaves_its_command_out() -> None:
    from koala_chat.cli import app
    from koala_chat.cli.options import Parser

    parser = Parser(prog="koala")
    subparsers: Subparsers = parser.add_subparsers(dest="command")
    app._add_plugin(subparsers, "koala_chat.no_such_module.cli")
    assert subparsers.choices == {}


def test_a_plugin_registers_its_command_with_its_handler(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    from koala_chat.cli import app

    plugin = types.ModuleType("koala_chat_test_plugin")

    def add_parser(subparsers: Subparsers) -> None:
        subparsers.add_parser("hello", help="say hello").add_argument("--name")

    def run(args: object) -> int:
        sys.stdout.write(f"hello {getattr(args, 'name', '')}\n")
        return 7

    plugin.add_parser = add_parser  # type: ignore[attr-defined]
    plugin.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "koala_chat_test_plugin", plugin)
    monkeypatch.setattr(app, "_PLUGINS", ("koala_chat_test_plugin",))
    assert main(["hello", "--name", "you", "--debug"]) == 7
    assert capsys.readouterr().out == "hello you\n"
