"""`koala check` and `koala models` in-process (koala_chat._cli.check, models)."""

from __future__ import annotations

import json
import socket

import pytest

from koala_chat import Koala
from koala_chat._cli import main
from koala_chat._cli.exits import ExitCode
from koala_chat.sandbox import Reply, Sandbox


@pytest.fixture(autouse=True)
def no_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOALA_API_ENDPOINT", raising=False)


def check(
    capsys: pytest.CaptureFixture[str], endpoint: str, *argv: str
) -> tuple[int, dict[str, object]]:
    """Run `koala check --json`; return the exit code and the parsed report."""
    code = main(["check", "--endpoint", endpoint, "--json", *argv])
    captured = capsys.readouterr()
    assert captured.err == ""
    report = json.loads(captured.out)
    assert isinstance(report, dict)
    assert report["exit_code"] == code
    return code, report


def test_a_working_endpoint(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["a", "b", "c", "d"], interval=0.01))
    code, report = check(capsys, sandbox.api_endpoint)
    assert code == 0
    assert report["works"] is True
    assert report["status"] == 200
    assert report["pieces"] == 4
    assert report["reason"] is None
    first_byte, first_piece = (
        report["first_byte_seconds"],
        report["first_piece_seconds"],
    )
    assert isinstance(first_byte, float)
    assert isinstance(first_piece, float)
    assert 0 < first_byte <= first_piece
    rate = report["pieces_per_second"]
    assert isinstance(rate, float)
    assert 0 < rate < 1000  # three gaps of at least 10 ms
    assert sandbox.requests[0].json["input"] == "Say hello in one word."


def test_the_human_report(capsys: pytest.CaptureFixture[str], sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["a", "b"]))
    assert main(["check", "--endpoint", sandbox.api_endpoint, "--prompt", "Hi"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "works:        yes"
    assert f"endpoint:     {sandbox.api_endpoint}" in lines
    assert "status:       200" in lines
    assert "pieces:       2" in lines
    assert any(
        line.startswith("first piece:  ") and line.endswith(" ms") for line in lines
    )
    assert sandbox.requests[0].json["input"] == "Hi"


@pytest.mark.parametrize(
    ("reply", "code", "reason", "status"),
    [
        (
            Reply(status=429, body=b"quota", headers={"Retry-After": "60"}),
            ExitCode.RATE_LIMIT,
            "rate limit",
            429,
        ),
        (
            Reply(
                status=403,
                content_type="text/html",
                headers={"cf-mitigated": "challenge", "cf-ray": "8f00-AMS"},
                body=b"<title>Just a moment...</title>",
            ),
            ExitCode.STATUS,
            "cloudflare challenge",
            403,
        ),
        (Reply(status=502, body=b"bad gateway"), ExitCode.STATUS, "server error", 502),
        (
            Reply(content_type="text/html", body=b"<title>Log in</title>"),
            ExitCode.PROTOCOL,
            "not an event stream",
            200,
        ),
        (Reply(values=[]), ExitCode.PROTOCOL, "empty reply", 200),
        (Reply(body=b'data: "cut'), ExitCode.PROTOCOL, "protocol error", 200),
    ],
)
def test_failures_name_their_reason(
    capsys: pytest.CaptureFixture[str],
    sandbox: Sandbox,
    reply: Reply,
    code: int,
    reason: str,
    status: int,
) -> None:
    sandbox.push(reply)
    result, report = check(capsys, sandbox.api_endpoint)
    assert result == code
    assert report["works"] is False
    assert report["reason"] == reason
    assert report["status"] == status
    assert isinstance(report["error"], str)
    assert len(sandbox.requests) == 1  # a check does not retry


def test_an_unreachable_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, report = check(capsys, f"http://127.0.0.1:{port}/api/gpt/")
    assert code == ExitCode.TRANSPORT
    assert report["reason"] == "unreachable"
    assert report["status"] is None
    assert report["first_byte_seconds"] is None


def test_the_human_report_of_a_failure(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox
) -> None:
    sandbox.push(Reply(status=429, body=b"quota"))
    assert main(["check", "--endpoint", sandbox.api_endpoint]) == ExitCode.RATE_LIMIT
    out = capsys.readouterr().out
    assert "works:        no" in out
    assert "reason:       rate limit" in out


def test_the_environment_names_the_endpoint(
    capsys: pytest.CaptureFixture[str],
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KOALA_API_ENDPOINT", sandbox.api_endpoint)
    assert main(["check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["endpoint"] == sandbox.api_endpoint


def test_credentials_in_the_endpoint_are_not_printed(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox
) -> None:
    endpoint = sandbox.api_endpoint.replace("http://", "http://me:t0ps3cret@")
    assert main(["check", "--endpoint", endpoint]) == 0
    out = capsys.readouterr().out
    assert "t0ps3cret" not in out
    assert "me:***@" in out


def test_a_bad_endpoint_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--endpoint", "ftp://example.org/"]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("koala: error: The API endpoint must be")


# --- models --------------------------------------------------------------------


def test_models_marks_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(Koala.models)
    assert [line.split() for line in lines if line.endswith("(default)")] == [
        [Koala.default_model, "(default)"]
    ]


def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "protocol": "auto",
        "default": "gpt-4o-mini",
        "models": list(Koala.models),
        "accepts_unknown": True,
    }
