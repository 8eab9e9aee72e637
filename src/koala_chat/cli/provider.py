"""What the command line needs of a provider, and the one it uses by default.

`koala_chat.cli.main` takes the provider as one value and hands it to every
command on `args.provider`; no command names a provider class itself. Any class
with the gpt4free shape fits (`AsyncGeneratorProvider` plus
`ProviderModelMixin`): `Koala` by default, a subclass in tests.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from ..messages import JSONValue

__all__ = ["Provider", "default_provider", "endpoint_of", "name_of"]


class Provider(Protocol):
    """A provider class: the classmethods and attributes the commands use."""

    @property
    def default_model(self) -> str | None:
        """The model asked when none is named."""
        ...

    @property
    def accept_unknown_models(self) -> bool:
        """Whether names missing from `get_models()` pass through to the service."""
        ...

    def create_async_generator(
        self, model: str, messages: Any, **kwargs: Any
    ) -> AsyncGenerator[JSONValue, None]:
        """Send the conversation and yield each value the server streams back."""
        ...

    def get_model(self, model: str | None) -> str:
        """Return the model name to send for `model` (raises ModelNotFoundError)."""
        ...

    def get_models(self) -> list[str]:
        """Return the provider's known models."""
        ...


def default_provider() -> Provider:
    """Return `koala_chat.Koala`, imported now (with aiohttp), not at startup."""
    from ..providers import Koala

    return Koala


def endpoint_of(provider: Provider, endpoint: str | None) -> str | None:
    """Return where `provider` sends requests: `endpoint`, else its own, if known."""
    own = getattr(provider, "api_endpoint", None)
    return endpoint or (own if isinstance(own, str) else None)


def name_of(provider: Provider) -> str:
    """Return the name to show for `provider`: its class name."""
    return str(getattr(provider, "__name__", type(provider).__name__))
