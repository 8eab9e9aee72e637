"""`POST /v1/images/generations`: KoalaImages in the OpenAI shape.

The request is OpenAI's (`prompt`, `model`, `n`, `size`, `quality`, `style`,
`response_format`); it is checked before anything is sent (400), then sent
with the upstream key of `KOALA_API_KEY` (never a client's); without one the
answer is the 403 a request for the api dialect gets. OpenAI's qualities map
to Koala's (`QUALITIES`); a style is passed on when it is one of Koala's and
ignored otherwise (OpenAI's `vivid` and `natural`), as is a quality for a
model that takes none; the alt text comes back
as `revised_prompt`. For `b64_json` the images are fetched at once, at most
`IMAGE_FETCHES` in the whole process, each under its own time limit
(docs/images.md). The route counts against the server's limit of
completions at once and writes its access-log line as chat does.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, Final

from aiohttp import web

from .. import defaults
from ..errors import UsageError
from ..messages import JSONValue
from ..providers.images import GeneratedImage, ImageOptions, KoalaImages
from .accesslog import LOG_KEY
from .conversation import ignored_headers, json_response, misconfigured, read_object
from .failures import Failure, FailureError, bad_request
from .imagespec import FORMATS, KNOWN, PATH, QUALITIES
from .logtext import shortened
from .state import STATE_KEY, ServerState
from .streaming import RequestLog

__all__ = ["add_image_routes", "generations"]


_FETCHES_KEY: Final = web.AppKey("koala_chat.images.fetches", asyncio.Semaphore)


def add_image_routes(app: web.Application) -> None:
    """Serve `POST /v1/images/generations` on `app` (after its state is set)."""
    app[_FETCHES_KEY] = asyncio.Semaphore(defaults.IMAGE_FETCHES)
    app.router.add_post(PATH, generations)


async def generations(request: web.Request) -> web.Response:
    """Answer an OpenAI images request with KoalaImages' images."""
    state = request.app[STATE_KEY]
    log = request[LOG_KEY] = RequestLog(started=time.perf_counter(), format="images")
    body = await read_object(request, state.config.max_body)
    options, response_format, ignored = _parse(body, state.config.strict)
    log.model = options.model or KoalaImages.default_model
    key = state.options.get("api_key")
    if key is None:
        raise FailureError(
            Failure(
                403,
                "permission_error",
                "protocol_unavailable",
                "this server has no upstream key: images need the key of "
                f"Koala's official API, which its operator sets in "
                f"{defaults.API_KEY_VARIABLE}",
            )
        )
    connection = _connection(state)
    async with state.admitted_for(request):
        images = await _generate(options, key, connection)
        log.saw_first_piece()
        log.pieces = len(images)
        data = await _entries(request.app, connection, images, response_format)
    return json_response(
        {"created": int(time.time()), "data": data}, ignored_headers(ignored)
    )


def _parse(
    body: dict[str, JSONValue], strict: bool
) -> tuple[ImageOptions, str, list[str]]:
    """Return the checked options, the response format and the ignored names.

    Raises:
        FailureError: 400 for a bad parameter (or, when `strict`, an unknown one).
        UsageError, ModelNotFoundError: from `ImageOptions`.
    """
    ignored = [name for name in body if name not in KNOWN]
    if strict and ignored:
        raise FailureError(
            bad_request(f"unknown parameter {shortened(ignored[0], 64)!r}")
        )
    quality = _string(body, "quality")
    if quality is not None and quality not in QUALITIES:
        raise FailureError(
            bad_request(
                f"quality must be one of {', '.join(QUALITIES)}, not {quality!r}"
            )
        )
    style = _string(body, "style")
    if style is not None and style not in defaults.IMAGE_STYLES:
        ignored.append("style")
        style = None
    response_format = _string(body, "response_format") or "url"
    if response_format not in FORMATS:
        raise FailureError(
            bad_request(
                f"response_format must be url or b64_json, not {response_format!r}"
            )
        )
    model = _string(body, "model") or None
    koala_quality = QUALITIES[quality] if quality is not None else None
    if koala_quality is not None and (model or KoalaImages.default_model) != (
        defaults.IMAGE_QUALITY_MODEL
    ):
        # OpenAI clients send a quality for any model; only one takes it.
        ignored.append("quality")
        koala_quality = None
    size = _string(body, "size")
    n = body.get("n")
    if isinstance(n, float) and n.is_integer() and abs(n) < 2**53:
        # JSON has one number type: 3.0 is the whole number 3.
        n = int(n)
    options = ImageOptions(
        prompt=body.get("prompt", ""),  # checked by ImageOptions
        n=1 if n is None else n,
        size=None if size == "auto" else size,
        style=style,
        model=model,
        quality=koala_quality,
    )
    return options, response_format, ignored


def _string(body: dict[str, JSONValue], name: str) -> str | None:
    """Return the string parameter `name`, None when absent or null.

    Raises:
        FailureError: 400, it is not a string.
    """
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    raise FailureError(bad_request(f"{name} must be a string"))


def _connection(state: ServerState) -> dict[str, Any]:
    """Return the server's upstream options that the images call takes too."""
    options = state.options
    taken = {
        "chat_endpoint": options.get("api_endpoint"),
        "proxy": options.get("proxy"),
        "connector": options.get("connector"),
    }
    for name in ("timeout", "connect_timeout", "max_retries"):
        if name in options:
            taken[name] = options[name]
    return taken


async def _generate(
    options: ImageOptions, key: Any, connection: dict[str, Any]
) -> list[GeneratedImage]:
    """Return the images, over `connection`; the client's request was checked.

    Raises:
        FailureError: 500, when the server's own options are refused.
        KoalaError: the upstream failed (`failures.STATUSES` says the status).
    """
    try:
        return await KoalaImages.generate(options, api_key=key, **connection)
    except UsageError as exc:
        raise FailureError(misconfigured(exc)) from exc


async def _entries(
    app: web.Application,
    connection: dict[str, Any],
    images: list[GeneratedImage],
    response_format: str,
) -> list[JSONValue]:
    """Return the `data` items: URLs, or the images fetched and encoded."""
    if response_format == "url":
        return [_entry("url", image.url, image) for image in images]
    fetched = await KoalaImages.fetch_images(
        [image.url for image in images],
        limit=app[_FETCHES_KEY],
        # The operator's --timeout bounds every upstream request.
        timeout=connection.get("timeout", defaults.IMAGE_FETCH_TIMEOUT),
        proxy=connection["proxy"],
        connector=connection["connector"],
    )
    return [
        _entry("b64_json", base64.b64encode(data).decode("ascii"), image)
        for data, image in zip(fetched, images, strict=True)
    ]


def _entry(kind: str, value: str, image: GeneratedImage) -> dict[str, JSONValue]:
    entry: dict[str, JSONValue] = {kind: value}
    if image.alt is not None:
        entry["revised_prompt"] = image.alt
    return entry
