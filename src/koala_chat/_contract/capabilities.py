"""What a provider offers, declared as data: its models, dialects and switches.

Every layer (the client, `koala serve`, the command line, the `llm` plugin)
asks a provider's `capabilities(**options)` what it can do, instead of naming
the provider's class or inspecting its signatures. A provider without dialects
has one set of models; one with dialects (Koala) has a set per value of its
`protocol` option, and says which one its options configure.

Standard library only: the command line reads capabilities before it imports
the HTTP stack.

Example:
    >>> caps = Capabilities("Echo", {"": ModelSet("echo-1", ("echo-1",))})
    >>> caps.default_model, caps.protocols
    ('echo-1', ())
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

__all__ = ["NO_PROTOCOL", "Capabilities", "ModelSet", "capabilities_of"]

#: The key of the one model set of a provider without dialects.
NO_PROTOCOL = ""


@dataclass(frozen=True, slots=True)
class ModelSet:
    """The models one protocol offers, and the one an empty name stands for."""

    default: str | None
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider offers under one configuration of its options.

    Attributes:
        name: The provider's name, as shown to users.
        model_sets: The models of each value of the provider's `protocol`
            option, in the order to show them; a provider without dialects has
            one set, under `NO_PROTOCOL`.
        protocol: The value its options configure (`NO_PROTOCOL` without
            dialects).
        accept_unknown_models: Names outside the set are passed through to the
            service, which decides.
        web_search: The provider can switch live web data on and off
            (`web_search`).
        options: The names of the keyword options it takes beyond the model
            and the messages.
    """

    name: str
    model_sets: Mapping[str, ModelSet]
    protocol: str = NO_PROTOCOL
    accept_unknown_models: bool = False
    web_search: bool = False
    options: tuple[str, ...] = field(default=())

    @property
    def protocols(self) -> tuple[str, ...]:
        """The values its `protocol` option takes; empty without dialects."""
        return tuple(name for name in self.model_sets if name != NO_PROTOCOL)

    @property
    def models(self) -> tuple[str, ...]:
        """The models of the configured protocol."""
        return self.models_of().models

    @property
    def default_model(self) -> str | None:
        """The model an empty name stands for, in the configured protocol."""
        return self.models_of().default

    def models_of(self, protocol: str | None = None) -> ModelSet:
        """Return the models of `protocol` (None or empty: the configured one).

        A provider without dialects has one set, whatever `protocol` says.

        Raises:
            UsageError: a protocol the provider does not take.
        """
        if not self.protocols:
            return self.model_sets[NO_PROTOCOL]
        chosen = protocol or self.protocol
        found = self.model_sets.get(chosen)
        if found is None:
            raise UsageError(
                f"unknown protocol {chosen!r}: use {', '.join(self.protocols)}"
            )
        return found


def capabilities_of(provider: Any, **options: Any) -> Capabilities:
    """Return what `provider` offers under `options`.

    A provider that declares them (`capabilities(**options)`, as every subclass
    of `ProviderModelMixin` does) is asked; any other class of the gpt4free
    shape is described by its `default_model` and `get_models()`.

    Raises:
        UsageError: options the provider refuses (an unknown protocol).
    """
    declared = getattr(provider, "capabilities", None)
    if callable(declared):
        found = declared(**options)
        if isinstance(found, Capabilities):
            return found
    default = getattr(provider, "default_model", None)
    get_models = getattr(provider, "get_models", None)
    models = tuple(get_models()) if callable(get_models) else ()
    return Capabilities(
        name=str(getattr(provider, "__name__", type(provider).__name__)),
        model_sets={NO_PROTOCOL: ModelSet(default, models)},
        accept_unknown_models=bool(getattr(provider, "accept_unknown_models", False)),
    )
