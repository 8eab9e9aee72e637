"""`koala keys add`: a new key printed once, only its hash appended to the file."""

from __future__ import annotations

import hashlib
import stat
import tomllib
from pathlib import Path

import pytest

from koala_chat._cli import main
from koala_chat.server.gateway.keys import load_keys

EXISTING = """\
# The team's keys. Ask Dana for a new one.
[keys.alice]
key_sha256 = "%s"  # alice's laptop
requests_per_minute = 60
""" % ("ab" * 32)


def add(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["keys", "add", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_prints_the_key_once_and_appends_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(EXISTING)
    code, out, err = add(
        capsys, "ci", "--rpm", "10", "--rpd", "500", "--max-streams", "2",
        "--file", str(path),
    )  # fmt: skip
    assert code == 0
    key = out.strip()
    assert key.startswith("koala-")
    assert len(key) > 40
    assert key not in err
    text = path.read_text()
    # The old entry and its comments are kept byte for byte.
    assert text.startswith(EXISTING)
    assert key not in text
    entry = tomllib.loads(text)["keys"]["ci"]
    assert entry == {
        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
        "requests_per_minute": 10,
        "requests_per_day": 500,
        "max_streams": 2,
    }
    found = load_keys(str(path)).find(key.encode())
    assert found is not None
    assert found.name == "ci"


def test_two_keys_are_different_and_a_key_without_limits_is_unlimited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "keys.toml")
    first = add(capsys, "one", "--file", path)[1].strip()
    second = add(capsys, "two", "--file", path)[1].strip()
    assert first != second
    table = load_keys(path)
    entry = table.find(second.encode())
    assert entry is not None
    assert entry.limits.unlimited
    assert table.names == ("one", "two")


def test_a_new_file_is_readable_by_its_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.toml"
    assert add(capsys, "alice", "--file", str(path))[0] == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_default_file_is_under_xdg_config_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert add(capsys, "alice")[0] == 0
    assert "alice" in load_keys(str(tmp_path / "koala-chat" / "keys.toml")).names


@pytest.mark.parametrize(
    ("content", "name", "words"),
    [
        (EXISTING, "alice", "has a key named 'alice' already"),
        (EXISTING, "al ice", "a key's name is 1 to 64 letters"),
        (EXISTING, "x" * 65, "a key's name is 1 to 64 letters"),
        ("[keys\n", "bob", "not valid TOML"),
        # An inline table cannot be extended by a [keys.NAME] table after it.
        ('keys = { alice = { key_sha256 = "%s" } }\n' % ("ab" * 32), "bob", "TOML"),
    ],
)
def test_a_refused_add_leaves_the_file_as_it_was(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    name: str,
    words: str,
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(content)
    code, out, err = add(capsys, name, "--file", str(path))
    assert code == 2
    assert out == ""
    assert words in err
    assert len(err.strip().splitlines()) == 1
    assert path.read_text() == content


def test_a_limit_must_be_a_whole_number_of_at_least_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.toml"
    code, _, err = add(capsys, "alice", "--rpm", "0", "--file", str(path))
    assert code == 2
    assert "--rpm" in err
    assert not path.exists()
