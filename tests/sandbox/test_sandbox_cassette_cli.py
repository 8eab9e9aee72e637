"""`koala sandbox --record/--replay` from the command line, and `koala check`
and the `auto` negotiation against a replaying sandbox.

koala_chat.sandbox.cassette_options and cli; docs/protocol.md, "Cassettes".
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hardening import collect
from koala_chat import Koala
from koala_chat._cli import main as koala
from koala_chat.sandbox import Sandbox
from koala_chat.sandbox.__main__ import main as sandbox_main
from koala_chat.sandbox.cassette import load_cassette
from koala_chat.sandbox.cassette_options import responder_from
from koala_chat.sandbox.cli import build_parser
from koala_chat.sandbox.recorder import Recorder
from koala_chat.sandbox.replayer import Replayer

HI: list[Any] = [{"role": "user", "content": "Hi"}]


@pytest.fixture(autouse=True)
def no_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOALA_API_ENDPOINT", raising=False)


def check(
    capsys: pytest.CaptureFixture[str], endpoint: str, *argv: str
) -> dict[str, Any]:
    """Run `koala check --json`; return the report (its exit code in it)."""
    code = koala(["check", "--endpoint", endpoint, "--json", *argv])
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == code
    return dict(report)


def test_check_and_auto_give_the_same_verdicts_when_replayed(
    capsys: pytest.CaptureFixture[str], messages_only: Sandbox, tmp_path: Path
) -> None:
    """koala.sh speaks only the messages dialect: `auto` is refused its
    history request, then falls back (docs/protocol.md, "Choosing a dialect")."""
    cassette = tmp_path / "check.jsonl"
    recorder = Recorder(cassette, messages_only.api_endpoint)
    with Sandbox(responder=recorder) as recording:
        live = check(capsys, recording.api_endpoint)
        live_all = check(capsys, recording.api_endpoint, "--all")
        Koala.forget_dialects()
        live_values = asyncio.run(collect(HI, api_endpoint=recording.api_endpoint))
    upstream_requests = len(messages_only.requests)
    assert live["works"] is True
    assert live["dialect"] == "messages"
    assert live["refused_first"] == "history"
    Koala.forget_dialects()
    with Sandbox(responder=Replayer(cassette)) as replay:
        replayed = check(capsys, replay.api_endpoint)
        replayed_all = check(capsys, replay.api_endpoint, "--all")
        Koala.forget_dialects()
        replayed_values = asyncio.run(collect(HI, api_endpoint=replay.api_endpoint))
    assert len(messages_only.requests) == upstream_requests  # no network
    for key in ("works", "dialect", "refused_first", "status", "pieces", "exit_code"):
        assert replayed[key] == live[key], key
    rows = [(r["dialect"], r["verdict"]) for r in replayed_all["dialects"]]
    assert rows == [(r["dialect"], r["verdict"]) for r in live_all["dialects"]]
    assert ("messages", "works") in rows
    assert replayed_all["use"] == live_all["use"]
    assert replayed_values == live_values
    assert "".join(replayed_values).startswith('You said: "Hi"')


# Usage errors: one line, exit code 2, no server started


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--record", "c.jsonl"], "--record needs --upstream URL"),
        (
            ["--upstream", "http://127.0.0.1:1/"],
            "--upstream needs --record or --replay",
        ),
        (["--scrub", "x"], "--scrub needs --record or --replay"),
        (["--record-mode", "new"], "--record-mode needs --replay"),
        (
            ["--record", "c.jsonl", "--upstream", "http://x/", "--replay-timing"],
            "--replay-timing and --record-mode go with --replay",
        ),
        (["--replay", "c.jsonl", "--record-mode", "new"], "needs --upstream URL"),
        (
            ["--replay", "c.jsonl", "--upstream", "http://127.0.0.1:1/"],
            "--replay never uses the network",
        ),
        (["--record", "c.jsonl", "--replay", "c.jsonl"], "not allowed with argument"),
        (["--replay", "c.jsonl", "--scrub", "("], "not a regular expression"),
        (["--replay", "missing.jsonl"], "Cannot read the cassette missing.jsonl"),
        (["--replay", "bad.jsonl"], "bad.jsonl, line 2: not a cassette exchange"),
        (
            ["--record", "c.jsonl", "--upstream", "ftp://koala.sh/"],
            "must be an http(s) URL",
        ),
    ],
)
def test_options_that_do_not_go_together_are_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.jsonl").write_bytes(b"")
    (tmp_path / "bad.jsonl").write_bytes(b"\n{}\n")
    assert sandbox_main(["--port", "0", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert says in captured.err


def test_the_options_build_the_responder_they_name(tmp_path: Path) -> None:
    parser = build_parser("koala sandbox")
    cassette = str(tmp_path / "c.jsonl")
    proxy = "http://koala:pass-w0rd@127.0.0.1:3128"
    new = responder_from(
        parser.parse_args(
            ["--replay", cassette, "--record-mode", "new", "--replay-timing",
             "--upstream", "http://127.0.0.1:1/api/gpt/", "--proxy", proxy]
        )
    )  # fmt: skip
    assert isinstance(new, Replayer)
    assert new.timing
    assert isinstance(new.recorder, Recorder)
    assert new.recorder.proxy == proxy
    assert "pass-w0rd" not in new.describe()
    assert "recording what it lacks" in new.describe()
    assert responder_from(parser.parse_args([])) is None


# The command itself


@pytest.fixture
def command(tmp_path: Path) -> Iterator[Any]:
    """Start `python -m koala_chat.sandbox ARGS`; return its banner and process."""
    processes: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> tuple[list[str], subprocess.Popen[str]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "koala_chat.sandbox", "--port", "0", *argv],
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        processes.append(process)
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(5)]
        return banner, process

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(10)


def test_the_command_records_then_replays(
    capsys: pytest.CaptureFixture[str],
    command: Any,
    sandbox: Sandbox,
    tmp_path: Path,
) -> None:
    banner, process = command(
        "--record", "koala.jsonl", "--upstream", sandbox.api_endpoint,
        "--scrub", r"Say \w+",
    )  # fmt: skip
    assert banner[-1] == (f"# recording to koala.jsonl from {sandbox.api_endpoint}\n")
    url = banner[0].split()[-1]
    live = check(capsys, f"{url}/api/gpt/")
    assert stop(process) == 0
    cassette = tmp_path / "koala.jsonl"
    ((_, recorded),) = load_cassette(cassette)
    assert "Say hello" not in cassette.read_text()  # --scrub
    assert recorded.request.conversation[-1].content.startswith("***")
    banner, process = command("--replay", "koala.jsonl", "--scrub", r"Say \w+")
    assert banner[-1] == "# replaying koala.jsonl (1 recorded requests)\n"
    url = banner[0].split()[-1]
    replayed = check(capsys, f"{url}/api/gpt/")
    assert stop(process) == 0
    assert replayed["works"] is True
    assert replayed["pieces"] == live["pieces"]
    assert len(sandbox.requests) == 1
