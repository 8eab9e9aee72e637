"""The sandbox speaks KoalaImages too (docs/images.md, "The sandbox").

    POST /api/image-generation/   checks the key and the body; answers
                                  `[{"url", "alt"}, ...]`, URLs on this server
    GET  /api/image/{name}.png    the image, once `delay` seconds have passed
                                  since it was asked for; 404 for another name

The images are small PNGs whose colour comes from the request (prompt, model,
style, size and the image's number), so the same request gives the same bytes.
A queued `Reply` answers the next accepted image request as it is: its status,
headers and raw body (or its values as one JSON list), so that a test can
script a 402, a 429 or a malformed answer.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import re
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import msgspec
from aiohttp import web

from .. import defaults
from ..errors import UsageError
from ..messages import JSONValue
from .checks import UnauthorizedError, check_key

if TYPE_CHECKING:
    from .state import SandboxState

__all__ = ["IMAGE_PATH", "ImageSettings", "add_image_routes", "png"]

IMAGE_PATH: Final = defaults.IMAGES_PATH
#: Where the images are served, `{name}` a hex digest.
_IMAGE_ROUTE: Final = "/api/image/{name}"
#: The images one sandbox keeps (the latest ones).
_KEEP: Final = 1000
_SIDE: Final = 16
_SIZE: Final = re.compile(defaults.IMAGE_SIZE_PATTERN, re.ASCII)


@dataclass(frozen=True, slots=True)
class ImageSettings:
    """How the sandbox's KoalaImages behaves.

    `delay` is the seconds from the generation request until each image is
    ready (a fetch before then waits); `plan_models` the models the key's
    plan includes (None: all), any other one answered 403 as the service
    answers a plan that lacks it.
    """

    delay: float = 0.0
    plan_models: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.delay < float("inf"):
            raise UsageError(f"the image delay must be >= 0 seconds, not {self.delay}")


@dataclass(frozen=True, slots=True)
class _Image:
    data: bytes
    ready_at: float


class _Gallery:
    """The images made, by name; the oldest go past `_KEEP`. One loop's."""

    def __init__(self) -> None:
        self.images: collections.OrderedDict[str, _Image] = collections.OrderedDict()

    def add(self, name: str, image: _Image) -> None:
        self.images[name] = image
        self.images.move_to_end(name)
        while len(self.images) > _KEEP:
            self.images.popitem(last=False)


_GALLERY_KEY: Final = web.AppKey("koala_chat.sandbox.gallery", _Gallery)
_STATE_KEY: Final[web.AppKey[SandboxState]] = web.AppKey(
    "koala_chat.sandbox.images_state"
)


def add_image_routes(app: web.Application, state: SandboxState) -> None:
    """Serve KoalaImages on `app` for `state` (its key, settings and queue)."""
    app[_GALLERY_KEY] = _Gallery()
    app[_STATE_KEY] = state
    app.router.add_post(IMAGE_PATH, _generate)
    app.router.add_get(_IMAGE_ROUTE, _serve_image)


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _generate(request: web.Request) -> web.Response:
    """Answer a generation request with URLs of images on this server."""
    state = request.app[_STATE_KEY]
    try:
        check_key(request.headers.get("Authorization"), state.api_key)
        body = _check_body(await request.read())
        _check_plan(body, state.images)
    except UnauthorizedError as exc:
        return _json({"error": str(exc)}, 401, {"WWW-Authenticate": "Bearer"})
    except _Refusal as exc:
        return _json({"error": str(exc)}, exc.status)
    reply = state.next_reply()
    if reply is not None:
        raw = reply.body
        if raw is None:
            raw = msgspec.json.encode(reply.values or [])
        return web.Response(
            body=raw,
            status=reply.status,
            headers={
                "Content-Type": reply.content_type or "application/json",
                **reply.headers,
            },
        )
    gallery = request.app[_GALLERY_KEY]
    ready_at = asyncio.get_running_loop().time() + state.images.delay
    count = body.get("numImages", 1)
    assert isinstance(count, int)
    answer: list[JSONValue] = []
    for index in range(count):
        name = _name(body, index)
        gallery.add(name, _Image(png(bytes.fromhex(name)[:3]), ready_at))
        image: dict[str, JSONValue] = {
            "url": f"{request.url.origin()}/api/image/{name}.png"
        }
        if body.get("generateAltText") is True:
            image["alt"] = f"Sandbox image {index + 1} of {count}: {body['prompt']}"
        answer.append(image)
    return _json(answer)


async def _serve_image(request: web.Request) -> web.StreamResponse:
    """Send an image once it is ready, as the service blocks until it is."""
    name = request.match_info["name"].removesuffix(".png")
    image = request.app[_GALLERY_KEY].images.get(name)
    if image is None:
        return _json({"error": "no such image"}, 404)
    wait = image.ready_at - asyncio.get_running_loop().time()
    if wait > 0:
        await asyncio.sleep(wait)
    return web.Response(body=image.data, content_type="image/png")


def _check_body(raw: bytes) -> dict[str, JSONValue]:
    """Return the body, checked as docs/images.md says the service takes it."""
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise _Refusal(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _Refusal(400, "the body must be a JSON object")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Refusal(400, "prompt is required")
    count = body.get("numImages", 1)
    most = defaults.IMAGES_MAX_COUNT
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= most:
        raise _Refusal(400, f"numImages must be between 1 and {most}")
    checks: tuple[tuple[str, tuple[object, ...]], ...] = (
        ("style", defaults.IMAGE_STYLES),
        ("model", defaults.IMAGE_MODELS),
        ("quality", defaults.IMAGE_QUALITIES),
        ("enhancePrompt", ("on", "off")),
        ("generateAltText", (True, False)),
    )
    for name, allowed in checks:
        if name in body and body[name] not in allowed:
            raise _Refusal(400, f"invalid {name}")
    size = body.get("size", "1024x1024")
    if not isinstance(size, str) or not _SIZE.fullmatch(size):
        raise _Refusal(400, "invalid size")
    return body


def _check_plan(body: dict[str, JSONValue], settings: ImageSettings) -> None:
    model = body.get("model", defaults.IMAGE_MODELS[0])
    allowed = settings.plan_models
    if allowed is not None and model not in allowed:
        raise _Refusal(
            403, f"Your plan does not include the {model} model. Upgrade to use it."
        )


def _name(body: dict[str, JSONValue], index: int) -> str:
    """Return the image's name: a digest of what it depicts and its number."""
    parts = [body.get(key) for key in ("prompt", "model", "style", "size")]
    seed = msgspec.json.encode([*parts, index])
    return hashlib.sha256(seed).hexdigest()[:24]


def png(colour: bytes, side: int = _SIDE) -> bytes:
    """Return a `side` by `side` PNG of one RGB `colour` (PNG specification)."""
    row = b"\x00" + colour[:3].ljust(3, b"\x00") * side
    pixels = zlib.compress(row * side)
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _json(
    value: JSONValue, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value),
        status=status,
        content_type="application/json",
        headers=headers,
    )
