"""`koala serve` against web pages of other sites, and clients that overreach.

A web page can make the browser POST `text/plain` to the keyless server on
127.0.0.1, or rebind its own name to 127.0.0.1 and read the replies; a client
can ask for the dialect that spends the operator's key; a parameter name can
be as long as the body. Each case talks to a real server in front of the
sandbox with the headers a browser (or an attacker) sends, and checks what
the sandbox received: nothing, for every refused request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import msgspec
import openai
import pytest
from multidict import CIMultiDict

from koala_chat.defaults import PROTOCOLS
from koala_chat.errors import UsageError
from koala_chat.sandbox import SANDBOX_API_KEY, Sandbox
from koala_chat.server.__main__ import main as server_main
from koala_chat.server.cli import build_parser, config_from_args
from koala_chat.server.config import API_KEY_VARIABLE, ServerConfig
from koala_chat.server.conversation import IGNORED_HEADER
from koala_chat.server.hosts import check_allowed_host, split_host
from server_fixtures import ServerThread

StartServer = Callable[..., ServerThread]

HELLO = [{"role": "user", "content": "Hello"}]
BODY = msgspec.json.encode({"model": "", "messages": HELLO})
JSON = {"Content-Type": "application/json"}
EVIL = "https://evil.example"
ORIGIN = "https://chat.example"


async def post(
    http: aiohttp.ClientSession,
    server: ServerThread,
    headers: dict[str, str] | CIMultiDict[str],
    body: bytes = BODY,
    **options: Any,
) -> tuple[int, CIMultiDict[str], dict[str, Any]]:
    """POST a completion with exactly `headers`; return status, headers, JSON."""
    async with http.post(
        server.base_url + "/chat/completions",
        data=body,
        headers=headers,
        skip_auto_headers=("Content-Type",),
        **options,
    ) as response:
        return response.status, response.headers.copy(), await response.json()


def error_of(document: dict[str, Any]) -> dict[str, Any]:
    """Return the OpenAI error object of `document`, its shape checked."""
    assert set(document) == {"error"}
    error: dict[str, Any] = document["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# --- Content-Type: only JSON, which no page can send without asking first ------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "text/json",
        "application/jsonp",
        "application/json, text/plain",
        "application/json; charset=utf-16",
        "application/json; charset=latin-1",
    ],
)
async def test_a_body_not_declared_json_is_415_and_never_sent(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    content_type: str | None,
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, response_headers, document = await post(http, koala_server, headers)
    assert status == 415
    error = error_of(document)
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"]
    assert response_headers["Accept-Post"] == "application/json"
    assert sandbox.requests == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
async def test_json_with_or_without_a_utf8_charset_is_answered(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    content_type: str,
) -> None:
    status, _, document = await post(http, koala_server, {"Content-Type": content_type})
    assert status == 200, document
    assert len(sandbox.requests) == 1


async def test_a_key_check_comes_before_the_content_type(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = start_server(api_key="k3y-for-clients")
    status, _, document = await post(http, server, {"Content-Type": "text/plain"})
    assert status == 401
    assert error_of(document)["code"] == "invalid_api_key"


# --- Host: loopback and --allowed-host only (DNS rebinding) -------------------------


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:1337",
        "127.0.0.1.attacker.example",
        "localhost.attacker.example",
        "LOCALHOST.evil",
        "10.0.0.1",
        "0.0.0.0",
        "[::2]:1337",
    ],
)
async def test_a_foreign_host_is_403_and_never_sent(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    host: str,
) -> None:
    status, _, document = await post(http, koala_server, {**JSON, "Host": host})
    assert status == 403
    error = error_of(document)
    assert error["type"] == "permission_error"
    assert error["code"] == "host_not_allowed"
    assert "--allowed-host" in error["message"]
    async with http.get(koala_server.url + "/", headers={"Host": host}) as response:
        assert response.status == 403
    assert sandbox.requests == []


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST:1", "localhost.", "127.0.0.1", "127.1.2.3:80", "[::1]"],
)
async def test_loopback_names_and_addresses_are_answered(
    http: aiohttp.ClientSession, koala_server: ServerThread, host: str
) -> None:
    async with http.get(
        koala_server.base_url + "/models", headers={"Host": host}
    ) as response:
        assert response.status == 200
    status, _, document = await post(http, koala_server, {**JSON, "Host": host})
    assert status == 200, document


@pytest.mark.parametrize("host", ["a b", "::1", "x:99999", "x:", "", "[::1"])
async def test_a_malformed_host_is_400(
    http: aiohttp.ClientSession, koala_server: ServerThread, host: str
) -> None:
    async with http.get(
        koala_server.base_url + "/models", headers={"Host": host}
    ) as response:
        assert response.status == 400
        assert error_of(await response.json())["code"] == "invalid_request"


async def test_allowed_hosts_are_answered_as_the_server_itself(
    http: aiohttp.ClientSession, start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start_server(allowed_hosts=("Chat.Example.",))
    assert server.config.allowed_hosts == ("chat.example",)
    for host, origin in [
        ("chat.example:8443", "https://chat.example:8443"),
        # Behind a proxy that speaks HTTPS on the default port.
        ("chat.example", "https://chat.example"),
    ]:
        status, _, document = await post(
            http, server, {**JSON, "Host": host, "Origin": origin}
        )
        assert status == 200, document
    status, _, document = await post(
        http, server, {**JSON, "Host": "chat.example.evil"}
    )
    assert status == 403
    assert error_of(document)["code"] == "host_not_allowed"
    assert len(sandbox.requests) == 2


async def test_any_host_with_a_star_and_a_key(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = start_server(api_key="k3y-for-clients", allowed_hosts=("*",))
    async with http.get(
        server.base_url + "/models",
        headers={"Host": "anything.example", "Authorization": "Bearer k3y-for-clients"},
    ) as response:
        assert response.status == 200


# --- Origin and Sec-Fetch-Site: the server's own pages only -------------------------


async def test_a_foreign_origin_is_403_whatever_the_body(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    other_port = f"http://127.0.0.1:{koala_server.port + 1}"
    other_name = f"http://localhost:{koala_server.port}"
    for origin in (EVIL, "null", other_port, other_name, "http://127.0.0.1"):
        for content_type in ("text/plain", "application/json"):
            status, _, document = await post(
                http, koala_server, {"Content-Type": content_type, "Origin": origin}
            )
            assert status == 403, origin
            error = error_of(document)
            assert error["code"] == "origin_not_allowed"
            assert "--cors-origin" in error["message"]
    assert sandbox.requests == []


async def test_the_server_s_own_origin_is_answered(
    http: aiohttp.ClientSession, koala_server: ServerThread, sandbox: Sandbox
) -> None:
    own = {**JSON, "Origin": koala_server.url, "Sec-Fetch-Site": "same-origin"}
    status, _, document = await post(http, koala_server, own)
    assert status == 200, document
    localhost = f"localhost:{koala_server.port}"
    status, _, document = await post(
        http,
        koala_server,
        {**JSON, "Host": localhost, "Origin": f"http://{localhost}"},
    )
    assert status == 200, document
    assert len(sandbox.requests) == 2


@pytest.mark.parametrize(
    ("site", "status"),
    [
        ("cross-site", 403),
        ("same-site", 403),
        ("Cross-Site", 403),
        ("something-new", 403),
        ("same-origin", 200),
        ("none", 200),
    ],
)
async def test_sec_fetch_site_lets_only_the_server_s_own_fetches_through(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    sandbox: Sandbox,
    site: str,
    status: int,
) -> None:
    answered, _, document = await post(
        http, koala_server, {**JSON, "Sec-Fetch-Site": site}
    )
    assert answered == status
    if status == 403:
        assert error_of(document)["code"] == "cross_site_request"
    # An <img src> of another site: a GET, with no Origin at all.
    async with http.get(
        koala_server.base_url + "/models", headers={"Sec-Fetch-Site": site}
    ) as response:
        assert response.status == status
    assert len(sandbox.requests) == (1 if status == 200 else 0)


async def test_health_answers_any_host_origin_and_site(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    headers = {"Host": "probe.internal", "Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
    async with http.get(koala_server.url + "/health", headers=headers) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


def test_the_openai_sdk_is_answered(sdk: openai.OpenAI, sandbox: Sandbox) -> None:
    completion = sdk.chat.completions.create(model="", messages=HELLO)
    assert completion.choices[0].message.content
    assert [model.id for model in sdk.models.list()]
    (request,) = sandbox.requests
    assert request.json is not None


# --- with CORS on: the configured origins, and Vary: Origin everywhere ---------------


async def test_with_cors_an_allowed_origin_may_call_cross_site(
    http: aiohttp.ClientSession, start_server: StartServer, sandbox: Sandbox
) -> None:
    server = start_server(cors_origins=(ORIGIN,))
    status, headers, document = await post(
        http, server, {**JSON, "Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"}
    )
    assert status == 200, document
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in headers.getall("Vary")
    status, headers, document = await post(
        http, server, {"Content-Type": "text/plain", "Origin": EVIL}
    )
    assert status == 403
    assert error_of(document)["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in headers
    assert "Origin" in headers.getall("Vary")
    assert len(sandbox.requests) == 1


@pytest.mark.parametrize("origins", [(ORIGIN,), ("*",)])
async def test_with_cors_every_response_varies_on_origin(
    http: aiohttp.ClientSession, start_server: StartServer, origins: tuple[str, ...]
) -> None:
    server = start_server(cors_origins=origins)
    preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    for method, path, headers in [
        ("GET", "/v1/models", {}),
        ("GET", "/v1/models", {"Origin": EVIL}),
        ("GET", "/v1/models/nope", {"Origin": ORIGIN}),
        ("GET", "/health", {}),
        ("GET", "/", {}),
        ("OPTIONS", "/v1/chat/completions", preflight),
    ]:
        async with http.request(method, server.url + path, headers=headers) as response:
            varies = {
                name.strip()
                for value in response.headers.getall("Vary", [])
                for name in value.split(",")
            }
            assert "Origin" in varies, (method, path, headers)


async def test_without_cors_no_response_allows_an_origin(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    async with http.get(
        koala_server.base_url + "/models", headers={"Origin": koala_server.url}
    ) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_json_responses_and_errors_say_nosniff(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    base = koala_server.base_url
    requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", base + "/models", {}, None),
        ("GET", base + "/models/nope", {}, None),
        ("GET", koala_server.url + "/health", {}, None),
        ("GET", koala_server.url + "/openapi.json", {}, None),
        ("GET", base + "/models", {"Host": "attacker.example"}, None),
        ("POST", base + "/chat/completions", JSON, BODY),
        ("POST", base + "/chat/completions", {"Content-Type": "text/plain"}, BODY),
        ("POST", base + "/chat/completions", JSON, b"{not json"),
    ]
    for method, url, headers, data in requests:
        async with http.request(method, url, headers=headers, data=data) as response:
            assert response.content_type == "application/json"
            assert response.headers["X-Content-Type-Options"] == "nosniff", url
    stream = msgspec.json.encode({"model": "", "messages": HELLO, "stream": True})
    async with http.post(
        base + "/chat/completions", data=stream, headers=JSON
    ) as response:
        assert response.content_type == "text/event-stream"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        await response.read()


# --- the dialect a client may ask for (--client-protocols) ---------------------------


@pytest.fixture
def api_sandbox() -> Iterator[Sandbox]:
    """A sandbox that speaks only the paid api dialect, with its key."""
    with Sandbox(protocol="api") as server:
        yield server


@pytest.fixture
def serve_command(
    api_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., ServerThread]]:
    """Return a function that starts `koala serve ARGS` with KOALA_API_KEY set."""
    monkeypatch.setenv("KOALA_API_KEY", SANDBOX_API_KEY)
    servers: list[ServerThread] = []

    def start(*argv: str) -> ServerThread:
        endpoint = ["--endpoint", api_sandbox.api_endpoint, "--retries", "0"]
        args = build_parser("koala serve").parse_args(
            ["--port", "0", "--grace", "1", *endpoint, *argv]
        )
        server = ServerThread(config_from_args(args))
        server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def ask(server: ServerThread, **body: Any) -> Any:
    """Return a completion created with the openai SDK, `body` as extra_body."""
    with openai.OpenAI(
        base_url=server.base_url, api_key="unused", max_retries=0
    ) as client:
        return client.chat.completions.create(
            model="",
            messages=HELLO,
            extra_body=body,
        )


@pytest.mark.parametrize(
    "extra",
    [{}, {"stream": True}, {"response_format": {"type": "json_object"}}],
    ids=["whole", "streamed", "json-mode"],
)
def test_the_paid_dialect_is_refused_and_its_key_never_sent(
    serve_command: Callable[..., ServerThread],
    api_sandbox: Sandbox,
    extra: dict[str, Any],
) -> None:
    server = serve_command("--protocol", "history")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(server, protocol="api", **extra)
    assert caught.value.status_code == 403
    assert caught.value.code == "protocol_not_allowed"
    assert "--client-protocols" in caught.value.message
    assert api_sandbox.requests == []


def test_the_paid_dialect_when_the_operator_allows_it(
    serve_command: Callable[..., ServerThread], api_sandbox: Sandbox
) -> None:
    server = serve_command("--protocol", "history", "--client-protocols", "history,api")
    completion = ask(server, protocol="api")
    assert completion.choices[0].message.content
    (request,) = api_sandbox.requests
    assert request.headers["Authorization"] == f"Bearer {SANDBOX_API_KEY}"


def test_the_server_s_own_dialect_may_always_be_named(
    serve_command: Callable[..., ServerThread], api_sandbox: Sandbox
) -> None:
    # KOALA_API_KEY and no --protocol: the server speaks api itself.
    server = serve_command()
    assert ask(server).choices[0].message.content
    assert ask(server, protocol="api").choices[0].message.content
    assert len(api_sandbox.requests) == 2


async def test_the_model_list_offers_only_allowed_dialects(
    http: aiohttp.ClientSession, serve_command: Callable[..., ServerThread]
) -> None:
    expected = {
        ("--protocol", "history"): ["auto", "history", "messages"],
        ("--client-protocols", "messages"): ["messages", "api"],
        ("--protocol", "messages", "--client-protocols", "history"): [
            "history",
            "messages",
        ],
    }
    for argv, protocols in expected.items():
        server = serve_command(*argv)
        async with http.get(server.base_url + "/models") as response:
            listing = await response.json()
        assert listing["koala"]["protocols"] == protocols, argv


@pytest.mark.parametrize("value", ["auto,bogus", "", "api,,history"])
def test_client_protocols_are_checked_by_the_command(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser("koala serve").parse_args(["--client-protocols", value])
    assert exited.value.code == 2
    assert "--client-protocols" in capsys.readouterr().err


def test_client_protocols_default_to_the_free_dialects() -> None:
    args = build_parser("koala serve").parse_args(["--client-protocols", "api, auto"])
    assert args.client_protocols == ("api", "auto")
    assert ServerConfig().client_protocols == ("auto", "history", "messages")
    with pytest.raises(UsageError, match="client protocols"):
        ServerConfig(client_protocols=("paid",))
    assert set(ServerConfig().client_protocols) < set(PROTOCOLS)


# --- start-up: listening beyond loopback ---------------------------------------------


def run_serve(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = server_main(["--port", "0", "--quiet", *argv])
    return code, capsys.readouterr().err


def test_beyond_loopback_needs_allowed_hosts_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_VARIABLE, "k3y-for-clients")
    code, error = run_serve(["--host", "0.0.0.0"], capsys)
    assert code == 2
    assert error.count("\n") == 1
    assert "Listening on 0.0.0.0 needs --allowed-host" in error
    ServerConfig(
        host="0.0.0.0", api_key="k", allowed_hosts=("chat.lan",)
    ).check_exposure()
    ServerConfig(host="::", api_key="k", allowed_hosts=("*",)).check_exposure()


def test_any_host_without_a_key_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(API_KEY_VARIABLE, raising=False)
    code, error = run_serve(["--allowed-host", "*"], capsys)
    assert code == 2
    assert error.count("\n") == 1
    assert "DNS rebinding" in error


@pytest.mark.parametrize(
    "value", ["http://chat.lan", "chat.lan:8080", "chat.lan/x", "a b", "", "[::1]:80"]
)
def test_an_allowed_host_is_a_bare_name(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code, error = run_serve(["--allowed-host", value], capsys)
    assert code == 2
    assert error.count("\n") == 1
    assert "without port" in error


def test_serve_help_names_the_new_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("koala serve").parse_args(["--help"])
    text = capsys.readouterr().out
    for words in ("--allowed-host NAME", "--client-protocols LIST", "Sec-Fetch-Site"):
        assert words in text


@pytest.mark.parametrize(
    ("authority", "parsed"),
    [
        ("Example.COM", ("example.com", None)),
        ("example.com.:80", ("example.com", 80)),
        ("127.0.0.1:1337", ("127.0.0.1", 1337)),
        ("[::1]", ("::1", None)),
        ("[::1]:8080", ("::1", 8080)),
        ("::1", None),
        ("[::1]x", None),
        ("[example.com]", None),
        ("host:65536", None),
        ("host:-1", None),
        ("host:٣", None),
        ("hôst", None),
        (":80", None),
    ],
)
def test_split_host(authority: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_host(authority) == parsed


def test_allowed_hosts_are_normalised() -> None:
    assert check_allowed_host("::1") == "::1"
    assert check_allowed_host("[::1]") == "::1"
    assert check_allowed_host("LAN.Example.") == "lan.example"
    assert check_allowed_host("*") == "*"


# --- X-Koala-Ignored-Params: bounded, whatever the names ----------------------------


async def ignored_header(
    http: aiohttp.ClientSession, server: ServerThread, names: list[str]
) -> str:
    body = {"model": "", "messages": HELLO, **dict.fromkeys(names, 1)}
    status, headers, document = await post(
        http, server, JSON, msgspec.json.encode(body)
    )
    assert status == 200, document
    return headers[IGNORED_HEADER]


async def test_a_900_kb_name_is_cut_to_64_characters(
    http: aiohttp.ClientSession,
    koala_server: ServerThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="koala_chat.server"):
        header = await ignored_header(http, koala_server, ["x" * 900_000])
    assert header == "x" * 64 + "..."
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert logged == [f"ignored parameters: {header}"]


async def test_encoded_names_fit_the_budget_and_the_rest_is_counted(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    # Each € is 9 bytes percent-encoded: one cut name takes 580 bytes.
    names = [f"{n:02d}" + "€" * 300 for n in range(10)]
    header = await ignored_header(http, koala_server, names)
    assert len(header.encode("latin-1")) <= 1024
    *listed, more = header.split(", ")
    assert listed == ["00" + "%E2%82%AC" * 62 + "..."]
    assert more == "(9 more)"


async def test_more_names_than_the_count_limit_are_counted(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    header = await ignored_header(http, koala_server, [f"name_{n}" for n in range(40)])
    *listed, more = header.split(", ")
    assert listed == [f"name_{n}" for n in range(32)]
    assert more == "(8 more)"


async def test_many_long_ascii_names_stay_within_one_kib(
    http: aiohttp.ClientSession, koala_server: ServerThread
) -> None:
    names = [f"{n:03d}" + "y" * 5000 for n in range(100)]
    header = await ignored_header(http, koala_server, names)
    assert len(header) <= 1024
    *listed, more = header.split(", ")
    assert all(len(name) == 67 for name in listed)
    assert len(listed) + int(more.split()[0].lstrip("(")) == 100


def test_the_command_line_passes_hosts_and_protocols() -> None:
    args = build_parser("koala serve").parse_args(
        ["--allowed-host", "a.example", "--allowed-host", "B.example"]
    )
    config = config_from_args(args)
    assert config.allowed_hosts == ("a.example", "b.example")
    assert config.client_protocols == ("auto", "history", "messages")
