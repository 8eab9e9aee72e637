"""OpenAI's Codex CLI (`codex exec`) against `koala serve`, offline.

Codex speaks only the Responses API. It is pinned in package.json and
installed by `npm ci` (scripts/lint-web, which .ci/run runs first); the test
fails, rather than skips, when it is missing. Codex reads the provider from
`config.toml` in its `CODEX_HOME`, as the README shows, and the key from the
variable `env_key` names.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread

CODEX = Path(__file__).resolve().parent.parent / "node_modules" / ".bin" / "codex"
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


def test_codex_exec_answers_through_koala_serve(
    start_server: Callable[..., ServerThread], sandbox: Sandbox, tmp_path: Path
) -> None:
    assert CODEX.exists(), "Codex is not installed: run scripts/lint-web (npm ci)"
    server = start_server(api_key=KEY)
    home = tmp_path / "codex-home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(config(server.base_url))
    last = tmp_path / "last-message.txt"
    sandbox.push(Reply(values=["Koalas sleep ", "up to 22 hours a day."]))
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
            "Tell me about koalas",
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
    assert last.read_text().strip() == ANSWER
    (request,) = sandbox.requests
    assert "Tell me about koalas" in request.json["input"]
    # Codex's own tools reach the model as the emulation's instruction.
    assert "You can call these tools" in request.json["input"]
