"""KoalaImages: images from the image API of the same Koala account.

docs/images.md says what the service takes and answers. `ImageOptions` checks
the parameters once, before any request (UsageError), and builds the body;
`KoalaImages.create_images` sends it with the key as the Bearer header and
returns the URLs and alt texts; `KoalaImages.fetch_image` fetches one image's
bytes under a time limit of its own, long enough for the image to finish
(the service answers the URL first and the fetch waits for the image), and
`KoalaImages.fetch_images` fetches several at once.

The session, proxy rules, time limits and the translation of aiohttp's
exceptions are the chat provider's (`attempts.Call`); only what is sent and
how the reply reads is said here.

Example:
    >>> images = await KoalaImages.create_images("a koala", n=2)
    >>> data = await KoalaImages.fetch_image(images[0].url)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing, nullcontext
from typing import Any, ClassVar, Final

import msgspec
from aiohttp import BaseConnector, ClientResponse

from .. import defaults
from .._http import (
    raise_for_redirect,
    raise_for_status,
    read_excerpt,
    remaining,
    reply_scrubber,
    text_excerpt,
)
from .._http.status import read_capped
from .._sync import run_sync
from .._urls import check_endpoint
from .._values import whole_number
from ..errors import (
    AuthenticationError,
    KoalaError,
    PlanError,
    UnexpectedReplyError,
    UsageError,
)
from ..messages import JSONValue
from .attempts import Call, HTTPRequest
from .dialects import ApiKey, api_headers
from .imageoptions import GeneratedImage, ImageOptions, images_endpoint
from .options import RequestOptions
from .settings import api_key as configured_key

__all__ = ["GeneratedImage", "ImageOptions", "KoalaImages", "images_endpoint"]

#: The largest reply to a generation request: a few URLs and alt texts.
_REPLY_LIMIT: Final = 1024 * 1024


class KoalaImages:
    """Images from KoalaImages, with the key of the account's official API.

    The key is `api_key`, else `KOALA_API_KEY`, and is sent only as the Bearer
    header of the generation request, never with a fetch of an image.
    """

    #: The models, the default first (docs/images.md, "Request").
    models: ClassVar[tuple[str, ...]] = defaults.IMAGE_MODELS
    default_model: ClassVar[str] = defaults.IMAGE_MODELS[0]
    styles: ClassVar[tuple[str, ...]] = defaults.IMAGE_STYLES
    qualities: ClassVar[tuple[str, ...]] = defaults.IMAGE_QUALITIES

    @classmethod
    async def create_images(
        cls,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        style: str | None = None,
        model: str | None = None,
        quality: str | None = None,
        enhance_prompt: bool | None = None,
        alt_text: bool = True,
        **connection: Any,
    ) -> list[GeneratedImage]:
        """Ask for `n` images of `prompt`; return their URLs and alt texts.

        The parameters are `ImageOptions`'; the keywords of the connection
        are `generate`'s (`api_key`, `api_endpoint`, `chat_endpoint`, `proxy`,
        `connector`, `timeout`, `connect_timeout`, `max_retries`).

        Example:
            >>> images = await KoalaImages.create_images("a koala", n=2)
            >>> [image.url for image in images]

        Raises:
            UsageError: bad parameters or options, or no key, before any request.
            AuthenticationError, CreditsExhaustedError, PlanError,
            RateLimitError, UnexpectedReplyError, TransportError: as `generate`.
        """
        options = ImageOptions(
            prompt, n, size, style, model, quality, enhance_prompt, alt_text
        )
        return await cls.generate(options, **connection)

    @classmethod
    async def generate(
        cls,
        options: ImageOptions,
        *,
        api_key: str | ApiKey | None = None,
        api_endpoint: str | None = None,
        chat_endpoint: str | None = None,
        proxy: str | None = None,
        connector: BaseConnector | None = None,
        # The limits are the call's, given to aiohttp (as the chat provider's
        # `timeout`); a caller's asyncio.timeout would not bound connecting.
        timeout: float | None = defaults.TOTAL_TIMEOUT,  # noqa: ASYNC109
        connect_timeout: float | None = defaults.CONNECT_TIMEOUT,
        max_retries: int = defaults.MAX_RETRIES,
    ) -> list[GeneratedImage]:
        """Send one generation request of checked `options`; return the images.

        The key is `api_key`, else `KOALA_API_KEY`; the endpoint is
        `images_endpoint(api_endpoint, chat_endpoint)`. Each image costs
        credits, so a request is retried (`max_retries`) only when it never
        reached the service (a refused connection). A `connector` is borrowed
        and never closed.

        Raises:
            UsageError: no key, or a bad option, before any request.
            AuthenticationError: the key was refused (401).
            CreditsExhaustedError: the account is out of credits (402).
            PlanError: the plan lacks the model or quality (403).
            RateLimitError: 429.
            UnexpectedReplyError: a 2xx reply that is not a list of images.
            TransportError: see `koala_chat.errors`.
        """
        key = configured_key(api_key)
        if key is None:
            raise UsageError(
                "KoalaImages needs the key of the official API: set "
                f"{defaults.API_KEY_VARIABLE} or pass api_key"
            )
        request = HTTPRequest(
            url=images_endpoint(api_endpoint, chat_endpoint),
            body=msgspec.json.encode(options.body()),
            headers=api_headers(key),
        )
        settings = RequestOptions.from_kwargs(
            {
                "timeout": timeout,
                "connect_timeout": connect_timeout,
                "max_retries": max_retries,
            }
        )
        images: list[GeneratedImage] = []
        async with (
            Call(settings, proxy, connector) as call,
            aclosing(call.batches(request, _read_images, resend=False)) as batches,
        ):
            try:
                async for batch in batches:
                    images.extend(_image(value) for value in batch)
            except AuthenticationError as exc:
                if exc.status != 403:
                    raise
                raise _plan_error(exc) from None
        return images

    @classmethod
    def create_images_sync(cls, prompt: str, **kwargs: Any) -> list[GeneratedImage]:
        """`create_images` from synchronous code (on a private event loop).

        Takes and raises what `create_images` does.
        """
        return run_sync(lambda: cls.create_images(prompt, **kwargs))

    @classmethod
    async def fetch_image(
        cls,
        url: str,
        *,
        timeout: float | None = defaults.IMAGE_FETCH_TIMEOUT,  # noqa: ASYNC109
        connect_timeout: float | None = defaults.CONNECT_TIMEOUT,
        max_bytes: int = defaults.IMAGE_MAX_BYTES,
        proxy: str | None = None,
        connector: BaseConnector | None = None,
    ) -> bytes:
        """Return the bytes of the image at `url`, once it is finished.

        `timeout` bounds the whole fetch, including the wait for the image
        (no limit on the silence before the reply's head). No key is sent.

        Raises:
            UsageError: `url` is not an http(s) URL, or a bad option.
            KoalaTimeoutError: the image was not there in time.
            StatusError: an error status (404: no such image).
            UnexpectedReplyError: the reply is not an image, or larger than
                `max_bytes`.
            TransportError: see `koala_chat.errors`.
        """
        check_endpoint(url)
        whole_number({"max_bytes": max_bytes}, "max_bytes", max_bytes, minimum=1)
        settings = RequestOptions.from_kwargs(
            {
                "timeout": timeout,
                "connect_timeout": connect_timeout,
                "idle_timeout": None,
            }
        )
        async with Call(settings, proxy, connector) as call:
            with call.translating(url):
                async with call.session.get(
                    url,
                    headers={"Accept": "image/*"},
                    proxy=call.http_proxy,
                    timeout=settings.timeouts.client_timeout(remaining(call.deadline)),
                    # The image URLs need no key; a redirect to a store of
                    # images carries nothing to leak.
                    max_redirects=5,
                ) as response:
                    await raise_for_redirect(response)
                    await raise_for_status(response)
                    return await _read_image(response, max_bytes)

    @classmethod
    def fetch_image_sync(cls, url: str, **kwargs: Any) -> bytes:
        """`fetch_image` from synchronous code (on a private event loop).

        Takes and raises what `fetch_image` does.
        """
        return run_sync(lambda: cls.fetch_image(url, **kwargs))

    @classmethod
    async def fetch_images(
        cls,
        urls: Sequence[str],
        *,
        limit: asyncio.Semaphore | None = None,
        on_fetched: Callable[[int], object] | None = None,
        timeout: float | None = defaults.IMAGE_FETCH_TIMEOUT,  # noqa: ASYNC109
        proxy: str | None = None,
        connector: BaseConnector | None = None,
    ) -> list[bytes]:
        """Fetch the images at `urls` at once (`fetch_image`); return them in order.

        `limit`, when given, is held by each fetch while it runs (a bound
        shared with other calls); `on_fetched` is told how many fetches are
        done after each one ends. The other keywords are `fetch_image`'s.

        Raises:
            KoalaError: as `fetch_image`; the first failure cancels the others.
        """
        done = 0

        async def fetch(url: str) -> bytes:
            nonlocal done
            async with limit if limit is not None else nullcontext():
                data = await cls.fetch_image(
                    url, timeout=timeout, proxy=proxy, connector=connector
                )
            done += 1
            if on_fetched is not None:
                on_fetched(done)
            return data

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(fetch(url)) for url in urls]
        except* KoalaError as failures:
            raise failures.exceptions[0] from None
        return [task.result() for task in tasks]


async def _read_images(
    response: ClientResponse, options: RequestOptions
) -> AsyncGenerator[list[JSONValue], None]:
    """Read a 2xx reply to a generation request: one JSON list of images.

    Raises:
        UnexpectedReplyError: the reply is too large, not JSON, or not a
            non-empty list of objects with an http(s) `url`.
    """
    data = await read_capped(response, _REPLY_LIMIT)
    problem = "is larger than 1 MiB" if data is None else ""
    value: JSONValue = None
    if data is not None:
        try:
            value = msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError):
            problem = "is not JSON"
    if not problem and not (
        isinstance(value, list) and value and all(_is_image(item) for item in value)
    ):
        problem = 'is not a list of {"url", "alt"}'
    if problem:
        text = (data or b"")[:1024].decode("utf-8", "replace")
        raise UnexpectedReplyError(
            f"the image reply {problem}",
            content_type=response.content_type,
            body=text_excerpt(text, scrub=reply_scrubber(response)),
        )
    assert isinstance(value, list)
    yield value


def _is_image(item: JSONValue) -> bool:
    if not isinstance(item, dict):
        return False
    url, alt = item.get("url"), item.get("alt")
    if not isinstance(url, str) or url.partition(":")[0].lower() not in (
        "http",
        "https",
    ):
        return False
    return alt is None or isinstance(alt, str)


def _image(value: JSONValue) -> GeneratedImage:
    assert isinstance(value, dict)
    url, alt = value["url"], value.get("alt")
    assert isinstance(url, str)
    return GeneratedImage(url, alt if isinstance(alt, str) and alt else None)


async def _read_image(response: ClientResponse, max_bytes: int) -> bytes:
    """Return an image reply's bytes.

    Raises:
        UnexpectedReplyError: not an image type, or larger than `max_bytes`.
    """
    kind = response.content_type
    if not kind.startswith("image/") and kind != "application/octet-stream":
        # The start of a page is enough for its title (`text_excerpt`).
        body = await read_excerpt(response, 1024)
        raise UnexpectedReplyError(
            f"the image URL answered {kind} instead of an image",
            content_type=kind,
            body=text_excerpt(body),
        )
    data = await read_capped(response, max_bytes)
    if data is None:
        raise UnexpectedReplyError(
            f"the image is larger than {max_bytes} bytes", content_type=kind
        )
    return data


def _plan_error(exc: AuthenticationError) -> PlanError:
    """Return the PlanError for a 403 to a generation request, with its message.

    The service's message is the `error` or `message` member of a JSON body,
    else the body's excerpt (already scrubbed of the key).
    """
    said = exc.body
    try:
        decoded = msgspec.json.decode(exc.body)
    except (msgspec.DecodeError, RecursionError):
        decoded = None
    if isinstance(decoded, dict):
        member = decoded.get("error") or decoded.get("message")
        if isinstance(member, str):
            said = member
    error = PlanError(
        "the plan of the account behind the API key does not allow this request "
        f"({exc.status} from {exc.url}{': ' + said if said else ''})",
        status=exc.status,
        url=exc.url,
        body=said,
        request_id=exc.request_id,
        attempts=exc.attempts,
    )
    error.key_sent = True
    return error
