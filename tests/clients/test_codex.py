"""OpenAI's Codex CLI (`codex exec`) against `koala serve`, offline.

Codex speaks only the Responses API. It is pinned in package.json and
installed by `npm ci` (scripts/lint-web, which .ci/run runs first); the test
fails, rather than skips, when it is missing. Codex reads the provider from
`config.toml` in its `CODEX_HOME`, as the README shows, and the key from the
variable `env_key` names.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread

CODEX = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "codex"
KEY = "codex-test-key"
ANSWER = "Koalas sleep up to 22 hours a day."


def config(base_url: str) -> str:
    """Return Codex's `config.toml` for a `koala serve` at `base_url`."""
    return f"""\
model = "gpt-4o-mini"
model_provider = "koala"

[model_providers.koala]
name = "koala serve"
base_url = "{base_url}"
wire_api = "responses"
env_key = "KOALA_SERVER_API_KEY"
"""


def codex_exec(base_url: str, prompt: str, tmp_path: Path) -> str:
    """Run `codex exec PROMPT` against `base_url`; return its last message."""
    assert CODEX.exists(), "Codex is not installed: run scripts/lint-web (npm ci)"
    home = tmp_path / "codex-home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(config(base_url))
    last = tmp_path / "last-message.txt"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "KOALA_SERVER_API_KEY": KEY,
    }
    done = subprocess.run(
        [
            str(CODEX),
            "exec",
            "--skip-git-repo-check",
            "--ephemeral",
            "--output-last-message",
            str(last),
            prompt,
        ],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return last.read_text().strip()


def test_codex_exec_answers_through_koala_serve(
    start_server: Callable[..., ServerThread], sandbox: Sandbox, tmp_path: Path
) -> None:
    server = start_server(api_key=KEY)
    sandbox.push(Reply(values=["Koalas sleep ", "up to 22 hours a day."]))
    assert codex_exec(server.base_url, "Tell me about koalas", tmp_path) == ANSWER
    (request,) = sandbox.requests
    assert "Tell me about koalas" in request.json["input"]
    # Codex's own tools reach the model as the emulation's instruction.
    assert "You can call these tools" in request.json["input"]


def test_codex_runs_a_tool_call_and_sends_its_result_back(
    start_server: Callable[..., ServerThread], sandbox: Sandbox, tmp_path: Path
) -> None:
    server = start_server(api_key=KEY)
    call = {"name": "exec_command", "arguments": {"cmd": "echo koala-$((6*7))"}}
    sandbox.push(
        Reply(values=[json.dumps({"tool_calls": [call]})]),
        Reply(values=["The command printed koala-42."]),
    )
    answer = codex_exec(server.base_url, "Run a command", tmp_path)
    assert answer == "The command printed koala-42."
    first, second = (json.dumps(request.json) for request in sandbox.requests)
    assert "exec_command" in first
    # The function_call item and its function_call_output came back as text:
    # the command ran, and its output reached the model.
    assert "(exec_command) returned" in second
    assert "koala-42" in second
