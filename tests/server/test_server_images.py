"""`POST /v1/images/generations`: the openai SDK's `images.generate` against
`koala serve`, with the sandbox's KoalaImages upstream."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import openai
import pytest

from koala_chat import KoalaImages
from koala_chat.providers.dialects import ApiKey
from koala_chat.sandbox import Reply, Sandbox
from koala_chat.server.conversation import IGNORED_HEADER
from server_fixtures import AccessLog, ServerThread, fetch, server_config

StartServer = Callable[..., ServerThread]


def keyed(sandbox: Sandbox) -> dict[str, Any]:
    """The config changes of a server with the sandbox's key as its upstream key."""
    return {"provider_options": {"api_key": ApiKey(sandbox.api_key)}}


@pytest.fixture
def images_server(start_server: StartServer, sandbox: Sandbox) -> ServerThread:
    return start_server(**keyed(sandbox))


@pytest.fixture
def client(images_server: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=images_server.base_url, api_key="anything", max_retries=0
    ) as sdk:
        yield sdk


def test_the_sdk_gets_urls_and_alt_texts(
    client: openai.OpenAI, sandbox: Sandbox
) -> None:
    result = client.images.generate(prompt="a koala", n=2)
    assert result.data is not None
    assert len(result.data) == 2
    assert all(
        (d.url or "").startswith(sandbox.url + "/api/image/") for d in result.data
    )
    assert result.data[0].revised_prompt == "Sandbox image 1 of 2: a koala"
    assert result.created > 0
    (upstream,) = sandbox.requests
    assert upstream.headers["Authorization"] == f"Bearer {sandbox.api_key}"
    assert upstream.json == {
        "prompt": "a koala",
        "numImages": 2,
        "generateAltText": True,
    }


def test_the_sdk_gets_the_images_themselves_as_b64_json(
    client: openai.OpenAI, sandbox: Sandbox
) -> None:
    result = client.images.generate(prompt="a koala", n=4, response_format="b64_json")
    assert result.data is not None
    images = [base64.b64decode(d.b64_json or "") for d in result.data]
    assert len(images) == 4
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    assert len(set(images)) == 4
    assert [d.revised_prompt for d in result.data][3] == "Sandbox image 4 of 4: a koala"
    # One generation, then each image fetched once, without the key.
    fetches = sandbox.requests[1:]
    assert [r.method for r in fetches] == ["GET"] * 4
    assert all("Authorization" not in r.headers for r in fetches)
    # The same bytes as a direct fetch of the URL of the same request.
    [again] = KoalaImages.create_images_sync(
        "a koala", n=1, api_key=sandbox.api_key, chat_endpoint=sandbox.api_endpoint
    )
    assert KoalaImages.fetch_image_sync(again.url) == images[0]


@pytest.mark.parametrize(
    ("quality", "sent"),
    [("low", "fast"), ("medium", "medium"), ("high", "high"), ("hd", "high")],
)
def test_openai_qualities_become_koalas(
    client: openai.OpenAI, sandbox: Sandbox, quality: Any, sent: str
) -> None:
    client.images.generate(prompt="a koala", quality=quality, model="gpt-image-2")
    (upstream,) = sandbox.requests
    assert upstream.json is not None
    assert upstream.json["quality"] == sent
    assert upstream.json["model"] == "gpt-image-2"


def test_a_koala_style_passes_and_an_openai_style_is_ignored(
    client: openai.OpenAI, sandbox: Sandbox
) -> None:
    client.images.generate(prompt="a koala", style="vivid", size="1152x896")
    raw = client.images.with_raw_response.generate(
        prompt="a koala", extra_body={"style": "anime"}
    )
    first, second = (request.json for request in sandbox.requests)
    assert first is not None
    assert second is not None
    assert "style" not in first
    assert first["size"] == "1152x896"
    assert second["style"] == "anime"
    assert IGNORED_HEADER not in raw.headers
    vivid = client.images.with_raw_response.generate(prompt="a koala", style="vivid")
    assert vivid.headers[IGNORED_HEADER] == "style"


@pytest.mark.parametrize(
    "changes",
    [
        {"n": 5},
        {"n": 0},
        {"quality": "standard"},
        {"response_format": "png"},
        {"size": "huge"},
        {"prompt": ""},
        {"model": "gpt-image-2", "extra_body": {"n": "two"}},
    ],
)
def test_bad_parameters_are_400_and_nothing_goes_upstream(
    client: openai.OpenAI, sandbox: Sandbox, changes: dict[str, Any]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**{"prompt": "a koala", **changes})
    assert caught.value.status_code == 400
    assert sandbox.requests == []


def test_an_unknown_model_is_404(client: openai.OpenAI, sandbox: Sandbox) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.generate(prompt="a koala", model="dall-e-3")
    assert caught.value.code == "model_not_found"
    assert sandbox.requests == []


def test_without_an_upstream_key_the_answer_is_the_api_dialects_403(
    sdk: openai.OpenAI, sandbox: Sandbox
) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk.images.generate(prompt="a koala")
    assert caught.value.code == "protocol_unavailable"
    assert "KOALA_API_KEY" in caught.value.message
    assert sandbox.requests == []


def test_a_plan_without_the_model_is_403_model_not_in_plan() -> None:
    with Sandbox(image_models=("gpt-image-2",)) as upstream:
        server = ServerThread(server_config(upstream, **keyed(upstream)))
        server.start()
        try:
            with (
                openai.OpenAI(
                    base_url=server.base_url, api_key="-", max_retries=0
                ) as sdk,
                pytest.raises(openai.PermissionDeniedError) as caught,
            ):
                sdk.images.generate(prompt="a koala", model="nano-banana-2")
        finally:
            server.stop()
    assert caught.value.code == "model_not_in_plan"
    assert "plan" in caught.value.message


def test_an_upstream_out_of_credits_is_402(
    client: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(status=402, body=b'{"error": "no credits"}'))
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.generate(prompt="a koala")
    assert caught.value.status_code == 402
    assert caught.value.code == "insufficient_quota"


def test_a_refused_upstream_key_is_502_and_never_quoted(
    start_server: StartServer, sandbox: Sandbox
) -> None:
    wrong = "wrong-upstream-key-31337"
    server = start_server(provider_options={"api_key": ApiKey(wrong)})
    with (
        openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0) as sdk,
        pytest.raises(openai.InternalServerError) as caught,
    ):
        sdk.images.generate(prompt="a koala")
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth"
    assert wrong not in caught.value.response.text


def test_an_upstream_rate_limit_passes_its_wait_on(
    client: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": "9"}, body=b"slow"))
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(prompt="a koala")
    assert caught.value.response.headers["Retry-After"] == "9"


def test_urls_come_at_once_but_an_unfinished_image_is_504_for_b64_json() -> None:
    with Sandbox(image_delay=60.0) as upstream:
        config = server_config(
            upstream,
            provider_options={"api_key": ApiKey(upstream.api_key), "timeout": 0.5},
        )
        server = ServerThread(config)
        server.start()
        try:
            with openai.OpenAI(
                base_url=server.base_url, api_key="-", max_retries=0, timeout=30
            ) as sdk:
                result = sdk.images.generate(prompt="a koala")
                assert result.data is not None
                assert result.data[0].url is not None
                with pytest.raises(openai.APIStatusError) as caught:
                    sdk.images.generate(prompt="a koala", response_format="b64_json")
        finally:
            server.stop()
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"


async def test_the_access_log_names_the_route_the_model_and_the_images(
    images_server: ServerThread, http: aiohttp.ClientSession, access_log: AccessLog
) -> None:
    body = {"prompt": "a koala", "n": 3, "model": "gpt-image-2"}
    async with http.post(
        images_server.base_url + "/images/generations", json=body
    ) as response:
        assert response.status == 200
    line = await access_log.next()
    assert '"POST /v1/images/generations" 200 api=images model=gpt-image-2' in line
    assert " ttfp=" in line
    assert "pieces=3 " in line


async def test_the_route_is_behind_the_servers_own_key(
    start_server: StartServer, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    server = start_server(api_key="server-key-1234", **keyed(sandbox))
    async with http.post(
        server.base_url + "/images/generations", json={"prompt": "a koala"}
    ) as response:
        assert response.status == 401
    assert sandbox.requests == []


async def test_a_body_over_the_limit_is_413(
    start_server: StartServer, sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    server = start_server(max_body=1024, **keyed(sandbox))
    async with http.post(
        server.base_url + "/images/generations", json={"prompt": "k" * 4096}
    ) as response:
        assert response.status == 413
    assert sandbox.requests == []


def test_the_model_list_says_whether_images_can_be_made(
    start_server: StartServer, sandbox: Sandbox
) -> None:
    # The chat page shows its image mode only when the server says so.
    for changes, expected in (({}, False), (keyed(sandbox), True)):
        server = start_server(**changes)
        status, _, body = fetch(server.base_url + "/models")
        assert status == 200
        assert json.loads(body)["koala"]["images"] is expected


async def test_many_long_ignored_names_keep_the_header_within_one_kib(
    images_server: ServerThread, http: aiohttp.ClientSession
) -> None:
    # The chat routes' bound (test_server_crosssite.py), on the image route.
    names = [f"{n:03d}" + "y" * 5000 for n in range(100)]
    body = {"prompt": "a koala", **dict.fromkeys(names, 1)}
    async with http.post(
        images_server.base_url + "/images/generations", json=body
    ) as response:
        assert response.status == 200
        header = response.headers[IGNORED_HEADER]
    assert len(header) <= 1024
    *listed, more = header.split(", ")
    assert all(len(name) == 67 for name in listed)
    assert len(listed) + int(more.split()[0].lstrip("(")) == 100
