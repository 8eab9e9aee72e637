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

__all__ = [
    "Provider",
    "default_provider",
    "endpoint_of",
    "model_for",
    "models_of",
    "name_of",
    "speaks_dialects",
]


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


def speaks_dialects(provider: Provider) -> bool:
    """Tell whether `provider` takes a `protocol` (Koala and its subclasses do)."""
    import inspect

    get_models = getattr(provider, "get_models", None)
    if get_models is None:
        return False
    return "protocol" in inspect.signature(get_models).parameters


def models_of(provider: Provider, protocol: str) -> tuple[list[str], str | None]:
    """Return the models `provider` knows in `protocol`, and the default of them.

    A provider without dialects has one list, whatever the protocol; `auto`
    starts with the history dialect, so its default is the provider's own.
    """
    if not speaks_dialects(provider):
        return list(provider.get_models()), provider.default_model
    from ..providers.dialects import DIALECTS

    models = list(provider.get_models(protocol=protocol))  # type: ignore[call-arg]
    info = DIALECTS.get(protocol)  # type: ignore[call-overload]
    default = info.default_model if info is not None else provider.default_model
    return models, default


def model_for(provider: Provider, model: str, protocol: str | None) -> str:
    """Return the model `provider` sends for `model` (empty: the default) in
    `protocol`'s dialect; a provider without dialects ignores `protocol`.

    Raises:
        UsageError: an unknown model (`ModelNotFoundError`) or protocol.
    """
    if protocol is not None and speaks_dialects(provider):
        return provider.get_model(model, protocol=protocol)  # type: ignore[call-arg]
    return provider.get_model(model)
