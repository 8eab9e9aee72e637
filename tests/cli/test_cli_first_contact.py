"""A new user's first commands: the parsers, `--sandbox` everywhere, `koala serve`.

The README's table of options and `koala serve --help`'s list of routes are
checked here against what they describe (the parsers, the app's router), so
that neither can drift.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from koala_chat._cli import main
from koala_chat._cli.app import build_parser
from koala_chat._cli.exits import ExitCode
from koala_chat.sandbox import cli as sandbox_cli
from koala_chat.server import cli as serve_cli
from koala_chat.server.app import create_app
from koala_chat.server.config import ServerConfig
from server_fixtures import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Return the subcommands' parsers of `parser`, by name."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def every_parser() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Yield every parser of the package: `koala`, each subcommand (and theirs),
    and the `python -m` parsers of the server and the sandbox."""
    pending: list[argparse.ArgumentParser] = [
        build_parser(),
        serve_cli.build_parser("python -m koala_chat.server"),
        sandbox_cli.build_parser("python -m koala_chat.sandbox"),
    ]
    while pending:
        parser = pending.pop()
        yield parser.prog, parser
        pending.extend(subcommands(parser).values())


# --- the parsers ------------------------------------------------------------------


def test_no_parser_takes_an_abbreviated_option() -> None:
    parsers = dict(every_parser())
    assert {"koala", "koala serve", "koala sandbox", "koala chat"} <= set(parsers)
    assert {prog for prog, parser in parsers.items() if parser.allow_abbrev} == set()


@pytest.mark.parametrize(
    ("argv", "unknown"),
    [
        # `--web` was taken for `--web-search`, which then wanted a value.
        (["demo", "--web"], "--web"),
        (["chat", "--no-str", "Hi"], "--no-str"),
        (["check", "--al"], "--al"),
        (["serve", "--max-stream", "3"], "--max-stream 3"),
    ],
)
def test_an_abbreviation_is_an_unknown_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], unknown: str
) -> None:
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err == (
        f"koala {argv[0]}: error: Unrecognized arguments: {unknown}. "
        f"See `koala {argv[0]} --help`.\n"
    )


@pytest.mark.parametrize("command", ["chat", "demo", "check", "models", "sandbox"])
def test_a_usage_error_names_the_help_of_its_subcommand(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main([command, "--no-such-option"]) == ExitCode.USAGE
    assert capsys.readouterr().err.endswith(f". See `koala {command} --help`.\n")


def test_a_usage_error_of_the_main_command_names_its_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--no-such-option"]) == ExitCode.USAGE
    assert capsys.readouterr().err.endswith(". See `koala --help`.\n")


# --- --sandbox on every command that talks to Koala -------------------------------


@pytest.fixture
def closed_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    """KOALA_API_ENDPOINT set to a port nothing listens on: --sandbox ignores it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/gpt/"
    monkeypatch.setenv("KOALA_API_ENDPOINT", url)
    return url


@pytest.mark.parametrize(
    "argv",
    [
        ["chat", "--sandbox", "Hi"],
        ["demo", "--sandbox"],
        ["check", "--sandbox"],
        ["models", "--sandbox"],
    ],
)
def test_sandbox_answers_offline_whatever_the_environment_says(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    closed_endpoint: str,
    argv: list[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # nothing piped
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.strip()
    assert closed_endpoint not in captured.out


def test_check_all_in_the_sandbox_tries_every_dialect(
    capsys: pytest.CaptureFixture[str], closed_endpoint: str
) -> None:
    assert main(["check", "--all", "--sandbox", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(row["dialect"], row["verdict"]) for row in report["dialects"]] == [
        ("history", "works"),
        ("messages", "works"),
        ("api", "works"),
    ]


@pytest.mark.parametrize("command", ["chat", "demo", "check", "serve"])
def test_sandbox_and_endpoint_exclude_each_other(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = [command, "--sandbox", "--endpoint", "http://127.0.0.1:1/api/gpt/"]
    assert main([*argv, "Hi"] if command == "chat" else argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("koala: error: --sandbox and --endpoint exclude each other")
    assert err.endswith(f". See `koala {command} --help`.\n")


async def test_serve_sandbox_is_one_offline_process_and_names_its_page(
    server_process: Callable[..., ServerProcess], closed_endpoint: str
) -> None:
    server = server_process("--sandbox")
    port = await server.port()
    page = await server.wait_for(r"the chat page: (http://\S+)")
    assert page.group(1) == f"http://127.0.0.1:{port}/"
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="any", max_retries=0
    )
    async with client:
        reply = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert reply.choices[0].message.content
    assert reply.choices[0].message.content.startswith('You said: "Hi"')
    server.process.terminate()
    assert await server.exit_code() == 0


# --- koala serve --help lists every route ------------------------------------------


def router_routes() -> set[tuple[str, str]]:
    """Return the method and path of every route of the app (HEAD left out)."""
    app = create_app(ServerConfig())
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "OPTIONS") or not isinstance(path, str):
            continue
        found.add((route.method, re.sub(r"\{(\w+)\}", _placeholder, path)))
    return found


def _placeholder(match: re.Match[str]) -> str:
    return {"model": "ID", "name": "NAME"}[match.group(1)]


def test_serve_help_lists_every_route_of_the_router() -> None:
    listed = {(method, path) for method, path, _ in serve_cli.ROUTES}
    # As the help says: these two also answer without /v1.
    unprefixed = {
        (m, p.removeprefix("/v1"))
        for m, p in listed
        if p.startswith(("/v1/chat/completions", "/v1/models"))
    }
    assert listed | unprefixed == router_routes()
    assert {("GET", "/"), ("GET", "/openapi.json")} <= listed


def test_serve_help_shows_the_routes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for method, path, what in serve_cli.ROUTES:
        row = rf"^  {method} {re.escape(path)} +{re.escape(what)}$"
        assert re.search(row, out, re.MULTILINE)


def test_python_m_server_names_its_own_help() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "koala_chat.server", "--sandbx"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == ExitCode.USAGE
    assert process.stderr.endswith("See `python -m koala_chat.server --help`.\n")


# --- the README's table of options --------------------------------------------------


def options_table() -> str:
    """Return the README's table of each command's options, from the parsers."""
    rows = ["| command | options |", "| --- | --- |"]
    for name, parser in subcommands(build_parser()).items():
        options = [
            "`" + ("/".join(action.option_strings) or str(action.metavar)) + "`"
            for action in parser._actions
            if action.dest not in ("help", "debug")
        ]
        rows.append(f"| `koala {name}` | {', '.join(options)} |")
    return "\n".join(rows) + "\n"


def test_the_readme_lists_the_options_each_command_takes() -> None:
    text = README.read_text(encoding="utf-8")
    begin, end = "<!-- options: from the parsers -->\n", "<!-- /options -->"
    assert begin in text
    written = text.split(begin, 1)[1].split(end, 1)[0]
    assert written == options_table(), (
        "README.md's table of options differs from the parsers; put this "
        f"between its markers:\n{options_table()}"
    )
