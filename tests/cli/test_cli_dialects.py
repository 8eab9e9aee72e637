"""The dialects from the command line: `--protocol`, `--web-search`, the key,
`koala check --all`, `koala models --protocol` and `koala sandbox --protocol`
(koala_chat._cli.options, survey; koala_chat.sandbox.cli).

Requests go over real TCP to sandboxes that accept one dialect each, as strictly
as docs/protocol.md, "The sandbox's dialects" says.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from koala_chat._cli import main
from koala_chat._cli.exits import ExitCode
from koala_chat.providers.dialects import API, DIALECTS, MESSAGES
from koala_chat.sandbox import SANDBOX_API_KEY, Reply, Sandbox
from koala_chat.sandbox import cli as sandbox_cli
from koala_chat.sandbox.__main__ import main as sandbox_main

#: A key no output may ever show: recognisable wherever it would leak.
KEY = "kc-LEAKCHECK-5f0e2d7a-9b1c-4e3f-a6d8-2c4b6e8f0a1d"

Captured = tuple[int, str, str]
Start = Callable[..., Sandbox]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test with no endpoint, protocol or key configured."""
    for name in ("KOALA_API_ENDPOINT", "KOALA_PROTOCOL", "KOALA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO())


@pytest.fixture
def strict() -> Iterator[Start]:
    """Start sandboxes that accept one dialect (and `KEY` in the api dialect)."""
    started: list[Sandbox] = []

    def start(protocol: str, **options: object) -> Sandbox:
        sandbox = Sandbox(protocol=protocol, api_key=KEY, **options)
        started.append(sandbox)
        sandbox.start()
        return sandbox

    try:
        yield start
    finally:
        for sandbox in started:
            sandbox.stop()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A file holding `KEY` and a trailing newline, as an editor saves it."""
    path = tmp_path / "koala-key"
    path.write_text(f"{KEY}\n", encoding="utf-8")
    return path


def koala(capsys: pytest.CaptureFixture[str], *argv: str) -> Captured:
    """Run `koala ARGV` in-process; return the exit code, stdout and stderr."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def no_key_in(*texts: str) -> bool:
    return all(KEY not in text for text in texts)


# --- koala chat in each dialect ------------------------------------------------


def test_chat_in_the_messages_dialect(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("messages")
    url = sandbox.api_endpoint
    code, out, err = koala(
        capsys, "chat", "--endpoint", url, "--protocol", "messages", "Hi"
    )
    assert (code, err) == (0, "")
    assert (
        out == 'You said: "Hi". History: 0 user, 0 assistant. Model: gemini-3-flash.\n'
    )
    (request,) = sandbox.requests
    assert request.json == {
        "messages": [{"role": "user", "content": "Hi", "attachments": []}],
        "model": "gemini-3-flash",
    }
    assert request.headers["flag-real-time-data"] == "true"
    assert "Visitor-ID" not in request.headers


def test_web_search_off_in_the_messages_dialect(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("messages")
    argv = ["--protocol", "messages", "--web-search", "off", "-m", "claude-4.5-haiku"]
    code, _, err = koala(
        capsys, "chat", "--endpoint", sandbox.api_endpoint, *argv, "Hi"
    )
    assert (code, err) == (0, "")
    (request,) = sandbox.requests
    assert request.headers["flag-real-time-data"] == "false"
    assert request.json["model"] == "claude-4.5-haiku"


def test_chat_in_the_api_dialect_with_a_key_file(
    capsys: pytest.CaptureFixture[str], strict: Start, key_file: Path
) -> None:
    sandbox = strict("api")
    code, out, err = koala(
        capsys,
        "chat",
        "--endpoint",
        sandbox.api_endpoint,
        "--api-key-file",
        str(key_file),
        "--web-search",
        "on",
        "-s",
        "Be brief.",
        "Hi",
    )
    assert (code, err) == (0, "")
    assert out.startswith('You said: "Hi Be brief."')
    (request,) = sandbox.requests
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.json == {
        "input": "Hi Be brief.",
        "inputHistory": [],
        "outputHistory": [],
        "model": "gpt-4o-mini",
        "realTimeData": True,
    }
    assert no_key_in(out, err)


def test_a_key_in_the_environment_alone_means_the_api_dialect(
    capsys: pytest.CaptureFixture[str], strict: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = strict("api")
    monkeypatch.setenv("KOALA_API_KEY", KEY)
    code, out, err = koala(capsys, "chat", "--endpoint", sandbox.api_endpoint, "Hi")
    assert (code, err) == (0, "")
    assert sandbox.requests[0].json["realTimeData"] is False
    assert no_key_in(out, err)


def test_koala_protocol_in_the_environment(
    capsys: pytest.CaptureFixture[str], strict: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = strict("messages")
    monkeypatch.setenv("KOALA_PROTOCOL", "messages")
    assert koala(capsys, "chat", "--endpoint", sandbox.api_endpoint, "Hi")[0] == 0
    assert len(sandbox.requests) == 1
    assert "messages" in sandbox.requests[0].json


def test_the_option_wins_over_the_environment(
    capsys: pytest.CaptureFixture[str], strict: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = strict("history")
    monkeypatch.setenv("KOALA_PROTOCOL", "messages")
    argv = ["--endpoint", sandbox.api_endpoint, "--protocol", "history", "Hi"]
    assert koala(capsys, "chat", *argv)[0] == 0
    assert sandbox.requests[0].json["input"] == "Hi"


def test_auto_finds_the_messages_dialect_and_remembers_it(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("messages")
    first = koala(capsys, "chat", "--endpoint", sandbox.api_endpoint, "Hi")
    assert first[0] == 0
    assert first[1].endswith("Model: gemini-3-flash.\n")
    # The seed's request first, refused for its shape, then the messages one.
    assert ["input" in r.json for r in sandbox.requests] == [True, False]
    second = koala(capsys, "chat", "--endpoint", sandbox.api_endpoint, "Again")
    assert second[0] == 0
    # Later calls of this process go straight to the dialect that was accepted.
    assert len(sandbox.requests) == 3
    assert "messages" in sandbox.requests[2].json


def test_the_in_process_sandbox_speaks_the_api_dialect(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = koala(capsys, "chat", "--sandbox", "--protocol", "api", "Hi")
    assert (code, err) == (0, "")
    assert out.startswith('You said: "Hi".')


def test_demo_in_the_messages_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = koala(capsys, "demo", "--protocol", "messages")
    assert code == 0
    assert out.endswith("History: 1 user, 1 assistant. Model: gemini-3-flash.\n")


# --- the key: read from a file or the environment, shown nowhere --------------------


def test_the_api_dialect_without_a_key_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("api")
    argv = ["--endpoint", sandbox.api_endpoint, "--protocol", "api", "Hi"]
    code, out, err = koala(capsys, "chat", *argv)
    assert code == ExitCode.USAGE
    assert out == ""
    assert err.count("\n") == 1
    assert "KOALA_API_KEY" in err
    assert "--api-key-file" in err
    assert sandbox.requests == []


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "Cannot read the key file"),
        ("\n  \n", "is empty"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_a_bad_key_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: str | bytes | None,
    says: str,
) -> None:
    path = tmp_path / "key"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    code, out, err = koala(capsys, "chat", "--api-key-file", str(path), "Hi")
    assert code == ExitCode.USAGE
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("koala: error: ")
    assert says in err
    assert str(path) in err


def test_a_malformed_key_is_refused_without_being_shown(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "key"
    path.write_text(f"{KEY} {KEY}\n", encoding="utf-8")
    code, out, err = koala(capsys, "chat", "--api-key-file", str(path), "Hi")
    assert code == ExitCode.USAGE
    assert err.count("\n") == 1
    assert no_key_in(out, err)


def test_a_bad_koala_protocol_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOALA_PROTOCOL", "carrier-pigeon")
    code, _, err = koala(capsys, "chat", "--sandbox", "Hi")
    assert code == ExitCode.USAGE
    assert err.count("\n") == 1
    assert "KOALA_PROTOCOL='carrier-pigeon' names no dialect" in err


def test_a_refused_key_is_never_shown(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox wants another key: 401, an authentication error, in every
    # output: the one-line error, our --debug traceback, check's JSON and table.
    with Sandbox(protocol="api", api_key="not-the-same-key") as sandbox:
        monkeypatch.setenv("KOALA_API_KEY", KEY)
        url = sandbox.api_endpoint
        code, out, err = koala(capsys, "chat", "--endpoint", url, "Hi")
        assert code == ExitCode.STATUS
        assert "KOALA_API_KEY" in err
        assert err.count("\n") == 1
        code, out2, err2 = koala(capsys, "--debug", "chat", "--endpoint", url, "Hi")
        assert code == ExitCode.STATUS
        assert "Traceback" in err2
        results = [
            koala(capsys, "check", "--endpoint", url, "--json"),
            koala(capsys, "check", "--endpoint", url),
            koala(capsys, "check", "--endpoint", url, "--all", "--json"),
            koala(capsys, "check", "--endpoint", url, "--all"),
            koala(capsys, "--debug", "check", "--endpoint", url, "--all"),
        ]
        assert all(len(r[1]) > 0 for r in results)
        assert no_key_in(out, err, out2, err2, *(t for r in results for t in r[1:]))
        assert all(KEY.encode() not in r.body for r in sandbox.requests)


# --- koala check ---------------------------------------------------------------


def test_check_reports_the_dialect_it_used(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("messages")
    argv = ["--endpoint", sandbox.api_endpoint, "--protocol", "messages", "--json"]
    code, out, _ = koala(capsys, "check", *argv)
    assert code == 0
    report = json.loads(out)
    assert report["protocol"] == "messages"
    assert report["dialect"] == "messages"
    assert report["model"] == "gemini-3-flash"
    code, out, _ = koala(capsys, "check", *argv[:-1])
    assert code == 0
    assert "dialect:      messages" in out.splitlines()


def check_all(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, *argv: str
) -> tuple[int, dict[str, dict[str, object]], dict[str, object]]:
    """Run `koala check --all --json`; return the code, rows by dialect, report."""
    code, out, err = koala(
        capsys, "check", "--endpoint", sandbox.api_endpoint, "--all", "--json", *argv
    )
    assert err == ""
    report = json.loads(out)
    assert report["exit_code"] == code
    rows = {row["dialect"]: row for row in report["dialects"]}
    assert list(rows) == ["history", "messages", "api"]
    return code, rows, report


SKIPPED = "skipped: no key (KOALA_API_KEY or --api-key-file)"


def test_check_all_against_a_history_sandbox(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("history")
    code, rows, report = check_all(capsys, sandbox)
    assert code == 0
    assert (report["use"], report["setting"]) == ("history", "KOALA_PROTOCOL=history")
    assert rows["history"]["verdict"] == "works"
    assert rows["history"]["status"] == 200
    assert isinstance(rows["history"]["first_piece_seconds"], float)
    assert rows["messages"]["status"] == 400
    assert rows["messages"]["verdict"] == "not this dialect"
    assert rows["api"]["verdict"] == SKIPPED
    assert rows["api"]["skipped"] is True
    assert [r.json and ("messages" in r.json) for r in sandbox.requests] == [
        False,
        True,
    ]


def test_check_all_against_a_messages_sandbox(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("messages")
    code, rows, report = check_all(capsys, sandbox)
    assert code == 0
    assert report["use"] == "messages"
    assert rows["history"]["status"] == 400
    assert rows["messages"]["verdict"] == "works"
    assert rows["messages"]["setting"] == "KOALA_PROTOCOL=messages"
    assert rows["messages"]["model"] == MESSAGES.default_model
    assert len(sandbox.requests) == 2  # one each; the api row sent nothing


def test_check_all_against_an_api_sandbox(
    capsys: pytest.CaptureFixture[str], strict: Start, key_file: Path
) -> None:
    sandbox = strict("api")
    code, rows, report = check_all(capsys, sandbox, "--api-key-file", str(key_file))
    assert code == 0
    assert report["use"] == "api"
    assert rows["history"]["status"] == rows["messages"]["status"] == 401
    assert rows["api"]["verdict"] == "works"
    assert rows["api"]["pieces"] == 1  # one JSON object, the whole reply
    # The key went to the api dialect only.
    authorized = [r.headers.get("Authorization") for r in sandbox.requests]
    assert authorized == [None, None, f"Bearer {KEY}"]


def test_check_all_when_nothing_works(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("api")
    code, rows, report = check_all(capsys, sandbox)
    assert report["use"] is None
    assert report["works"] is False
    assert rows["api"]["verdict"] == SKIPPED
    # A 401 says more than a refused shape would: it is the code.
    assert code == ExitCode.STATUS


def test_check_all_prefers_the_telling_failure(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("messages")
    sandbox.push(Reply(status=429, body=b"quota", headers={"Retry-After": "60"}))
    code, rows, _ = check_all(capsys, sandbox)
    assert rows["history"]["status"] == 400
    assert rows["messages"]["verdict"] == "rate limit"
    assert code == ExitCode.RATE_LIMIT


def test_the_check_all_table(capsys: pytest.CaptureFixture[str], strict: Start) -> None:
    sandbox = strict("messages")
    code, out, err = koala(capsys, "check", "--endpoint", sandbox.api_endpoint, "--all")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "dialect",
        "status",
        "first",
        "piece",
        "verdict",
        "setting",
    ]
    history, messages = (line.split() for line in lines[1:3])
    assert history[:3] == ["history", "400", "-"]
    assert history[-1] == "KOALA_PROTOCOL=history"
    assert messages[:2] == ["messages", "200"]
    assert messages[3:] == ["ms", "works", "KOALA_PROTOCOL=messages"]
    assert lines[3].startswith("api")
    assert SKIPPED in lines[3]
    assert f"endpoint: {sandbox.api_endpoint}" in lines
    assert "use:      KOALA_PROTOCOL=messages (or --protocol messages)" in lines


def test_check_all_leaves_out_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = koala(capsys, "check", "--all", "--protocol", "history")
    assert code == ExitCode.USAGE
    assert "--all tries every dialect" in err


# --- koala models --------------------------------------------------------------


def test_models_of_a_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = koala(capsys, "models", "--protocol", "messages")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(MESSAGES.models)
    assert [line.split() for line in lines if line.endswith("(default)")] == [
        ["gemini-3-flash", "(default)"]
    ]
    code, out, _ = koala(capsys, "models", "--protocol", "messages", "--json")
    assert json.loads(out) == {
        "protocol": "messages",
        "default": "gemini-3-flash",
        "models": list(MESSAGES.models),
        "accepts_unknown": True,
    }


def test_a_key_makes_models_those_of_the_api(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOALA_API_KEY", KEY)
    code, out, err = koala(capsys, "models", "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["protocol"], data["models"]) == ("api", list(API.models))
    assert no_key_in(out, err)


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_models_of_every_dialect(
    capsys: pytest.CaptureFixture[str], dialect: str
) -> None:
    code, out, _ = koala(capsys, "models", "--protocol", dialect, "--json")
    assert code == 0
    assert json.loads(out)["default"] == DIALECTS[dialect].default_model


# --- koala sandbox -------------------------------------------------------------


URL = "http://127.0.0.1:8000"


def test_the_banner_prints_the_test_key_for_the_api_dialect() -> None:
    lines = sandbox_cli.banner(URL, "api", None).splitlines()
    assert lines[:2] == [
        f"Koala sandbox listening on {URL}",
        f"export KOALA_API_ENDPOINT={URL}/api/gpt/",
    ]
    assert f"export KOALA_API_KEY={SANDBOX_API_KEY}" in lines


def test_the_banner_of_any_dialect_shows_the_key_as_a_comment() -> None:
    # An exported key alone would switch the client to the api dialect.
    text = sandbox_cli.banner(URL, "any", None)
    exports = [line for line in text.splitlines() if line.startswith("export ")]
    assert exports == [f"export KOALA_API_ENDPOINT={URL}/api/gpt/"]
    assert f"# for the api dialect: export KOALA_API_KEY={SANDBOX_API_KEY}" in text


@pytest.mark.parametrize("protocol", ["history", "messages"])
def test_the_banner_of_a_keyless_dialect_has_no_key(protocol: str) -> None:
    assert "KOALA_API_KEY" not in sandbox_cli.banner(URL, protocol, None)


def test_the_banner_never_prints_a_key_from_a_file(key_file: Path) -> None:
    text = sandbox_cli.banner(URL, "api", str(key_file))
    assert "KOALA_API_KEY" not in text
    assert str(key_file) in text


def test_both_sandbox_commands_take_protocol_and_key_file(tmp_path: Path) -> None:
    for parser in (sandbox_cli.build_parser("sandbox"), _koala_sandbox_parser()):
        args = parser.parse_args(["--protocol", "messages", "--api-key-file", "k"])
        assert (args.protocol, args.api_key_file) == ("messages", "k")
        assert parser.parse_args([]).protocol == "any"


def _koala_sandbox_parser() -> object:
    import argparse

    from koala_chat._cli.app import build_parser

    subparsers = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return subparsers.choices["sandbox"]


def test_a_bad_sandbox_key_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    argv = ["--port", "0", "--api-key-file", str(empty)]
    assert sandbox_main(argv) == ExitCode.USAGE
    alone = capsys.readouterr()
    assert main(["sandbox", *argv]) == ExitCode.USAGE
    through_koala = capsys.readouterr()
    for captured in (alone, through_koala):
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert f"The key file {empty} is empty" in captured.err


def test_a_bad_sandbox_protocol_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert sandbox_main(["--protocol", "smoke-signals"]) == ExitCode.USAGE
    assert "invalid choice: 'smoke-signals'" in capsys.readouterr().err


def test_check_follows_auto_to_the_dialect_that_works(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("messages")
    code, out, _ = koala(capsys, "check", "--endpoint", sandbox.api_endpoint, "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["dialect"], report["refused_first"]) == ("messages", "history")
    assert report["protocol"] is None
    assert ["messages" in r.json for r in sandbox.requests] == [False, True]


def test_check_with_a_dialect_sends_one_request(
    capsys: pytest.CaptureFixture[str], strict: Start
) -> None:
    sandbox = strict("messages")
    argv = ["--endpoint", sandbox.api_endpoint, "--protocol", "history", "--json"]
    code, out, _ = koala(capsys, "check", *argv)
    assert code == ExitCode.STATUS
    report = json.loads(out)
    assert (report["dialect"], report["refused_first"]) == ("history", None)
    assert len(sandbox.requests) == 1
