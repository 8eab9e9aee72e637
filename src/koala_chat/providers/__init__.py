"""Providers: the gpt4free-style base classes, the HTTP base and `Koala`.

`HTTPProvider` owns the attempt loop; a provider over HTTP subclasses it and
says only what it sends (`build_request`) and how its reply reads
(`read_reply`). `Koala.open_attempt(...)` shows one attempt's raw response
beside its values (and `attempt.dialect`, the dialect it spoke).
`KoalaImages` asks the image API of the same account for images.

For a provider of one's own: `ChatProvider`, the one provider Protocol every
layer uses; `Capabilities`, what a provider declares it offers; and
`ProviderOptions`, the options of a call parsed once.
"""

from .._contract.capabilities import Capabilities
from .._contract.options import ProviderOptions
from .._contract.provider import ChatProvider
from .attempts import Attempt, HTTPRequest
from .base import AsyncGeneratorProvider, ProviderModelMixin
from .http import HTTPProvider
from .images import GeneratedImage, ImageOptions, KoalaImages
from .koala import Koala
from .options import RequestOptions
from .settings import API_KEY_VARIABLE, PROTOCOL_VARIABLE, DialectSettings

#: The provider the client, `koala serve` and the command line use unless told
#: otherwise: they name it through this, never `Koala` itself.
DEFAULT_PROVIDER: type[Koala] = Koala

__all__ = [
    "API_KEY_VARIABLE",
    "DEFAULT_PROVIDER",
    "PROTOCOL_VARIABLE",
    "AsyncGeneratorProvider",
    "Attempt",
    "Capabilities",
    "ChatProvider",
    "DialectSettings",
    "GeneratedImage",
    "HTTPProvider",
    "HTTPRequest",
    "ImageOptions",
    "Koala",
    "KoalaImages",
    "ProviderModelMixin",
    "ProviderOptions",
    "RequestOptions",
]
