"""The `llm` plugin, driven by the real `llm` package against the sandbox.

`llm` finds the plugin through our package's entry point, as it does once
koala-chat is installed: nothing here registers it by hand. Each test gets an
empty `LLM_USER_PATH`, so `llm`'s log of conversations (which `-c` reads) is
the test's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import llm
import pytest
from click.testing import CliRunner, Result
from llm.cli import cli

from koala_chat import Koala
from koala_chat._contract.options import ProviderOptions
from koala_chat.client import estimate_tokens
from koala_chat.llm_plugin import KoalaModel, KoalaOptions
from koala_chat.sandbox import Reply, Sandbox
from proxies import PproxyServer

# Strings and objects, as the seed's example streams them (docs/protocol.md,
# "Response"); the object without text carries nothing for `llm`.
MIXED = ["Hel", {"text": "lo"}, {"status": "thinking"}, ", wor", {"text": "ld"}]
MIXED_TEXT = "Hello, world"


@pytest.fixture(autouse=True)
def llm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty `llm` home directory for each test."""
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path))
    return tmp_path


@pytest.fixture
def endpoint(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point Koala at the sandbox through the environment, as a user would."""
    monkeypatch.setenv("KOALA_API_ENDPOINT", sandbox.api_endpoint)
    return sandbox.api_endpoint


def run_llm(*args: str) -> Result:
    """Run `llm ARGS` in-process and return its result."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- the command line ----------------------------------------------------------------


def test_models_lists_ours() -> None:
    result = run_llm("models")
    assert result.exit_code == 0, result.output
    for model in Koala.models:
        assert f"koala/{model}" in result.output
    assert "koala/gpt-4o-mini (aliases: koala)" in result.output


def test_prompt(sandbox: Sandbox, endpoint: str) -> None:
    sandbox.push(Reply(values=MIXED))
    result = run_llm("-m", "koala", "Hi")
    assert result.exit_code == 0, result.output
    assert result.output == MIXED_TEXT + "\n"
    assert sandbox.requests[-1].json == {
        "input": "Hi",
        "inputHistory": [],
        "outputHistory": [],
        "model": "gpt-4o-mini",
    }


def test_prompt_without_streaming(sandbox: Sandbox, endpoint: str) -> None:
    sandbox.push(Reply(values=MIXED))
    result = run_llm("-m", "koala/gpt-4.1", "--no-stream", "Hi")
    assert result.exit_code == 0, result.output
    assert result.output == MIXED_TEXT + "\n"
    assert sandbox.requests[-1].json["model"] == "gpt-4.1"


def test_system_prompt(sandbox: Sandbox, endpoint: str) -> None:
    sandbox.push(Reply(values=["Short."]))
    result = run_llm("-m", "koala", "-s", "Be brief.", "Hi")
    assert result.exit_code == 0, result.output
    # docs/protocol.md, "Request": system contents follow the last message.
    assert sandbox.requests[-1].json["input"] == "Hi Be brief."


def test_continue_conversation(sandbox: Sandbox, endpoint: str) -> None:
    sandbox.push(Reply(values=MIXED), Reply(values=["Again?"]))
    assert run_llm("-m", "koala", "Hi").exit_code == 0
    result = run_llm("-c", "Say it again")
    assert result.exit_code == 0, result.output
    assert result.output == "Again?\n"
    assert sandbox.requests[-1].json == {
        "input": "Say it again",
        "inputHistory": ["Hi"],
        "outputHistory": [MIXED_TEXT],
        "model": "gpt-4o-mini",
    }


def test_options_reach_the_provider(sandbox: Sandbox) -> None:
    sandbox.push(Reply(values=["From ", "the option"]))
    result = run_llm(
        "-m", "koala", "-o", "endpoint", sandbox.api_endpoint, "-o", "timeout", "30",
        "-o", "protocol", "history", "-o", "web_search", "1", "Hi",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == "From the option\n"
    assert len(sandbox.requests) == 1


def test_proxy_option(sandbox: Sandbox, endpoint: str, pproxy: PproxyServer) -> None:
    sandbox.push(Reply(values=["Through ", "the proxy"]))
    result = run_llm("-m", "koala", "-o", "proxy", pproxy.url("http"), "Hi")
    assert result.exit_code == 0, result.output
    assert result.output == "Through the proxy\n"
    target = f"-> 127.0.0.1:{sandbox.port}"
    assert pproxy.wait_for(lambda log: any(target in line for line in log), 5)


def test_bad_option_is_refused(sandbox: Sandbox, endpoint: str) -> None:
    result = run_llm("-m", "koala", "-o", "protocol", "carrier-pigeon", "Hi")
    assert result.exit_code != 0
    assert "protocol" in result.output
    assert sandbox.requests == []


def test_error_is_one_line(sandbox: Sandbox, endpoint: str) -> None:
    # 410, not 404: `auto` would try the messages dialect after a 404.
    sandbox.push(Reply(status=410, body=b"no such thing", content_type="text/plain"))
    result = run_llm("-m", "koala", "Hi")
    assert result.exit_code == 1
    assert "410" in result.output
    assert "Traceback" not in result.output


def test_usage_is_logged(sandbox: Sandbox, endpoint: str) -> None:
    sandbox.push(Reply(values=MIXED))
    assert run_llm("-m", "koala", "-s", "Be brief.", "Hi").exit_code == 0
    result = run_llm("logs", "--json")
    (entry,) = json.loads(result.output)
    assert entry["input_tokens"] == estimate_tokens("Be brief.") + estimate_tokens("Hi")
    assert entry["output_tokens"] == estimate_tokens(MIXED_TEXT)


# --- the Python API ------------------------------------------------------------------


def test_python_api_conversation(sandbox: Sandbox, endpoint: str) -> None:
    sandbox.push(Reply(values=MIXED), Reply(values=["Fine."]))
    model = llm.get_model("koala/gpt-4.1-mini")
    assert isinstance(model, KoalaModel)
    conversation = model.conversation()
    first = conversation.prompt("Hi", system="Be brief.")
    assert list(first) == ["Hel", "lo", ", wor", "ld"]
    second = conversation.prompt("How are you?")
    assert second.text() == "Fine."
    assert sandbox.requests[-1].json == {
        "input": "How are you? Be brief.",
        "inputHistory": ["Hi"],
        "outputHistory": [MIXED_TEXT],
        "model": "gpt-4.1-mini",
    }
    usage = second.usage()
    assert usage.output == estimate_tokens("Fine.")
    assert usage.input == sum(
        estimate_tokens(text)
        for text in ("Be brief.", "Hi", MIXED_TEXT, "How are you?")
    )


async def test_async_model(sandbox: Sandbox, endpoint: str) -> None:
    sandbox.push(Reply(values=MIXED), Reply(values=["Fine."]))
    model = llm.get_async_model("koala")
    conversation = model.conversation()
    response = conversation.prompt("Hi")
    assert [piece async for piece in response] == ["Hel", "lo", ", wor", "ld"]
    usage = await response.usage()
    assert usage.output == estimate_tokens(MIXED_TEXT)
    second = conversation.prompt("How are you?", stream=False)
    assert await second.text() == "Fine."
    assert sandbox.requests[-1].json["inputHistory"] == ["Hi"]
    assert sandbox.requests[-1].json["outputHistory"] == [MIXED_TEXT]


def test_provider_options() -> None:
    options = KoalaOptions(
        protocol="messages", endpoint="http://x/", proxy="socks5://p:1", web_search=True
    )
    assert isinstance(KoalaModel.provider_options(options), ProviderOptions)
    assert KoalaModel.provider_options(options) == {
        "protocol": "messages",
        "api_endpoint": "http://x/",
        "proxy": "socks5://p:1",
        "web_search": True,
    }
    assert KoalaModel.provider_options(KoalaOptions()) == {}
