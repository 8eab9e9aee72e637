"""The `koala` command as a process: the installed script, signals, pipes."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from koala_chat._cli import main
from koala_chat._cli.exits import ExitCode
from koala_chat.sandbox import Reply, Sandbox

TIMEOUT = 20


def environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("KOALA_API_ENDPOINT", "KOALA_PROTOCOL", "KOALA_API_KEY"):
        env.pop(name, None)
    return env


def koala_process(*argv: str) -> subprocess.Popen[bytes]:
    """Start `python -m koala_chat ARGV` with its output on pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "koala_chat", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started, killed if still running at its end."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=TIMEOUT)


def test_the_installed_command(sandbox: Sandbox) -> None:
    script = Path(sys.executable).with_name("koala")
    assert script.exists(), "install the project: pip install -e '.[test]'"
    sandbox.push(Reply(values=["Hi ", "there"]))
    result = subprocess.run(
        [str(script), "chat", "--endpoint", sandbox.api_endpoint, "Hello"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment(),
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "Hi there\n", "")
    assert sandbox.requests[0].json["input"] == "Hello"


def test_a_closed_pipe_ends_quietly(
    sandbox: Sandbox, processes: list[subprocess.Popen[bytes]]
) -> None:
    sandbox.push(Reply(values=["one\n", "two\n", "three\n"], stall_at=1))
    process = koala_process("chat", "--endpoint", sandbox.api_endpoint, "Count")
    processes.append(process)
    assert process.stdout is not None
    assert process.stdout.readline() == b"one\n"
    process.stdout.close()  # `| head -1` has read its line and left
    assert sandbox.wait_stalled(TIMEOUT)
    sandbox.release()
    assert process.wait(TIMEOUT) == ExitCode.BROKEN_PIPE
    assert process.stderr is not None
    assert process.stderr.read() == b""


def test_ctrl_c_during_a_reply_exits_130(
    sandbox: Sandbox, processes: list[subprocess.Popen[bytes]]
) -> None:
    sandbox.push(Reply(values=["one ", "two"], stall_at=1))
    process = koala_process("chat", "--endpoint", sandbox.api_endpoint, "Count")
    processes.append(process)
    assert process.stdout is not None
    assert process.stdout.read(4) == b"one "
    process.send_signal(signal.SIGINT)
    assert process.wait(TIMEOUT) == ExitCode.INTERRUPTED
    assert sandbox.wait_disconnect(TIMEOUT)
    _, err = process.communicate(timeout=TIMEOUT)
    assert b"Traceback" not in err


@pytest.mark.parametrize("options", [[], ["--json"]])
def test_sigterm_during_a_reply_ends_its_line_and_exits_143(
    sandbox: Sandbox, processes: list[subprocess.Popen[bytes]], options: list[str]
) -> None:
    sandbox.push(Reply(values=["one", "two"], stall_at=1))
    process = koala_process(
        "chat", "--endpoint", sandbox.api_endpoint, *options, "Count"
    )
    processes.append(process)
    assert process.stdout is not None
    first = b'"one"\n' if options else b"one"
    assert process.stdout.read(len(first)) == first
    assert sandbox.wait_stalled(TIMEOUT)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == ExitCode.TERMINATED == 128 + signal.SIGTERM
    assert out == (b"" if options else b"\n")  # the line ended, nothing more
    assert err == b""
    assert sandbox.wait_disconnect(TIMEOUT)


def test_sigterm_on_a_terminal_ends_the_line_and_exits_143(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["one", "two"], stall_at=1))
    child = pexpect.spawn(
        sys.executable,
        ["-m", "koala_chat", "chat", "--endpoint", sandbox.api_endpoint, "Count"],
        env={**environment(), "TERM": "dumb"},
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    try:
        child.expect_exact("one")
        assert sandbox.wait_stalled(TIMEOUT)
        child.kill(signal.SIGTERM)
        child.expect(pexpect.EOF)
        assert child.before == "\r\n"
        child.close()
        assert child.exitstatus == ExitCode.TERMINATED
    finally:
        child.close(force=True)


def test_sandbox_command_serves_until_ctrl_c(
    processes: list[subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process = koala_process("sandbox", "--port", "0", "--pieces", "12")
    processes.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().startswith(b"Koala sandbox listening on http://")
    export = process.stdout.readline().decode().strip()
    variable, _, url = export.removeprefix("export ").partition("=")
    assert variable == "KOALA_API_ENDPOINT"

    monkeypatch.setattr("sys.stdin", io.StringIO())
    monkeypatch.setenv(variable, url)
    assert main(["chat", "Hi"]) == 0
    # Ten words of summary, then filler up to twelve pieces.
    assert capsys.readouterr().out.endswith("gpt-4o-mini. Koalas sleep\n")

    process.send_signal(signal.SIGINT)
    assert process.wait(TIMEOUT) == 0
    _, err = process.communicate(timeout=TIMEOUT)
    assert err == b""


def banner(process: subprocess.Popen[bytes]) -> dict[str, str]:
    """Read the sandbox's banner up to its last line; return what it exports."""
    assert process.stdout is not None
    exports: dict[str, str] = {}
    while line := process.stdout.readline().decode():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            exports[name] = value
        elif line.startswith("# it accepts"):
            # The last fixed line; a key line, if any, comes right after it.
            following = process.stdout.readline().decode()
            if following.startswith("export "):
                name, _, value = (
                    following.removeprefix("export ").strip().partition("=")
                )
                exports[name] = value
            return exports
    pytest.fail("the sandbox ended before its banner did")


def test_an_api_sandbox_exports_its_test_key(
    processes: list[subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process = koala_process("sandbox", "--port", "0", "--protocol", "api")
    processes.append(process)
    exports = banner(process)
    assert set(exports) == {"KOALA_API_ENDPOINT", "KOALA_API_KEY"}
    monkeypatch.setattr("sys.stdin", io.StringIO())
    monkeypatch.delenv("KOALA_PROTOCOL", raising=False)
    for name, value in exports.items():
        monkeypatch.setenv(name, value)
    # The exported key alone selects the api dialect, which this sandbox wants.
    assert main(["chat", "Hi"]) == 0
    assert capsys.readouterr().out.startswith('You said: "Hi".')
    process.send_signal(signal.SIGINT)
    assert process.wait(TIMEOUT) == 0


def test_a_key_file_keeps_the_key_out_of_the_process_list(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    key = "kc-PROCESSLIST-0d9c8b7a"
    path = tmp_path / "key"
    path.write_text(f"{key}\n", encoding="utf-8")
    process = koala_process(
        "sandbox", "--port", "0", "--protocol", "api", "--api-key-file", str(path)
    )
    processes.append(process)
    exports = banner(process)
    assert set(exports) == {"KOALA_API_ENDPOINT"}
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    assert str(path).encode() in cmdline
    assert key.encode() not in cmdline
    request = urllib.request.Request(
        exports["KOALA_API_ENDPOINT"],
        data=json.dumps({"input": "Hi"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        assert json.load(response)["output"].startswith('You said: "Hi".')
    process.send_signal(signal.SIGINT)
    assert process.wait(TIMEOUT) == 0
    _, err = process.communicate(timeout=TIMEOUT)
    assert key.encode() not in err


def test_python_dash_m_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "koala_chat", "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert result.stdout.startswith("koala ")


# `koala serve` with a provider of the test's own, in a process of its own so
# that Ctrl-C (SIGINT) stops it the way it stops a person's server.
SERVE_ANY_PROVIDER = textwrap.dedent(
    """
    import sys
    from koala_chat import AsyncGeneratorProvider, ProviderModelMixin
    from koala_chat._cli import main

    class EchoProvider(AsyncGeneratorProvider, ProviderModelMixin):
        default_model = "echo-large"
        models = ("echo-small", "echo-large")

        @classmethod
        async def create_async_generator(cls, model, messages, **kwargs):
            yield f"{cls.get_model(model)} heard {messages[-1]['content']}"

    sys.exit(main(["serve", "--port", "0"], provider=EchoProvider))
    """
)


def test_serve_hands_the_provider_to_the_server(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_ANY_PROVIDER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    processes.append(process)
    assert process.stderr is not None
    for line in process.stderr:
        if match := re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line):
            break
    else:
        pytest.fail("the server never said where it listens")
    base = f"http://127.0.0.1:{int(match.group(1))}/v1"
    with urllib.request.urlopen(f"{base}/models", timeout=TIMEOUT) as response:
        listed = [model["id"] for model in json.load(response)["data"]]
    assert listed == ["echo-small", "echo-large"]
    request = urllib.request.Request(
        f"{base}/chat/completions",
        data=json.dumps(
            {"model": "echo-small", "messages": [{"role": "user", "content": "Hi"}]}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        reply = json.load(response)
    assert reply["choices"][0]["message"]["content"] == "echo-small heard Hi"
    process.send_signal(signal.SIGINT)
    assert process.wait(TIMEOUT) == 0
