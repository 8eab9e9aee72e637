"""Raw text in the messages dialect (docs/protocol.md, "Raw text in the messages
dialect"), from the decoder to every surface a user meets.

A messages-dialect payload that is not a JSON string or object is its text,
exactly as the event carried it; the history dialect stays as strict as the
specification's parser. The reference reader below is written from the rule,
independently of the code: JSON where it decodes to a string or an object, the
raw data otherwise.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import g4f.cookies
import llm
import openai
import pytest
from click.testing import CliRunner
from g4f.client import Client as G4FClient
from hypothesis import given
from hypothesis import strategies as st
from llm.cli import cli as llm_cli

from hardening import collect
from koala_chat import InvalidJSONError, JSONValue, Koala, text_of
from koala_chat._cli import main
from koala_chat._cli.exits import ExitCode
from koala_chat._jsonstream import JSONValueDecoder, loads_or_text
from koala_chat.sandbox import Reply, Sandbox, render
from server_fixtures import ServerThread

# The example of a raw stream: a bare word, a JSON string, the end.
RAW_BODY = b'data: Koalas\n\ndata: " sleep"\n\ndata: [DONE]\n\n'
RAW_TEXT = "Koalas sleep"
HI = [{"role": "user", "content": "Hi"}]


def raw_reply(body: bytes = RAW_BODY) -> Reply:
    """A messages-dialect reply whose bytes are exactly `body`."""
    return Reply(body=body, content_type="text/event-stream")


# --- the reference reader -----------------------------------------------------------


def reference_value(data: str) -> JSONValue:
    """What a reader of the published client's kind makes of one payload."""
    try:
        value = json.loads(data)
    except ValueError:
        return data
    return value if isinstance(value, str | dict) else data


def reference_text(datas: list[str]) -> str:
    """The concatenation such a reader produces, up to `[DONE]`."""
    text = []
    for data in datas:
        if data == "[DONE]":
            break
        text.append(text_of(reference_value(data)))
    return "".join(text)


def wire(datas: list[str]) -> bytes:
    """The bytes of an event stream with one single-line event per payload."""
    return b"".join(b"data: " + data.encode() + b"\n\n" for data in datas)


def decode(chunks: list[bytes], *, raw_text: bool = True) -> list[JSONValue]:
    decoder = JSONValueDecoder(raw_text=raw_text)
    values: list[JSONValue] = []
    for chunk in chunks:
        values += decoder.feed(chunk)
    return values + decoder.close()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    starts = [0, *points]
    return [data[a:b] for a, b in zip(starts, [*points, len(data)], strict=True)]


# Payloads that are JSON of every kind, words, JSON look-alikes and pieces of
# a raw stream: no CR or LF (one line each), nothing that would be a surrogate.
_LINE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=12,
)
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _LINE,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_LINE, inner, max_size=3)
    ),
    max_leaves=6,
).map(lambda value: json.dumps(value, ensure_ascii=False))
_PAYLOAD = st.one_of(
    _LINE,
    _JSONISH,
    st.sampled_from([" 2024", " true", "null", "[1]", '"quoted"', "{", "Koalas"]),
    st.sampled_from(['{"text": " a"}', '{"choices": [{"delta": {"content": "b"}}]}']),
)


@given(
    datas=st.lists(_PAYLOAD, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_any_mix_in_any_chunking_reads_as_the_reference_reader(
    datas: list[str], cuts: list[int]
) -> None:
    body = wire([*datas, "[DONE]"])
    values = decode(split(body, cuts))
    assert values == [reference_value(data) for data in datas]
    assert "".join(map(text_of, values)) == reference_text(datas)


@given(datas=st.lists(_PAYLOAD, max_size=8))
def test_every_byte_split_gives_the_same_values(datas: list[str]) -> None:
    body = wire(datas)
    whole = decode([body])
    for cut in range(len(body) + 1):
        assert decode([body[:cut], body[cut:]]) == whole


def test_the_data_is_kept_exactly_as_the_specification_gives_it() -> None:
    # Section 9.2.6: one space after the colon goes, a second one stays;
    # no space at all is fine; the lines of one event are joined with LF.
    body = b"data:  sleep\n\ndata:up\n\ndata: two\ndata:  lines\n\ndata:\n\n"
    assert decode([body]) == [" sleep", "up", "two\n lines", ""]


@pytest.mark.parametrize(
    ("data", "value"),
    [
        ("Koalas", "Koalas"),
        ('" sleep"', " sleep"),
        (' "spaced"', "spaced"),
        ('{"text": "x"}', {"text": "x"}),
        (" 2024", " 2024"),
        ("42", "42"),
        (" true", " true"),
        ("null", "null"),
        ("[1]", "[1]"),
        ("NaN", "NaN"),
        ("{not json", "{not json"),
        ("", ""),
    ],
)
def test_each_form_of_payload(data: str, value: JSONValue) -> None:
    assert loads_or_text(data) == value
    assert decode([wire([data])]) == [value]


def test_the_history_dialect_stays_strict() -> None:
    with pytest.raises(InvalidJSONError, match="Koalas"):
        decode([RAW_BODY], raw_text=False)


def test_done_ends_a_raw_stream_and_what_follows_is_ignored() -> None:
    assert decode([b"data: a\n\ndata: [DONE]\n\ndata: b\n\n"]) == ["a"]


# --- the sandbox's raw payloads -----------------------------------------------------


def test_the_sandbox_sends_raw_text_on_the_wire() -> None:
    writes = render(Reply(raw_text=True), ["Koalas", " sleep", "a\nb"], "messages")
    assert b"".join(writes) == (
        b"data: Koalas\n\ndata:  sleep\n\ndata: a\ndata: b\n\ndata: [DONE]\n\n"
    )


def test_raw_text_applies_to_the_messages_dialect_only() -> None:
    writes = render(Reply(raw_text=True), ["Koalas"], "history")
    assert b"".join(writes) == b'data: "Koalas"\n\n'


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)))))
def test_what_the_sandbox_sends_raw_reads_back_as_sent(values: list[str]) -> None:
    writes = render(Reply(raw_text=True), list(values), "messages")
    assert decode(writes) == values


# --- the library ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["messages", "auto"])
async def test_the_library_reads_raw_text(
    messages_only: Sandbox, protocol: str
) -> None:
    messages_only.push(raw_reply())
    values = await collect(api_endpoint=messages_only.api_endpoint, protocol=protocol)
    assert values == ["Koalas", " sleep"]


async def test_the_sandbox_default_reply_as_raw_text_reaches_the_library() -> None:
    server = Sandbox(protocol="messages", raw_text=True)
    server.start()
    try:
        text = await Koala.create_async(
            "",
            [{"role": "user", "content": "Hi [1] 42 true"}],
            api_endpoint=server.api_endpoint,
        )
        body = server.requests[-1]
    finally:
        server.stop()
    assert text == (
        'You said: "Hi [1] 42 true". History: 0 user, 0 assistant. '
        "Model: gemini-3-flash."
    )
    assert body.json is not None
    assert "messages" in body.json


async def test_the_history_dialect_refuses_raw_text(sandbox: Sandbox) -> None:
    sandbox.push(raw_reply())
    with pytest.raises(InvalidJSONError):
        await collect(api_endpoint=sandbox.api_endpoint, protocol="history")


def test_the_sync_api_reads_raw_text(messages_only: Sandbox) -> None:
    messages_only.push(raw_reply())
    pieces = Koala.create_completion(
        "", HI, api_endpoint=messages_only.api_endpoint, protocol="messages"
    )
    assert list(pieces) == ["Koalas", " sleep"]


# --- the command line -----------------------------------------------------------


def test_koala_chat_prints_raw_text(
    capsys: pytest.CaptureFixture[str],
    messages_only: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO())  # piped and empty
    messages_only.push(raw_reply())
    code = main(["chat", "--endpoint", messages_only.api_endpoint, "Hi"])
    captured = capsys.readouterr()
    assert (code, captured.out) == (0, RAW_TEXT + "\n")


@pytest.mark.parametrize(
    ("body", "payloads", "words"),
    [
        (RAW_BODY, "json and raw text", "JSON and raw text"),
        (b"data: Koalas\n\ndata: [DONE]\n\n", "raw text", "raw text (not JSON)"),
        (b'data: "Koalas"\n\ndata: [DONE]\n\n', "json", "JSON"),
    ],
)
def test_koala_check_says_which_form_it_saw(
    capsys: pytest.CaptureFixture[str],
    messages_only: Sandbox,
    body: bytes,
    payloads: str,
    words: str,
) -> None:
    endpoint = messages_only.api_endpoint
    messages_only.push(raw_reply(body))
    code = main(["check", "--endpoint", endpoint, "--protocol", "messages", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert (code, report["works"], report["payloads"]) == (0, True, payloads)
    messages_only.push(raw_reply(body))
    code = main(["check", "--endpoint", endpoint, "--protocol", "messages"])
    assert code == ExitCode.OK
    assert f"payloads:     {words}\n" in capsys.readouterr().out


def test_koala_check_of_the_history_dialect_reports_json(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox
) -> None:
    code = main(["check", "--endpoint", sandbox.api_endpoint, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert (code, report["dialect"], report["payloads"]) == (0, "history", "json")


# --- koala serve and the clients people use ---------------------------------------


@pytest.fixture
def messages_server(
    messages_only: Sandbox,
) -> Any:
    from server_fixtures import server_config

    server = ServerThread(server_config(messages_only))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("stream", [True, False])
def test_koala_serve_answers_raw_text(
    messages_only: Sandbox, messages_server: ServerThread, stream: bool
) -> None:
    messages_only.push(raw_reply())
    with openai.OpenAI(
        base_url=messages_server.base_url, api_key="anything", max_retries=0
    ) as client:
        if stream:
            chunks = client.chat.completions.create(
                model="",
                messages=HI,
                stream=True,  # type: ignore[arg-type]
            )
            text = "".join(
                c.choices[0].delta.content or "" for c in chunks if c.choices
            )
        else:
            completion = client.chat.completions.create(
                model="",
                messages=HI,  # type: ignore[arg-type]
            )
            text = completion.choices[0].message.content or ""
    assert text == RAW_TEXT


def run_llm(*args: str) -> str:
    result = CliRunner().invoke(llm_cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_llm_plugin_reads_raw_text(
    messages_only: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path))
    monkeypatch.setenv("KOALA_API_ENDPOINT", messages_only.api_endpoint)
    messages_only.push(raw_reply())
    assert run_llm("-m", "koala/gemini-3-flash", "Hi") == RAW_TEXT + "\n"
    messages_only.push(raw_reply())
    model = llm.get_model("koala/gemini-3-flash")
    assert model.prompt("Hi", stream=False).text() == RAW_TEXT


@pytest.mark.parametrize(
    "ask",
    [
        lambda client, endpoint: (
            client.chat.completions.create(messages=HI, model="", api_endpoint=endpoint)
            .choices[0]
            .message.content
        ),
        lambda client, endpoint: "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                messages=HI, model="", api_endpoint=endpoint, stream=True
            )
        ),
    ],
    ids=["create", "stream"],
)
def test_gpt4free_reads_raw_text(
    messages_only: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ask: Callable[[G4FClient, str], str],
) -> None:
    monkeypatch.setattr(g4f.cookies.CookiesConfig, "cookies_dir", str(tmp_path))
    monkeypatch.setenv("G4F_DISABLE_CIRCUIT_BREAKER", "1")
    messages_only.push(raw_reply())
    assert ask(G4FClient(provider=Koala), messages_only.api_endpoint) == RAW_TEXT
