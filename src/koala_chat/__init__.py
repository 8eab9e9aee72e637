"""koala_chat: streaming chat completions from the Koala chat API (koala.sh).

Example:
    >>> import asyncio
    >>> from koala_chat import Koala
    >>> async def main() -> None:
    ...     messages = [{"role": "user", "content": "Tell me something."}]
    ...     async for piece in Koala.create_async_generator("", messages):
    ...         print(piece, end="")
    >>> asyncio.run(main())
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes
from .errors import (
    AuthenticationError,
    CloudflareChallengeError,
    ConnectError,
    CreditsExhaustedError,
    EmulationError,
    EventTooLargeError,
    IncompleteEventError,
    InvalidJSONError,
    KoalaError,
    KoalaTimeoutError,
    ModelNotFoundError,
    NotEventStreamError,
    PlanError,
    ProtocolError,
    ProxyError,
    RateLimitError,
    ServerError,
    StatusError,
    TransportError,
    UnexpectedReplyError,
    UsageError,
)
from .messages import JSONValue, Message, Messages, text_of

if TYPE_CHECKING:
    from ._http import get_connector, raise_for_status
    from .client import AsyncClient, Client
    from .helper import get_random_string
    from .providers import (
        AsyncGeneratorProvider,
        GeneratedImage,
        Koala,
        KoalaImages,
        ProviderModelMixin,
    )

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncGeneratorProvider",
    "AuthenticationError",
    "Client",
    "CloudflareChallengeError",
    "ConnectError",
    "CreditsExhaustedError",
    "EmulationError",
    "EventTooLargeError",
    "GeneratedImage",
    "IncompleteEventError",
    "InvalidJSONError",
    "JSONValue",
    "Koala",
    "KoalaError",
    "KoalaImages",
    "KoalaTimeoutError",
    "Message",
    "Messages",
    "ModelNotFoundError",
    "NotEventStreamError",
    "PlanError",
    "ProtocolError",
    "ProviderModelMixin",
    "ProxyError",
    "RateLimitError",
    "ServerError",
    "StatusError",
    "TransportError",
    "UnexpectedReplyError",
    "UsageError",
    "__version__",
    "get_connector",
    "get_random_string",
    "raise_for_status",
    "text_of",
]

# The names that need aiohttp are imported on first use, so that `koala --help`
# and other light entry points start fast (`koala --help` under 0.1 s).
_LAZY = {
    "AsyncClient": ".client",
    "Client": ".client",
    "AsyncGeneratorProvider": ".providers",
    "Koala": ".providers",
    "KoalaImages": ".providers",
    "GeneratedImage": ".providers",
    "ProviderModelMixin": ".providers",
    "get_connector": "._http.proxies",
    "get_random_string": ".helper",
    "raise_for_status": "._http.status",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
