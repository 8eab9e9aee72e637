"""Every error a user can meet on the command line, met for real.

Each case runs the `koala` command in-process against a real server (the
sandbox scripted to fail, a wrong path, a closed port, a port in use, a dead
proxy) and checks the one line it prints: two capitalised sentences, what
happened and one next step, no traceback, no status said twice, "attempts"
only for requests that were sent again.
"""

from __future__ import annotations

import io
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import openai
import pytest

from koala_chat import Koala
from koala_chat._cli import main
from koala_chat._cli.exits import ExitCode
from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread

#: One error line: `koala[ COMMAND]: error: ` and two sentences, the second
#: the next step.
LINE = re.compile(r"koala(?: \w+)?: error: [^a-z].*[.?] [A-Z`].*\.\n")


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@dataclass
class World:
    """The servers a case may point the command at."""

    sandbox: Sandbox
    messages_only: Sandbox
    closed: str
    busy: int

    def wrong_path(self) -> str:
        return self.sandbox.url + "/api/gtp/"


@dataclass
class Case:
    """A command line, the environment, and what its error line must say."""

    argv: Callable[[World], list[str]]
    code: ExitCode
    what: str
    step: str
    env: dict[str, str] = field(default_factory=dict)
    reply: Reply | None = None
    #: How many times the sandbox gives `reply`.
    repeat: int = 1
    #: Use a Koala whose own endpoint (koala.sh's place) is the closed port.
    offline: bool = False
    #: The times the request was sent, when the line must say so.
    attempts: int | None = None
    #: The sandbox must have seen that many requests.
    counted: bool = False


def _endpoint(world: World) -> str:
    return world.sandbox.api_endpoint


CASES: dict[str, Case] = {
    "a wrong path, both dialects refused": Case(
        lambda w: ["chat", "--endpoint", w.wrong_path(), "Hi"],
        ExitCode.STATUS,
        "refused both dialects (history: 404 Not Found; messages: 404 Not Found)",
        "The Koala API answers at the path /api/gpt/: set --endpoint to http://",
    ),
    "a wrong path, one dialect": Case(
        lambda w: ["chat", "--protocol", "history", "--endpoint", w.wrong_path(), "Hi"],
        ExitCode.STATUS,
        "/api/gtp/ answered 404 Not Found.",
        "The Koala API answers at the path /api/gpt/",
    ),
    "a wrong path from the environment": Case(
        lambda w: ["demo"],
        ExitCode.STATUS,
        "refused both dialects",
        "set KOALA_API_ENDPOINT to http://",
        env={"KOALA_API_ENDPOINT": "{wrong_path}"},
    ),
    "a path that takes no POST (405)": Case(
        lambda w: [
            "chat",
            "--protocol",
            "messages",
            "--endpoint",
            w.sandbox.url + "/health",
            "Hi",
        ],
        ExitCode.STATUS,
        "answered 405 Method Not Allowed",
        "The Koala API answers at the path /api/gpt/",
    ),
    "a refused request shape": Case(
        lambda w: [
            "chat",
            "--protocol",
            "history",
            "--endpoint",
            w.messages_only.api_endpoint,
            "Hi",
        ],
        ExitCode.STATUS,
        "answered 400 Bad Request",
        "Run `koala check --all` to see which dialect the endpoint speaks.",
    ),
    "a key in the environment chose a refused dialect": Case(
        lambda w: ["chat", "--endpoint", w.messages_only.api_endpoint, "Hi"],
        ExitCode.STATUS,
        "answered 400 Bad Request",
        "KOALA_API_KEY is set, so the api dialect was used: unset it, or "
        "choose another dialect with --protocol.",
        env={"KOALA_API_KEY": "koala-sandbox-key"},
    ),
    "a key in the environment refused": Case(
        lambda w: ["chat", "--endpoint", _endpoint(w), "Hi"],
        ExitCode.STATUS,
        "refused the API key (401 Unauthorized)",
        "KOALA_API_KEY is set, so the api dialect was used: check that key, or "
        "unset it to use the free dialects.",
        env={"KOALA_API_KEY": "not-the-sandbox-key"},
    ),
    "an unreachable endpoint": Case(
        lambda w: ["chat", "--endpoint", w.closed, "Hi"],
        ExitCode.TRANSPORT,
        ": connection refused (after 3 attempts).",
        "or work offline with `koala chat --sandbox`.",
        attempts=3,
    ),
    "an unreachable endpoint from the environment": Case(
        lambda w: ["demo", "--retries", "0"],
        ExitCode.TRANSPORT,
        ": connection refused.",
        "runs at the URL of KOALA_API_ENDPOINT (`koala sandbox` starts one), or "
        "work offline with `koala demo --sandbox`.",
        env={"KOALA_API_ENDPOINT": "{closed}"},
    ),
    "an unreachable koala.sh": Case(
        lambda w: ["chat", "--retries", "0", "Hi"],
        ExitCode.TRANSPORT,
        ": connection refused.",
        "Check the network, or work offline with `koala chat --sandbox`.",
        offline=True,
    ),
    "a dead proxy": Case(
        lambda w: [
            "chat",
            "--proxy",
            w.closed.split("/api")[0],
            "--endpoint",
            _endpoint(w),
            "Hi",
        ],
        ExitCode.TRANSPORT,
        "failed",
        "Check that the proxy runs and the URL and credentials are right.",
    ),
    "a rate limit": Case(
        lambda w: ["chat", "--retries", "0", "--endpoint", _endpoint(w), "Hi"],
        ExitCode.RATE_LIMIT,
        "Rate limited by http://",
        "Wait for the quota to renew, or go through another --proxy.",
        reply=Reply(status=429, body=b"slow down"),
    ),
    "a Cloudflare challenge": Case(
        lambda w: ["chat", "--retries", "0", "--endpoint", _endpoint(w), "Hi"],
        ExitCode.STATUS,
        "Cloudflare blocked the request",
        "Try later or from another network (--proxy).",
        reply=Reply(
            status=403,
            content_type="text/html",
            headers={"cf-mitigated": "challenge"},
            body=b"<html>Just a moment...</html>",
        ),
    ),
    "a server error, retried once": Case(
        lambda w: [
            "chat",
            "--protocol",
            "history",
            "--retries",
            "1",
            "--endpoint",
            _endpoint(w),
            "Hi",
        ],
        ExitCode.STATUS,
        "answered 500 Internal Server Error (after 2 attempts).",
        "The service failed: try again later.",
        reply=Reply(status=500, body=b"500: Internal Server Error"),
        repeat=2,
        attempts=2,
        counted=True,
    ),
    "not an event stream": Case(
        lambda w: ["chat", "--endpoint", _endpoint(w), "Hi"],
        ExitCode.PROTOCOL,
        "text/html",
        "Is --endpoint (or KOALA_API_ENDPOINT) a Koala API? `koala check` tells.",
        reply=Reply(content_type="text/html", body=b"<html>a page</html>"),
    ),
    "a time limit": Case(
        lambda w: [
            "chat",
            "--timeout",
            "0.3",
            "--retries",
            "0",
            "--endpoint",
            _endpoint(w),
            "Hi",
        ],
        ExitCode.TRANSPORT,
        "within the total time limit",
        "Try again, or allow more time with --timeout.",
        reply=Reply(values=["a", "b"], stall_at=1),
    ),
    "a bad option value": Case(
        lambda w: ["chat", "--timeout", "0", "Hi"],
        ExitCode.USAGE,
        "Argument --timeout: must be more than 0 seconds, not 0.",
        "See `koala chat --help`.",
    ),
    "an unknown option": Case(
        lambda w: ["serve", "--sandbx"],
        ExitCode.USAGE,
        "Unrecognized arguments: --sandbx.",
        "See `koala serve --help`.",
    ),
    "an unreadable key file": Case(
        lambda w: ["chat", "--api-key-file", "/nonexistent/key", "Hi"],
        ExitCode.USAGE,
        "Cannot read the key file /nonexistent/key: No such file or directory.",
        "See `koala chat --help`.",
    ),
    "a bad endpoint URL": Case(
        lambda w: ["check", "--endpoint", "ftp://example.org/"],
        ExitCode.USAGE,
        "The API endpoint must be an http(s) URL",
        "See `koala check --help`.",
    ),
    "a port in use": Case(
        lambda w: ["serve", "--port", str(w.busy)],
        ExitCode.USAGE,
        "is in use",
        "See `koala serve --help`.",
    ),
}


@pytest.fixture
def world(
    sandbox: Sandbox,
    messages_only: Sandbox,
    closed_port: int,
    busy_port: int,
) -> World:
    return World(
        sandbox=sandbox,
        messages_only=messages_only,
        closed=f"http://127.0.0.1:{closed_port}/api/gpt/",
        busy=busy_port,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_every_error_says_what_happened_and_what_to_do(
    name: str,
    world: World,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = CASES[name]
    monkeypatch.delenv("KOALA_API_ENDPOINT", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    places = {"wrong_path": world.wrong_path(), "closed": world.closed}
    for variable, value in case.env.items():
        monkeypatch.setenv(variable, value.format(**places))
    if case.reply is not None:
        for _ in range(case.repeat):
            world.sandbox.push(case.reply)
    provider = Koala
    if case.offline:
        provider = type("Offline", (Koala,), {"api_endpoint": world.closed})
    try:
        code = main(case.argv(world), provider=provider)
    finally:
        world.sandbox.release()
    captured = capsys.readouterr()
    line = captured.err
    assert code == case.code, line
    assert LINE.fullmatch(line), line
    assert case.what in line, line
    assert case.step in line, line
    assert "Traceback" not in line
    key = case.env.get("KOALA_API_KEY")
    assert key is None or key not in line
    assert "ssl:default" not in line
    # A status once per clause: never "404 404: Not Found".
    assert not re.search(r"\b([45]\d\d)\b[^;()]*\b\1\b", line), line
    if case.attempts is None:
        assert "attempts" not in line
    else:
        assert f"(after {case.attempts} attempts)" in line
    if case.counted:
        assert len(world.sandbox.requests) == case.attempts


# --- koala check's report ----------------------------------------------------------


def test_check_names_the_next_step_of_a_wrong_path(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--endpoint", world.wrong_path()]) == ExitCode.STATUS
    out = capsys.readouterr().out
    assert re.search(
        r"^next step: +The Koala API answers at the path /api/gpt/: set --endpoint "
        rf"to {re.escape(world.sandbox.url)}/api/gpt/\.$",
        out,
        re.MULTILINE,
    )
    assert main(["check", "--json", "--endpoint", world.wrong_path()]) == 5
    report = json.loads(capsys.readouterr().out)
    assert report["next_step"].startswith("The Koala API answers at the path")


def test_check_all_names_the_next_step_when_no_dialect_works(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--all", "--endpoint", world.wrong_path()]) == ExitCode.STATUS
    out = capsys.readouterr().out
    assert "use:      none of the dialects works" in out
    assert "next step: The Koala API answers at the path /api/gpt/" in out


def test_check_gives_no_rate_for_a_burst(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # The sandbox writes the whole default reply at once: one burst.
    assert main(["check", "--endpoint", world.sandbox.api_endpoint]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pieces/s: +- \(all in one burst, under 20 ms\)$", out, re.M)
    assert main(["check", "--json", "--endpoint", world.sandbox.api_endpoint]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pieces"] > 1
    assert report["pieces_per_second"] is None


# --- koala serve: what an HTTP client reads -----------------------------------------


def test_the_servers_403_for_the_api_dialect_speaks_to_an_http_client(
    start_server: Callable[..., ServerThread], sandbox: Sandbox
) -> None:
    server = start_server(client_protocols=("auto", "history", "messages", "api"))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    with client, pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(
            model="",
            messages=[{"role": "user", "content": "Hi"}],
            extra_body={"protocol": "api"},
        )
    message = caught.value.body["message"]  # type: ignore[index]
    assert "pass api_key" not in message
    assert "send another protocol, or none for the server's own" in message
    assert sandbox.requests == []
