"""What the command line needs of a provider, and the one it uses by default.

`koala_chat._cli.main` takes the provider as one value and hands it to every
command on `args.provider`; no command names a provider class itself. Any class
with the gpt4free shape fits (`AsyncGeneratorProvider` plus
`ProviderModelMixin`): `Koala` by default, a subclass in tests. What a provider
offers is read from its declared capabilities (`_contract.capabilities`), never
from its class or its signatures.
"""

from __future__ import annotations

from typing import Any

from .._contract.capabilities import capabilities_of
from .._contract.provider import ChatProvider

__all__ = [
    "Provider",
    "default_provider",
    "endpoint_of",
    "model_for",
    "models_of",
    "name_of",
    "speaks_dialects",
]

#: What the commands need of a provider: the one Protocol every layer uses.
Provider = ChatProvider


def default_provider() -> Provider:
    """Return the package's default provider, imported now (with aiohttp)."""
    from ..providers import DEFAULT_PROVIDER

    return DEFAULT_PROVIDER


def endpoint_of(provider: Provider, endpoint: str | None) -> str | None:
    """Return where `provider` sends requests: `endpoint`, else its own, if known."""
    own = getattr(provider, "api_endpoint", None)
    return endpoint or (own if isinstance(own, str) else None)


def name_of(provider: Provider) -> str:
    """Return the name to show for `provider`, as its capabilities give it."""
    return capabilities_of(provider).name


def speaks_dialects(provider: Provider) -> bool:
    """Tell whether `provider` declares protocols to choose from (Koala does)."""
    return bool(capabilities_of(provider).protocols)


def models_of(provider: Provider, protocol: str) -> tuple[list[str], str | None]:
    """Return the models `provider` declares for `protocol`, and their default.

    A provider without dialects has one list, whatever the protocol.

    Raises:
        UsageError: a protocol the provider does not take.
    """
    found = capabilities_of(provider).models_of(protocol)
    return list(found.models), found.default


def model_for(provider: Provider, model: str, protocol: str | None) -> str:
    """Return the model `provider` sends for `model` in `protocol`.

    An empty name is the declared default of `protocol` (None: the configured
    one); any other name is the provider's to resolve.

    Raises:
        UsageError: an unknown model (`ModelNotFoundError`) or protocol.
    """
    if model:
        return provider.get_model(model)
    options: dict[str, Any] = {"protocol": protocol} if protocol else {}
    default = capabilities_of(provider, **options).models_of(protocol).default
    return provider.get_model(default or model)
