"""The pytest plugin (koala_chat.pytest_plugin) and the example it documents.

Each case runs pytest in a child process, as a user's project would: the
plugin is found through its `pytest11` entry point, the example under
`examples/recorded` replays its committed cassette, and a copy of it goes
round the whole loop, recording from a sandbox and replaying offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from koala_chat.sandbox import Sandbox
from koala_chat.sandbox.cassette import load_cassette

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "recorded"
_RUN_TIMEOUT = 60


def run_pytest(where: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on `where` in a child process, without any Koala setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOALA_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "-o", "asyncio_default_fixture_loop_scope=function",
         str(where), *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=where if where.is_dir() else where.parent,
        timeout=_RUN_TIMEOUT,
        check=False,
    )  # fmt: skip


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the example application and its test, without its cassette."""
    copy = tmp_path / "app"
    copy.mkdir()
    for name in ("headline.py", "test_headline.py"):
        shutil.copy(EXAMPLE / name, copy / name)
    return copy


def test_the_plugin_is_registered_through_its_entry_point() -> None:
    (plugin,) = [e for e in entry_points(group="pytest11") if e.name == "koala"]
    assert plugin.value == "koala_chat.pytest_plugin"


def test_the_example_replays_its_committed_cassette() -> None:
    result = run_pytest(EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_loop_records_once_then_replays_offline(
    example: Path, messages_only: Sandbox
) -> None:
    missing = run_pytest(example)
    assert missing.returncode == 1
    assert "no Koala cassette" in missing.stdout
    assert "record it once with pytest --koala-record" in missing.stdout

    recorded = run_pytest(
        example, "--koala-record", "--koala-upstream", messages_only.api_endpoint
    )
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    cassette = example / "cassettes" / "headline.jsonl"
    dialects = [e.request.dialect for _, e in load_cassette(cassette)]
    assert dialects == ["history", "messages"]  # auto: refused, then accepted
    assert len(messages_only.requests) == 2

    replayed = run_pytest(example)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert len(messages_only.requests) == 2  # nothing reached the upstream

    # Recording again starts the cassette afresh.
    again = run_pytest(
        example, "--koala-record", "--koala-upstream", messages_only.api_endpoint
    )
    assert again.returncode == 0
    assert len(load_cassette(cassette)) == 2


def test_a_changed_request_fails_naming_the_nearest_recording(
    example: Path,
) -> None:
    shutil.copytree(EXAMPLE / "cassettes", example / "cassettes")
    test = example / "test_headline.py"
    test.write_text(test.read_text().replace("twenty hours", "22 hours"))
    result = run_pytest(example)
    assert result.returncode == 1
    assert "no recording in the cassette" in result.stdout
    assert "differs in turn 2 of the conversation" in result.stdout


def test_the_fixture_alone_uses_a_cassette_named_after_the_test(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "test_app.py").write_text(
        "import os\n"
        "from koala_chat import Koala\n\n"
        "def test_one(koala_cassette):\n"
        "    assert os.environ['KOALA_API_ENDPOINT'] == koala_cassette.api_endpoint\n"
        "    reply = Koala.create_completion('', [{'role': 'user', 'content': 'Hi'}])\n"
        "    assert ''.join(map(str, reply)).startswith('You said')\n"
        "    assert koala_cassette.recording == bool(os.environ.get('RECORDING'))\n"
    )
    monkeypatch.setenv("RECORDING", "1")
    recorded = run_pytest(
        tmp_path / "test_app.py", "--koala-record", "--koala-upstream",
        sandbox.api_endpoint,
    )  # fmt: skip
    monkeypatch.delenv("RECORDING")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert (tmp_path / "cassettes" / "test_app" / "test_one.jsonl").is_file()
    replayed = run_pytest(tmp_path / "test_app.py")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert len(sandbox.requests) == 1
