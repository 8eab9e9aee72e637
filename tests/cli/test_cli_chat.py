"""`koala chat` and `koala demo` in-process, against the sandbox (cli.chat)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import pytest

from hardening import closed_port_url
from koala_chat import AsyncGeneratorProvider, ProviderModelMixin
from koala_chat._cli import main
from koala_chat._cli.chat import SEED_CONVERSATION, read_prompt
from koala_chat._cli.exits import ExitCode
from koala_chat.messages import JSONValue, Messages, text_of
from koala_chat.sandbox import Reply, Sandbox

Captured = tuple[int, str, str]


@pytest.fixture(autouse=True)
def no_configured_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without an endpoint in the environment."""
    monkeypatch.delenv("KOALA_API_ENDPOINT", raising=False)


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Piped stdin, empty unless the test writes to it first."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stdin", stream)
    return stream


def koala(capsys: pytest.CaptureFixture[str], *argv: str) -> Captured:
    """Run `koala ARGV` in-process; return the exit code, stdout and stderr."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def chat(capsys: pytest.CaptureFixture[str], sandbox: Sandbox, *argv: str) -> Captured:
    return koala(capsys, "chat", "--endpoint", sandbox.api_endpoint, *argv)


# --- one prompt ----------------------------------------------------------------


def test_the_reply_is_streamed_with_a_final_newline(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    sandbox.push(Reply(values=["Hel", "lo", {"text": " there"}, 42]))
    assert chat(capsys, sandbox, "Hi") == (0, "Hello there\n", "")
    (request,) = sandbox.requests
    assert request.json == {
        "input": "Hi",
        "inputHistory": [],
        "outputHistory": [],
        "model": "gpt-4o-mini",
    }


def test_system_messages_model_and_retries_reach_the_provider(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    code, _, _ = chat(
        capsys, sandbox, "-s", "Be brief.", "--system", "Rhyme.", "-m", "gpt-4.1", "Hi"
    )
    assert code == 0
    assert sandbox.requests[0].json["input"] == "Hi Be brief. Rhyme."
    assert sandbox.requests[0].json["model"] == "gpt-4.1"


def test_piped_stdin_is_the_prompt(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    stdin.write("from a pipe\n")
    stdin.seek(0)
    code, out, _ = chat(capsys, sandbox)
    assert code == 0
    assert out.startswith('You said: "from a pipe". History: 0 user,')


def test_the_argument_comes_first_and_stdin_is_appended(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    stdin.write("line one\nline two\n")
    stdin.seek(0)
    assert chat(capsys, sandbox, "Summarise:")[0] == 0
    assert sandbox.requests[0].json["input"] == "Summarise:\nline one\nline two"


def test_nothing_to_send_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    code, out, err = chat(capsys, sandbox)
    assert code == ExitCode.USAGE
    assert out == ""
    assert err.startswith("koala: error: Nothing to send")
    assert err.count("\n") == 1
    assert sandbox.requests == []


def test_read_prompt_on_a_terminal_without_a_prompt_means_interactive() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert read_prompt(None, Terminal("never read")) is None
    assert read_prompt("Hi", Terminal("never read")) == "Hi"
    assert read_prompt("Hi", None) == "Hi"


def test_json_writes_each_value_as_one_line(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    values = ["Привет", {"text": "!", "n": 1}, [1, 2], None]
    sandbox.push(Reply(values=values))
    code, out, err = chat(capsys, sandbox, "--json", "Hi")
    assert (code, err) == (0, "")
    assert [json.loads(line) for line in out.splitlines()] == values
    assert "Привет" in out  # not escaped


def test_no_stream_prints_the_same_text_once(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    sandbox.push(Reply(values=["a", "b", "c"]))
    assert chat(capsys, sandbox, "--no-stream", "Hi") == (0, "abc\n", "")


def test_the_environment_names_the_endpoint_and_the_option_wins(
    capsys: pytest.CaptureFixture[str],
    sandbox: Sandbox,
    stdin: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KOALA_API_ENDPOINT", sandbox.api_endpoint)
    assert koala(capsys, "chat", "Hi")[0] == 0
    assert len(sandbox.requests) == 1
    monkeypatch.setenv("KOALA_API_ENDPOINT", closed_port_url())
    assert chat(capsys, sandbox, "Hi")[0] == 0
    assert len(sandbox.requests) == 2


def test_sandbox_option_answers_offline(
    capsys: pytest.CaptureFixture[str],
    stdin: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KOALA_API_ENDPOINT", "not even a URL")
    code, out, _ = koala(capsys, "chat", "--sandbox", "Hi")
    assert code == 0
    assert out.startswith('You said: "Hi".')


def test_sandbox_and_endpoint_exclude_each_other(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    code, _, err = chat(capsys, sandbox, "--sandbox", "Hi")
    assert code == ExitCode.USAGE
    assert "--sandbox and --endpoint" in err


# --- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code", "says"),
    [
        (
            Reply(status=429, body=b"slow down", headers={"Retry-After": "120"}),
            ExitCode.RATE_LIMIT,
            "Rate limited",
        ),
        (
            Reply(
                status=403,
                content_type="text/html",
                headers={"cf-mitigated": "challenge"},
                body=b"<html><title>Just a moment...</title></html>",
            ),
            ExitCode.STATUS,
            "Cloudflare",
        ),
        (
            # 410, not 404: `auto` would try the messages dialect after a 404.
            Reply(status=410, content_type="text/plain", body=b"no such page"),
            ExitCode.STATUS,
            "410",
        ),
        (
            Reply(content_type="text/html", body=b"<title>Koala</title>"),
            ExitCode.PROTOCOL,
            "instead of an event stream",
        ),
        (Reply(body=b"data: {not json\n\n"), ExitCode.PROTOCOL, "JSON"),
    ],
)
def test_failures_are_one_line_with_their_exit_code(
    capsys: pytest.CaptureFixture[str],
    sandbox: Sandbox,
    stdin: io.StringIO,
    reply: Reply,
    code: int,
    says: str,
) -> None:
    sandbox.push(reply)
    result, out, err = chat(capsys, sandbox, "--retries", "0", "Hi")
    assert result == code
    assert out == ""
    assert err.startswith("koala: error: ")
    assert err.count("\n") == 1
    assert says in err
    assert "Traceback" not in err


def test_unreachable_endpoint_exits_3(
    capsys: pytest.CaptureFixture[str], stdin: io.StringIO
) -> None:
    url = closed_port_url()
    code, _, err = koala(capsys, "chat", "--endpoint", url, "--retries", "0", "Hi")
    assert code == ExitCode.TRANSPORT
    assert "Could not connect" in err
    assert "--endpoint" in err  # what to do


def test_a_time_limit_exits_3(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    sandbox.push(Reply(values=["never"], stall_at=0))
    code, _, err = chat(capsys, sandbox, "--timeout", "0.3", "--retries", "0", "Hi")
    assert code == ExitCode.TRANSPORT
    assert "--timeout" in err


def test_retries_repeat_a_failed_request(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    sandbox.push(Reply(status=500, body=b"oops"), Reply(values=["ok"]))
    history = ("--protocol", "history")
    assert chat(capsys, sandbox, *history, "--retries", "1", "Hi")[:2] == (0, "ok\n")
    assert len(sandbox.requests) == 2
    sandbox.push(Reply(status=500, body=b"oops"))
    assert chat(capsys, sandbox, *history, "--retries", "0", "Hi")[0] == (
        ExitCode.STATUS
    )
    assert len(sandbox.requests) == 3


def test_the_proxy_password_is_never_printed(
    capsys: pytest.CaptureFixture[str], stdin: io.StringIO
) -> None:
    proxy = closed_port_url().replace("http://", "http://user:s3cr3t@")
    code, out, err = koala(
        capsys, "chat", "--proxy", proxy, "--retries", "0", "--debug", "Hi"
    )
    assert code == ExitCode.TRANSPORT
    assert "s3cr3t" not in out + err
    assert "user:***@" in err


def test_a_bad_proxy_url_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    code, _, err = chat(capsys, sandbox, "--proxy", "ftp://user:pw@host:21", "Hi")
    assert code == ExitCode.USAGE
    assert "pw@" not in err
    assert sandbox.requests == []


def test_debug_adds_the_traceback(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, stdin: io.StringIO
) -> None:
    sandbox.push(Reply(status=410, body=b"gone"))
    code, _, err = koala(
        capsys, "--debug", "chat", "--endpoint", sandbox.api_endpoint, "Hi"
    )
    assert code == ExitCode.STATUS
    assert err.startswith("Traceback")
    assert err.splitlines()[-1].startswith("koala: error: ")


class BrokenProvider(AsyncGeneratorProvider, ProviderModelMixin):
    """A provider with a bug: it fails with an exception that is not ours."""

    default_model = "broken"

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncGenerator[JSONValue, None]:
        raise RuntimeError("a bug")
        yield ""  # pragma: no cover  (makes this an async generator)


def test_an_unexpected_error_is_one_line_too(
    capsys: pytest.CaptureFixture[str], stdin: io.StringIO
) -> None:
    code = main(["chat", "Hi"], provider=BrokenProvider)
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR
    assert err == (
        "koala: error: Unexpected RuntimeError: a bug. Rerun with --debug for "
        "the traceback, and please report it.\n"
    )


# --- demo ----------------------------------------------------------------------


def test_demo_without_an_endpoint_answers_from_an_in_process_sandbox(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = koala(capsys, "demo")
    assert code == 0
    assert "sandbox started in this process" in err
    lines = out.splitlines()
    assert lines[:3] == [f"{m['role']}: {m['content']}" for m in SEED_CONVERSATION]
    assert lines[3] == (
        'assistant: You said: "Расскажи что-нибудь интересное.". '
        "History: 1 user, 1 assistant. Model: gpt-4o-mini."
    )


def test_demo_uses_the_configured_endpoint(
    capsys: pytest.CaptureFixture[str],
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KOALA_API_ENDPOINT", sandbox.api_endpoint)
    sandbox.push(Reply(values=["Коалы ", "спят."]))
    code, out, err = koala(capsys, "demo")
    assert (code, err) == (0, "")
    assert out.endswith("assistant: Коалы спят.\n")
    (request,) = sandbox.requests
    assert request.json == {
        "input": "Расскажи что-нибудь интересное.",
        "inputHistory": ["Привет, как дела?"],
        "outputHistory": ["У меня все отлично, спасибо!"],
        "model": "gpt-4o-mini",
    }


def test_demo_json_prints_only_the_values(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox
) -> None:
    sandbox.push(Reply(values=["a", "b"]))
    code, out, _ = koala(capsys, "demo", "--endpoint", sandbox.api_endpoint, "--json")
    assert (code, out) == (0, '"a"\n"b"\n')


def test_a_bad_endpoint_is_named_without_its_password(
    capsys: pytest.CaptureFixture[str],
    stdin: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KOALA_API_ENDPOINT", "ftp://me:s3cr3t@example.org/")
    code, out, err = koala(capsys, "chat", "Hi")
    assert (code, out) == (ExitCode.USAGE, "")
    assert "s3cr3t" not in err
    assert "ftp://me:***@example.org/" in err
    assert err.endswith("See `koala chat --help`.\n")


# --- any provider ----------------------------------------------------------------


class EchoProvider(AsyncGeneratorProvider, ProviderModelMixin):
    """A provider of the test's own: fixed values naming the model and the question.

    It knows two models, neither of them Koala's, refuses others, and records
    the options each call received.
    """

    default_model = "echo-large"
    models = ("echo-small", "echo-large")
    calls: ClassVar[list[dict[str, Any]]] = []

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncGenerator[JSONValue, None]:
        cls.calls.append(kwargs)
        name = cls.get_model(model)
        yield f"{name} heard "
        yield {"text": text_of(messages[-1]["content"])}
        yield 7  # carries no text: left out of the text, kept in --json


@pytest.fixture
def echo() -> type[EchoProvider]:
    EchoProvider.calls = []
    return EchoProvider


def test_chat_runs_any_provider(
    capsys: pytest.CaptureFixture[str], stdin: io.StringIO, echo: type[EchoProvider]
) -> None:
    assert main(["chat", "Hi"], provider=echo) == 0
    assert capsys.readouterr() == ("echo-large heard Hi\n", "")
    assert main(["chat", "-m", "echo-small", "--json", "Hi"], provider=echo) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        "echo-small heard ",
        {"text": "Hi"},
        7,
    ]
    assert echo.calls[-1]["max_retries"] == 2


def test_an_unknown_model_of_any_provider_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], stdin: io.StringIO, echo: type[EchoProvider]
) -> None:
    assert main(["chat", "-m", "gpt-4o-mini", "Hi"], provider=echo) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "EchoProvider has no model 'gpt-4o-mini'" in err
    assert "`koala models` lists the known models" in err


def test_models_lists_any_providers_models(
    capsys: pytest.CaptureFixture[str], echo: type[EchoProvider]
) -> None:
    assert main(["models"], provider=echo) == 0
    assert capsys.readouterr().out == "echo-small\necho-large  (default)\n"
    assert main(["models", "--json"], provider=echo) == 0
    # A provider without dialects has no protocol to name.
    assert json.loads(capsys.readouterr().out) == {
        "protocol": None,
        "default": "echo-large",
        "models": ["echo-small", "echo-large"],
        "accepts_unknown": False,
    }


def test_demo_runs_any_provider(
    capsys: pytest.CaptureFixture[str], echo: type[EchoProvider]
) -> None:
    assert main(["demo"], provider=echo) == 0
    out = capsys.readouterr().out
    question = SEED_CONVERSATION[-1]["content"]
    assert out.endswith(f"assistant: echo-large heard {question}\n")
    # Without an endpoint, the demo points the provider at an in-process sandbox.
    assert echo.calls[0]["api_endpoint"].startswith("http://127.0.0.1:")
