"""The `koala` parser, help, exit codes and startup (koala_chat._cli.app, exits)."""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
import sys
from pathlib import Path

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
    defaults,
    errors,
)
from koala_chat._cli import main
from koala_chat._cli.app import build_parser
from koala_chat._cli.exits import (
    EXIT_CODES,
    FAILURES,
    ExitCode,
    exit_code_for,
    one_line,
    reason_for,
)
from koala_chat.defaults import ENDPOINT_VARIABLE


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
    for name in ("chat", "demo", "check", "models", "sandbox", "serve"):
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
        (["chat", "--no-such-option"], "Unrecognized arguments"),
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


def test_help_shows_the_real_defaults() -> None:
    helps = {name: " ".join(text.split()) for name, text in subcommands().items()}
    assert defaults.API_ENDPOINT in helps["chat"]
    assert f"(default: {defaults.TOTAL_TIMEOUT:g})" in helps["chat"]
    assert f"(default: {defaults.MAX_RETRIES})" in helps["chat"]
    assert repr(defaults.CHECK_PROMPT) in helps["check"]
    assert f"({defaults.SANDBOX_HOST})" in helps["sandbox"]
    assert f"({defaults.SANDBOX_PORT})" in helps["sandbox"]
    for value in (
        defaults.SERVER_HOST,
        defaults.SERVER_PORT,
        defaults.SERVER_MAX_STREAMS,
        defaults.SERVER_MAX_BODY,
        f"{defaults.SERVER_GRACE:g}",
        f"the provider's: {defaults.TOTAL_TIMEOUT:g}",
    ):
        assert f"{value})" in helps["serve"]


def test_the_parsers_default_to_the_defaults_module() -> None:
    parser = build_parser()
    chat = parser.parse_args(["chat", "Hi"])
    assert (chat.timeout, chat.retries) == (
        defaults.TOTAL_TIMEOUT,
        defaults.MAX_RETRIES,
    )
    serve = parser.parse_args(["serve"])
    assert (serve.host, serve.port, serve.max_body, serve.grace) == (
        defaults.SERVER_HOST,
        defaults.SERVER_PORT,
        defaults.SERVER_MAX_BODY,
        defaults.SERVER_GRACE,
    )
    sandbox = parser.parse_args(["sandbox"])
    assert (sandbox.host, sandbox.port, sandbox.interval) == (
        defaults.SANDBOX_HOST,
        defaults.SANDBOX_PORT,
        defaults.SANDBOX_INTERVAL,
    )


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
    # What happened, then what to do: two capitalised sentences.
    assert re.fullmatch(r"[^a-z].*\. [A-Z`].*\.", line), line


# Every class of the error tree: its exit code and reason on the command line,
# and its HTTP status, OpenAI error type and code from `koala serve`.
EVERY_ERROR: dict[type[BaseException], tuple[ExitCode, str, int, str, str]] = {
    errors.EmulationError: (
        ExitCode.PROTOCOL,
        "protocol error",
        502,
        "upstream_error",
        "upstream_protocol_error",
    ),
    KoalaError: (ExitCode.ERROR, "error", 502, "upstream_error", "upstream_error"),
    errors.TransportError: (
        ExitCode.TRANSPORT,
        "connection lost",
        502,
        "upstream_error",
        "upstream_error",
    ),
    ConnectError: (
        ExitCode.TRANSPORT,
        "unreachable",
        502,
        "upstream_error",
        "upstream_unreachable",
    ),
    ProxyError: (
        ExitCode.TRANSPORT,
        "proxy failed",
        502,
        "upstream_error",
        "upstream_unreachable",
    ),
    KoalaTimeoutError: (
        ExitCode.TRANSPORT,
        "timeout",
        504,
        "upstream_error",
        "upstream_timeout",
    ),
    StatusError: (
        ExitCode.STATUS,
        "error status",
        502,
        "upstream_error",
        "upstream_error",
    ),
    RateLimitError: (
        ExitCode.RATE_LIMIT,
        "rate limit",
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    ),
    CloudflareChallengeError: (
        ExitCode.STATUS,
        "cloudflare challenge",
        502,
        "upstream_error",
        "upstream_challenge",
    ),
    errors.AuthenticationError: (
        ExitCode.STATUS,
        "api key refused",
        502,
        "upstream_error",
        "upstream_auth",
    ),
    errors.CreditsExhaustedError: (
        ExitCode.STATUS,
        "out of credits",
        402,
        "insufficient_quota",
        "insufficient_quota",
    ),
    errors.PlanError: (
        ExitCode.STATUS,
        "not in the plan",
        403,
        "permission_error",
        "model_not_in_plan",
    ),
    errors.UnexpectedReplyError: (
        ExitCode.PROTOCOL,
        "not an event stream",
        502,
        "upstream_error",
        "upstream_protocol_error",
    ),
    ServerError: (
        ExitCode.STATUS,
        "server error",
        502,
        "upstream_error",
        "upstream_error",
    ),
    errors.ProtocolError: (
        ExitCode.PROTOCOL,
        "protocol error",
        502,
        "upstream_error",
        "upstream_protocol_error",
    ),
    NotEventStreamError: (
        ExitCode.PROTOCOL,
        "not an event stream",
        502,
        "upstream_error",
        "upstream_protocol_error",
    ),
    InvalidJSONError: (
        ExitCode.PROTOCOL,
        "protocol error",
        502,
        "upstream_error",
        "upstream_protocol_error",
    ),
    errors.IncompleteEventError: (
        ExitCode.PROTOCOL,
        "protocol error",
        502,
        "upstream_error",
        "upstream_protocol_error",
    ),
    errors.EventTooLargeError: (
        ExitCode.PROTOCOL,
        "protocol error",
        502,
        "upstream_error",
        "upstream_protocol_error",
    ),
    UsageError: (
        ExitCode.USAGE,
        "usage error",
        400,
        "invalid_request_error",
        "invalid_request",
    ),
    ModelNotFoundError: (
        ExitCode.USAGE,
        "unknown model",
        404,
        "invalid_request_error",
        "model_not_found",
    ),
}


def test_every_error_class_goes_through_both_tables() -> None:
    from koala_chat.server.failures import STATUSES, failure_for

    tree = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseException)
        and cls.__module__ == errors.__name__
    }
    assert tree == set(EVERY_ERROR), "a new error class needs its row here"
    for cls, (code, reason, status, kind, error_code) in EVERY_ERROR.items():
        error = cls("message")
        assert (exit_code_for(error), reason_for(error)) == (code, reason), cls
        failure = failure_for(error)
        assert (failure.status, failure.type, failure.code) == (
            status,
            kind,
            error_code,
        ), cls
    # The tables name only classes of the tree, each at most once.
    assert set(EXIT_CODES) <= tree
    assert set(FAILURES) <= tree
    assert set(STATUSES) <= tree


def test_a_class_without_an_entry_takes_its_nearest_ancestors() -> None:
    from koala_chat.server.failures import failure_for

    class SlowProxyError(ProxyError, KoalaTimeoutError):
        pass

    error = SlowProxyError("both")
    # ProxyError comes first in the MRO, as it would in an isinstance chain.
    assert exit_code_for(error) == ExitCode.TRANSPORT
    assert reason_for(error) == "proxy failed"
    assert failure_for(error).code == "upstream_unreachable"


def test_one_line_flattens_multi_line_messages() -> None:
    error = ServerError("first line\nsecond line\r\n third")
    assert one_line(error).startswith("First line second line third. ")


def test_exit_codes_survive_pickling_of_the_error() -> None:
    error = pickle.loads(pickle.dumps(RateLimitError("quota", retry_after=3.0)))
    assert exit_code_for(error) == ExitCode.RATE_LIMIT


def test_help_imports_neither_aiohttp_nor_asyncio() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from koala_chat._cli import main\n"
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


def imported_modules(path: Path, package: str) -> set[str]:
    """Return the absolute names of the koala_chat modules `path` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            module = node.module or ""
            prefix = f"{base}.{module}" if node.level else module
            names.add(prefix.rstrip("."))
            names.update(f"{prefix}.{alias.name}".strip(".") for alias in node.names)
    return {name for name in names if name.startswith("koala_chat")}


def test_imports_go_one_way() -> None:
    """The command line uses the server and the sandbox, never the reverse, and
    the chat command and its interactive session share `reply`, not each other."""
    import koala_chat

    root = Path(koala_chat.__file__).parent
    for package in ("server", "sandbox"):
        for path in (root / package).glob("*.py"):
            imported = imported_modules(path, f"koala_chat.{package}")
            cli = {n for n in imported if n.split(".")[:2] == ["koala_chat", "_cli"]}
            assert not cli, path
    interactive = imported_modules(root / "_cli" / "interactive.py", "koala_chat._cli")
    assert "koala_chat._cli.chat" not in interactive
    assert "koala_chat._cli.reply" in interactive
