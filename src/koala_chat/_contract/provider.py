"""What the OpenAI-shaped client and server need of a provider.

Any provider class with the gpt4free shape fits (`AsyncGeneratorProvider` plus
`ProviderModelMixin`): `Koala` by default, a subclass in tests. It is the one
provider Protocol of the package.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from ..messages import JSONValue

__all__ = ["ChatProvider"]


class ChatProvider(Protocol):
    """A provider class: what the client, the server and the commands use.

    What it offers beyond these (models by dialect, switches, options) it
    declares in `capabilities(**options)`, read through `capabilities_of`.
    """

    @property
    def default_model(self) -> str | None:
        """The model asked when none is named."""
        ...

    def create_async_generator(
        self, model: str, messages: Any, **kwargs: Any
    ) -> AsyncGenerator[JSONValue, None]:
        """Send the conversation and yield each value the server streams back."""
        ...

    def get_model(self, model: str | None, **kwargs: Any) -> str:
        """Return the model name to send for `model` (raises ModelNotFoundError).

        Koala takes `protocol`: an empty name is that dialect's default.
        """
        ...

    def get_models(self, **kwargs: Any) -> list[str]:
        """Return the provider's known models (Koala: of `protocol`'s dialect)."""
        ...
