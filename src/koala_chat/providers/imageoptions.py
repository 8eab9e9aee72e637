"""The parameters of a KoalaImages request, checked once, and its endpoint.

docs/images.md, "Request": `ImageOptions` refuses bad parameters before any
request (UsageError) and builds the body in the service's camelCase, the one
place that spells it; `images_endpoint` says where the request goes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from .. import defaults
from .._urls import check_endpoint
from .._values import shown
from ..errors import ModelNotFoundError, UsageError
from ..messages import JSONValue

__all__ = ["GeneratedImage", "ImageOptions", "images_endpoint"]

_SIZE: Final = re.compile(defaults.IMAGE_SIZE_PATTERN, re.ASCII)
_ENHANCE: Final = {True: "on", False: "off"}


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image the service made: its URL and, when asked for, its alt text.

    The URL answers before the image is finished; fetching it waits until it
    is (`KoalaImages.fetch_image`).
    """

    url: str
    alt: str | None = None


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """The checked parameters of one generation request (docs/images.md).

    None leaves a parameter to the service's default (`photo`, `1024x1024`,
    `gpt-image-2`). `quality` is gpt-image-2's only; `enhance_prompt` lets the
    service rewrite the prompt; `alt_text` asks for an alt text per image.

    Raises:
        UsageError: an empty prompt, `n` outside 1 to 4, a size not `WxH`, an
            unknown style or quality, or a quality for another model.
        ModelNotFoundError: an unknown model.
    """

    prompt: str
    n: int = 1
    size: str | None = None
    style: str | None = None
    model: str | None = None
    quality: str | None = None
    enhance_prompt: bool | None = None
    alt_text: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise UsageError("the prompt of an image must be a non-empty string")
        top = defaults.IMAGES_MAX_COUNT
        if (
            not isinstance(self.n, int)
            or isinstance(self.n, bool)
            or not 1 <= self.n <= top
        ):
            raise UsageError(
                f"n must be a whole number from 1 to {top}, not {shown(self.n)}"
            )
        if self.size is not None and (
            not isinstance(self.size, str) or not _SIZE.fullmatch(self.size)
        ):
            raise UsageError(
                f"size must be WIDTHxHEIGHT, e.g. 1024x1024, not {shown(self.size)}"
            )
        _one_of("style", self.style, defaults.IMAGE_STYLES)
        if self.model is not None and self.model not in defaults.IMAGE_MODELS:
            raise ModelNotFoundError(
                f"{shown(self.model)} is not a KoalaImages model: use "
                f"{', '.join(defaults.IMAGE_MODELS)}",
                provider="KoalaImages",
                model=str(self.model),
                models=defaults.IMAGE_MODELS,
            )
        _one_of("quality", self.quality, defaults.IMAGE_QUALITIES)
        model = self.model or defaults.IMAGE_MODELS[0]
        if self.quality is not None and model != defaults.IMAGE_QUALITY_MODEL:
            raise UsageError(
                f"only {defaults.IMAGE_QUALITY_MODEL} takes a quality, not {model}"
            )
        for name in ("enhance_prompt", "alt_text"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (
                name == "enhance_prompt" and value is None
            ):
                raise UsageError(f"{name} must be True or False, not {shown(value)}")

    def body(self) -> dict[str, JSONValue]:
        """Return the JSON body, in the service's camelCase; unset ones left out."""
        body: dict[str, JSONValue] = {"prompt": self.prompt, "numImages": self.n}
        for name, value in (
            ("style", self.style),
            ("size", self.size),
            ("model", self.model),
            ("quality", self.quality),
        ):
            if value is not None:
                body[name] = value
        if self.enhance_prompt is not None:
            body["enhancePrompt"] = _ENHANCE[self.enhance_prompt]
        body["generateAltText"] = self.alt_text
        return body


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise UsageError(
            f"{name} must be one of {', '.join(allowed)}, not {shown(value)}"
        )


def images_endpoint(
    api_endpoint: str | None = None, chat_endpoint: str | None = None
) -> str:
    """Return where to send images: the one given, else the environment's.

    `api_endpoint`, else `KOALA_IMAGES_ENDPOINT`, else the origin of the chat
    endpoint (`chat_endpoint`, else `KOALA_API_ENDPOINT`, else koala.sh's) with
    `/api/image-generation/`: a sandbox or a recorded endpoint serves both.

    Raises:
        UsageError: the endpoint found is not an http(s) URL.
    """
    if api_endpoint:
        return check_endpoint(api_endpoint)
    if configured := os.environ.get(defaults.IMAGES_ENDPOINT_VARIABLE, "").strip():
        return check_endpoint(configured)
    chat = (
        chat_endpoint
        or os.environ.get(defaults.ENDPOINT_VARIABLE, "").strip()
        or defaults.API_ENDPOINT
    )
    parts = urlsplit(check_endpoint(chat))
    return f"{parts.scheme}://{parts.netloc}{defaults.IMAGES_PATH}"
