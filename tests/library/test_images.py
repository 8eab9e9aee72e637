"""KoalaImages from the library: parameters, the endpoint rule, errors, fetching.

Against the sandbox's KoalaImages (koala_chat.sandbox.images) on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from koala_chat import (
    AuthenticationError,
    CreditsExhaustedError,
    GeneratedImage,
    KoalaImages,
    KoalaTimeoutError,
    ModelNotFoundError,
    PlanError,
    RateLimitError,
    StatusError,
    UnexpectedReplyError,
    UsageError,
)
from koala_chat.providers.imageoptions import images_endpoint
from koala_chat.sandbox import Reply, Sandbox


@pytest.fixture
def slow_images() -> Iterator[Sandbox]:
    """A sandbox whose images take 5 s to be ready."""
    with Sandbox(image_delay=5.0) as server:
        yield server


#: A sign-in page of 4 KiB in Latin-1, as a store of images may answer a fetch.
SIGN_IN_PAGE: bytes = (
    "<html><head><title>Connexion requise au café</title></head><body>"
    + "<p>" * 1024
    + "</body></html>"
).encode("latin-1")


@pytest.fixture
async def page_server() -> AsyncIterator[str]:
    """A server on 127.0.0.1 port 0 whose `/page` answers 200 with SIGN_IN_PAGE."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            body=SIGN_IN_PAGE, content_type="text/html", charset="iso-8859-1"
        )

    app = web.Application()
    app.router.add_get("/page", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/page"
    finally:
        await runner.cleanup()


def options(sandbox: Sandbox, **more: Any) -> dict[str, Any]:
    return {"api_key": sandbox.api_key, "chat_endpoint": sandbox.api_endpoint, **more}


async def test_images_come_back_as_urls_on_the_sandbox_with_alt_texts(
    sandbox: Sandbox,
) -> None:
    images = await KoalaImages.create_images(
        "a koala", n=3, style="watercolor", **options(sandbox)
    )
    assert len(images) == 3
    assert all(isinstance(image, GeneratedImage) for image in images)
    assert all(image.url.startswith(sandbox.url + "/api/image/") for image in images)
    assert len({image.url for image in images}) == 3
    assert images[1].alt == "Sandbox image 2 of 3: a koala"


async def test_the_request_carries_the_key_only_as_the_bearer_header(
    sandbox: Sandbox,
) -> None:
    await KoalaImages.create_images(
        "a koala",
        n=2,
        size="1152x896",
        model="gpt-image-2",
        quality="fast",
        enhance_prompt=False,
        **options(sandbox),
    )
    [request] = sandbox.requests
    assert (request.method, request.path) == ("POST", "/api/image-generation/")
    assert request.headers["Authorization"] == f"Bearer {sandbox.api_key}"
    assert request.json == {
        "prompt": "a koala",
        "numImages": 2,
        "size": "1152x896",
        "model": "gpt-image-2",
        "quality": "fast",
        "enhancePrompt": "off",
        "generateAltText": True,
    }
    assert sandbox.api_key.encode() not in request.body


async def test_without_alt_text_the_images_have_none(sandbox: Sandbox) -> None:
    [image] = await KoalaImages.create_images(
        "a koala", alt_text=False, **options(sandbox)
    )
    assert image.alt is None


def test_the_sync_call_gives_the_same_images(sandbox: Sandbox) -> None:
    [image] = KoalaImages.create_images_sync("a koala", **options(sandbox))
    data = KoalaImages.fetch_image_sync(image.url)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")


async def test_the_same_request_gives_the_same_image_bytes(sandbox: Sandbox) -> None:
    first = await KoalaImages.create_images("a koala", **options(sandbox))
    again = await KoalaImages.create_images("a koala", **options(sandbox))
    other = await KoalaImages.create_images("a wombat", **options(sandbox))
    data = [await KoalaImages.fetch_image(i[0].url) for i in (first, again, other)]
    assert data[0] == data[1]
    assert hashlib.sha256(data[0]).digest() != hashlib.sha256(data[2]).digest()


# --- the endpoint -------------------------------------------------------------------


def test_the_endpoint_is_the_chat_endpoints_origin_with_the_image_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KOALA_IMAGES_ENDPOINT", raising=False)
    monkeypatch.delenv("KOALA_API_ENDPOINT", raising=False)
    assert images_endpoint() == "https://koala.sh/api/image-generation/"
    monkeypatch.setenv("KOALA_API_ENDPOINT", "http://127.0.0.1:9/recorded/api/gpt/")
    assert images_endpoint() == "http://127.0.0.1:9/api/image-generation/"
    assert (
        images_endpoint(chat_endpoint="http://10.0.0.1:8000/api/gpt/")
        == "http://10.0.0.1:8000/api/image-generation/"
    )
    monkeypatch.setenv("KOALA_IMAGES_ENDPOINT", "http://127.0.0.1:7/images")
    assert images_endpoint(chat_endpoint="http://x/") == "http://127.0.0.1:7/images"
    assert images_endpoint("http://127.0.0.1:6/own") == "http://127.0.0.1:6/own"


async def test_the_images_endpoint_variable_is_where_the_request_goes(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOALA_IMAGES_ENDPOINT", sandbox.images_endpoint)
    monkeypatch.setenv("KOALA_API_ENDPOINT", "http://127.0.0.1:9/api/gpt/")
    images = await KoalaImages.create_images("a koala", api_key=sandbox.api_key)
    assert len(images) == 1
    assert len(sandbox.requests) == 1


# --- bad parameters, before any request ----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"n": 0}, "n must be a whole number from 1 to 4"),
        ({"n": 5}, "n must be a whole number from 1 to 4"),
        ({"n": True}, "n must be"),
        ({"size": "large"}, "size must be WIDTHxHEIGHT"),
        ({"style": "oil"}, "style must be one of photo"),
        ({"quality": "ultra"}, "quality must be one of fast, medium, high"),
        ({"model": "ideogram-3.0", "quality": "high"}, "only gpt-image-2"),
        ({"enhance_prompt": "on"}, "enhance_prompt must be True or False"),
        ({"alt_text": None}, "alt_text must be True or False"),
    ],
)
async def test_bad_parameters_are_usage_errors_before_any_request(
    sandbox: Sandbox, changes: dict[str, Any], words: str
) -> None:
    with pytest.raises(UsageError, match=words):
        await KoalaImages.create_images("a koala", **options(sandbox, **changes))
    assert sandbox.requests == []


async def test_an_unknown_model_names_the_known_ones(sandbox: Sandbox) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        await KoalaImages.create_images("a koala", **options(sandbox, model="dall-e"))
    assert caught.value.models == KoalaImages.models
    assert sandbox.requests == []


@pytest.mark.parametrize("prompt", ["", "   ", None])
async def test_an_empty_prompt_is_refused(sandbox: Sandbox, prompt: Any) -> None:
    with pytest.raises(UsageError, match="prompt"):
        await KoalaImages.create_images(prompt, **options(sandbox))
    assert sandbox.requests == []


async def test_without_a_key_nothing_is_sent(sandbox: Sandbox) -> None:
    with pytest.raises(UsageError, match="set KOALA_API_KEY or pass api_key"):
        await KoalaImages.create_images("a koala", chat_endpoint=sandbox.api_endpoint)
    assert sandbox.requests == []


# --- the service's errors -----------------------------------------------------------


async def test_a_refused_key_is_an_authentication_error_without_the_key(
    sandbox: Sandbox,
) -> None:
    wrong = "wrong-key-0123456789"
    with pytest.raises(AuthenticationError) as caught:
        await KoalaImages.create_images(
            "a koala", api_key=wrong, chat_endpoint=sandbox.api_endpoint
        )
    assert caught.value.status == 401
    assert not isinstance(caught.value, PlanError)
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value.__dict__)


async def test_a_plan_without_the_model_is_a_plan_error_with_the_services_words() -> (
    None
):
    with Sandbox(image_models=("gpt-image-2",)) as server:
        with pytest.raises(PlanError) as caught:
            await KoalaImages.create_images(
                "a koala", **options(server, model="ideogram-3.0")
            )
        assert len(server.requests) == 1
    error = caught.value
    assert error.status == 403
    assert "does not include the ideogram-3.0 model" in error.body
    assert "does not include the ideogram-3.0 model" in str(error)
    assert error.key_sent


@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        (None, "missing API key"),
        ("Basic a29hbGE6a2V5", "missing API key"),
        ("Bearer wrong-key", "invalid API key"),
    ],
)
async def test_the_sandbox_refuses_a_missing_or_wrong_key_as_the_chat_api_does(
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    authorization: str | None,
    words: str,
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with http.post(
        sandbox.images_endpoint, json={"prompt": "a koala"}, headers=headers
    ) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        said = (await response.json())["error"]
    assert words in said
    assert "wrong-key" not in said


async def test_no_credits_left_is_credits_exhausted_and_not_retried(
    sandbox: Sandbox,
) -> None:
    sandbox.push(Reply(status=402, body=b'{"error": "Not enough credits"}'))
    with pytest.raises(CreditsExhaustedError, match="out of credits"):
        await KoalaImages.create_images("a koala", **options(sandbox))
    assert len(sandbox.requests) == 1


async def test_a_rate_limit_says_when_to_retry_and_is_not_retried(
    sandbox: Sandbox,
) -> None:
    sandbox.push(Reply(status=429, headers={"Retry-After": "7"}, body=b"slow down"))
    with pytest.raises(RateLimitError) as caught:
        await KoalaImages.create_images("a koala", **options(sandbox))
    assert caught.value.retry_after == 7.0
    assert len(sandbox.requests) == 1


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b'{"error": "busy"}', b"[]", b'[{"url": "ftp://x/y"}]'],
)
async def test_a_reply_that_is_not_a_list_of_images_is_unexpected(
    sandbox: Sandbox, body: bytes
) -> None:
    sandbox.push(Reply(body=body))
    with pytest.raises(UnexpectedReplyError, match="the image reply"):
        await KoalaImages.create_images("a koala", **options(sandbox))


# --- fetching -----------------------------------------------------------------------


async def test_a_fetch_waits_no_longer_than_its_own_limit(
    slow_images: Sandbox,
) -> None:
    [image] = await KoalaImages.create_images("a koala", **options(slow_images))
    with pytest.raises(KoalaTimeoutError) as caught:
        await KoalaImages.fetch_image(image.url, timeout=0.3)
    assert caught.value.seconds == 0.3


async def test_a_fetch_of_an_unknown_image_is_a_404(sandbox: Sandbox) -> None:
    with pytest.raises(StatusError) as caught:
        await KoalaImages.fetch_image(sandbox.url + "/api/image/0123.png")
    assert caught.value.status == 404


async def test_a_fetch_of_something_else_than_an_image_is_refused(
    sandbox: Sandbox,
) -> None:
    with pytest.raises(UnexpectedReplyError, match="instead of an image"):
        await KoalaImages.fetch_image(sandbox.url + "/health")


async def test_a_page_over_1_kib_instead_of_an_image_is_quoted_by_its_title(
    page_server: str,
) -> None:
    with pytest.raises(UnexpectedReplyError, match="instead of an image") as caught:
        await KoalaImages.fetch_image(page_server)
    assert caught.value.body == "Connexion requise au café"


async def test_images_are_fetched_at_once_in_order_and_counted(
    sandbox: Sandbox,
) -> None:
    images = await KoalaImages.create_images("a koala", n=3, **options(sandbox))
    counts: list[int] = []
    data = await KoalaImages.fetch_images(
        [image.url for image in images], on_fetched=counts.append
    )
    assert data == [await KoalaImages.fetch_image(image.url) for image in images]
    assert counts == [1, 2, 3]


async def test_the_first_failed_fetch_of_several_is_raised(sandbox: Sandbox) -> None:
    [image] = await KoalaImages.create_images("a koala", **options(sandbox))
    with pytest.raises(StatusError) as caught:
        await KoalaImages.fetch_images([image.url, sandbox.url + "/api/image/0123.png"])
    assert caught.value.status == 404


async def test_a_fetch_stops_past_its_size_limit(sandbox: Sandbox) -> None:
    [image] = await KoalaImages.create_images("a koala", **options(sandbox))
    with pytest.raises(UnexpectedReplyError, match="larger than 10 bytes"):
        await KoalaImages.fetch_image(image.url, max_bytes=10)


async def test_a_fetch_sends_no_key(sandbox: Sandbox) -> None:
    [image] = await KoalaImages.create_images("a koala", **options(sandbox))
    await KoalaImages.fetch_image(image.url)
    fetch = sandbox.requests[-1]
    assert fetch.method == "GET"
    assert "Authorization" not in fetch.headers


@pytest.mark.parametrize("url", ["file:///etc/passwd", "not a url"])
async def test_a_fetch_takes_only_http_urls(url: str) -> None:
    with pytest.raises(UsageError):
        await KoalaImages.fetch_image(url)


async def test_a_plan_error_quoting_the_key_shows_it_masked(sandbox: Sandbox) -> None:
    echo = f'{{"error": "key {sandbox.api_key} lacks premium"}}'.encode()
    sandbox.push(Reply(status=403, body=echo))
    with pytest.raises(PlanError) as caught:
        await KoalaImages.create_images("a koala", **options(sandbox))
    assert sandbox.api_key not in str(caught.value)
    assert sandbox.api_key not in caught.value.body
    assert "lacks premium" in caught.value.body
