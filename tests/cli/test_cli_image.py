"""`koala image` in-process, against the sandbox's KoalaImages (cli.image)."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from koala_chat._cli import main
from koala_chat._cli.exits import ExitCode
from koala_chat._cli.image import file_name
from koala_chat.sandbox import Reply, Sandbox

Captured = tuple[int, str, str]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def keyed(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox) -> None:
    """Every test has the sandbox's key and chat endpoint in the environment."""
    monkeypatch.setenv("KOALA_API_KEY", sandbox.api_key)
    monkeypatch.setenv("KOALA_API_ENDPOINT", sandbox.api_endpoint)
    monkeypatch.delenv("KOALA_IMAGES_ENDPOINT", raising=False)


def koala(capsys: pytest.CaptureFixture[str], *argv: str) -> Captured:
    """Run `koala image ARGV` in-process; return the exit code, stdout, stderr."""
    code = main(["image", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_each_image_is_written_to_a_file_named_from_the_prompt(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sandbox: Sandbox
) -> None:
    code, out, err = koala(
        capsys, "-n", "3", "--out", str(tmp_path), "A koala, asleep!"
    )
    assert (code, err) == (0, "")
    paths = out.splitlines()
    assert paths == [str(tmp_path / f"a-koala-asleep-{n}.png") for n in (1, 2, 3)]
    contents = [Path(path).read_bytes() for path in paths]
    assert all(data.startswith(PNG) for data in contents)
    assert len(set(contents)) == 3
    assert sandbox.requests[0].json == {
        "prompt": "A koala, asleep!",
        "numImages": 3,
        "generateAltText": True,
    }


def test_an_existing_file_is_never_overwritten(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mine = tmp_path / "koala-1.png"
    mine.write_bytes(b"mine")
    (tmp_path / "koala-3.png").write_bytes(b"also mine")
    code, out, _ = koala(capsys, "-n", "2", "--out", str(tmp_path), "koala")
    assert code == 0
    assert out.splitlines() == [
        str(tmp_path / "koala-2.png"),
        str(tmp_path / "koala-4.png"),
    ]
    assert mine.read_bytes() == b"mine"
    assert (tmp_path / "koala-3.png").read_bytes() == b"also mine"


def test_json_gives_the_urls_alt_texts_and_paths(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sandbox: Sandbox
) -> None:
    code, out, _ = koala(
        capsys, "--json", "--style", "anime", "--out", str(tmp_path), "koala"
    )
    assert code == 0
    [image] = json.loads(out)["images"]
    assert image["url"].startswith(sandbox.url + "/api/image/")
    assert image["alt"] == "Sandbox image 1 of 1: koala"
    assert Path(image["path"]).read_bytes().startswith(PNG)
    assert sandbox.requests[0].json is not None
    assert sandbox.requests[0].json["style"] == "anime"


def test_a_terminal_sees_the_images_get_ready(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["image", "-n", "2", "--out", str(tmp_path), "koala"]) == 0
    shown = terminal.getvalue()
    assert "asking KoalaImages for 2 image(s)" in shown
    assert "2 of 2 images ready" in shown
    assert shown.endswith("\r")  # the line is erased at the end


@pytest.mark.parametrize(
    ("file_prompt", "number", "data", "expected"),
    [
        ("Café au lait", 1, PNG, "cafe-au-lait-1.png"),
        ("Коала 🐨", 2, PNG, "image-2.png"),
        ("a " * 60, 1, b"\xff\xd8\xff\xe0", "a-" * 23 + "a-1.jpg"),
        ("../../etc/passwd", 1, b"??", "etc-passwd-1.img"),
    ],
)
def test_file_names_are_safe_words_of_the_prompt(
    file_prompt: str, number: int, data: bytes, expected: str
) -> None:
    assert file_name(file_prompt, number, data) == expected


# --- errors and exit codes ----------------------------------------------------------


def test_without_a_key_it_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KOALA_API_KEY")
    code, out, err = koala(capsys, "koala")
    assert code == ExitCode.USAGE
    assert out == ""
    assert "--api-key-file" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["-n", "5", "koala"], ["--style", "oil", "koala"]])
def test_bad_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, argv: list[str]
) -> None:
    code, _, err = koala(capsys, *argv)
    assert code == ExitCode.USAGE
    assert "Traceback" not in err
    assert sandbox.requests == []


def test_an_out_that_is_no_directory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sandbox: Sandbox
) -> None:
    code, _, err = koala(capsys, "--out", str(tmp_path / "nowhere"), "koala")
    assert code == ExitCode.USAGE
    assert "is not a directory" in err
    assert sandbox.requests == []


@pytest.mark.parametrize(
    ("reply", "exit_code", "words"),
    [
        (Reply(status=429, body=b"slow"), ExitCode.RATE_LIMIT, "Rate limited"),
        (Reply(status=402, body=b"{}"), ExitCode.STATUS, "out of credits"),
        (Reply(body=b"<html></html>"), ExitCode.PROTOCOL, "The image reply"),
    ],
)
def test_the_services_errors_give_the_exit_codes_of_koala_chat(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sandbox: Sandbox,
    reply: Reply,
    exit_code: ExitCode,
    words: str,
) -> None:
    sandbox.push(reply)
    code, out, err = koala(capsys, "--out", str(tmp_path), "koala")
    assert code == exit_code
    assert words in err
    assert (out, list(tmp_path.iterdir())) == ("", [])
    assert len(err.splitlines()) == 1


def test_a_refused_key_is_exit_5_and_the_key_is_not_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOALA_API_KEY", "wrong-key-2718281828")
    code, _, err = koala(capsys, "koala")
    assert code == ExitCode.STATUS
    assert "api key refused" not in err  # the hint, not the reason, is shown
    assert "KOALA_API_KEY" in err
    assert "wrong-key-2718281828" not in err


def test_a_model_outside_the_plan_is_exit_5_with_the_services_words(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandbox(image_models=("gpt-image-2",)) as upstream:
        monkeypatch.setenv("KOALA_API_ENDPOINT", upstream.api_endpoint)
        code, _, err = koala(capsys, "-m", "premium", "koala")
    assert code == ExitCode.STATUS
    assert "does not include the premium model" in err


def test_an_unreachable_endpoint_is_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = koala(capsys, "--endpoint", f"http://127.0.0.1:{port}/x/", "koala")
    assert code == ExitCode.TRANSPORT
    assert len(err.splitlines()) == 1


def test_an_image_that_is_not_ready_in_time_is_exit_3(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandbox(image_delay=60.0) as upstream:
        monkeypatch.setenv("KOALA_API_ENDPOINT", upstream.api_endpoint)
        code, _, err = koala(capsys, "--timeout", "0.5", "--out", str(tmp_path), "k")
    assert code == ExitCode.TRANSPORT
    assert "timeout" in err or "time" in err
    assert list(tmp_path.iterdir()) == []
