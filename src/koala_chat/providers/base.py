"""The two base classes of a provider, with the names gpt4free gives them.

A provider subclasses `AsyncGeneratorProvider` and implements the async generator
classmethod `create_async_generator`; the base derives the text and sync APIs
from it. `ProviderModelMixin` resolves model names. Neither mutates the class or
the caller's arguments at run time.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing
from typing import Any, ClassVar

from .._sync import iterate_sync
from ..errors import ModelNotFoundError, UsageError
from ..messages import JSONValue, Messages, text_of

__all__ = ["AsyncGeneratorProvider", "ProviderModelMixin"]


class AsyncGeneratorProvider:
    """A provider whose core is an async generator of streamed JSON values.

    Subclasses implement `create_async_generator`; `create_async` and
    `create_completion` are built on it. Values become text as `text_of` says: a
    JSON string is text, an object's string `"text"` field is text, and anything
    else carries no text and is left out of the text APIs.
    """

    url: ClassVar[str | None] = None
    working: ClassVar[bool] = False
    supports_stream: ClassVar[bool] = True
    supports_message_history: ClassVar[bool] = False
    supports_system_message: ClassVar[bool] = False

    @classmethod
    def create_async_generator(
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncGenerator[JSONValue, None]:
        """Send `messages` and yield each value the server streams back."""
        raise NotImplementedError(f"{cls.__name__} does not implement streaming")

    @classmethod
    async def create_async_text(
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncGenerator[str, None]:
        """Yield the reply's text pieces as they arrive (non-text values skipped)."""
        async with aclosing(
            cls.create_async_generator(model, messages, **kwargs)
        ) as stream:
            async for value in stream:
                if text := text_of(value):
                    yield text

    @classmethod
    async def create_async(cls, model: str, messages: Messages, **kwargs: Any) -> str:
        """Return the whole reply as text.

        Example:
            >>> text = await Koala.create_async("", [{"role": "user", "content": "Hi"}])
        """
        async with aclosing(cls.create_async_text(model, messages, **kwargs)) as pieces:
            return "".join([piece async for piece in pieces])

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = True, **kwargs: Any
    ) -> Iterator[str]:
        """Yield the reply's text from synchronous code.

        With `stream=True` each piece is yielded as it arrives; with `stream=False`
        the whole reply is yielded once. The request runs on a private event loop
        (in a worker thread when this thread already runs one), and stopping early
        closes it at once.

        Example:
            >>> messages = [{"role": "user", "content": "Hi"}]
            >>> for piece in Koala.create_completion("", messages):
            ...     print(piece, end="")
        """
        pieces = iterate_sync(lambda: cls.create_async_text(model, messages, **kwargs))
        if stream:
            yield from pieces
        else:
            yield "".join(pieces)


class ProviderModelMixin:
    """Model names of a provider: a default, a list, aliases.

    `accept_unknown_models` says whether a name missing from `models` is passed
    through to the service (which decides) instead of being refused.
    """

    default_model: ClassVar[str | None] = None
    models: ClassVar[tuple[str, ...]] = ()
    model_aliases: ClassVar[Mapping[str, str]] = {}
    accept_unknown_models: ClassVar[bool] = False

    @classmethod
    def get_models(cls) -> list[str]:
        """Return the known models, or `[default_model]` when none are listed."""
        if cls.models:
            return list(cls.models)
        return [cls.default_model] if cls.default_model else []

    @classmethod
    def get_model(cls, model: str | None) -> str:
        """Return the model to send for the name `model`.

        Empty or None gives `default_model`; an alias gives its target; a known
        model itself. An unknown name passes through when `models` is empty or the
        class accepts unknown models.

        Raises:
            UsageError: `model` is not a string.
            ModelNotFoundError: an unknown name the provider refuses.
        """
        if model is None or model == "":
            if cls.default_model is None:
                raise UsageError(f"{cls.__name__} has no default model: name one")
            return cls.default_model
        if not isinstance(model, str):
            raise UsageError(f"model must be a string, not {type(model).__name__}")
        if model in cls.model_aliases:
            return cls.model_aliases[model]
        if model in cls.models or not cls.models or cls.accept_unknown_models:
            return model
        valid = tuple(cls.get_models())
        raise ModelNotFoundError(
            f"{cls.__name__} has no model {model!r}; choose one of: {', '.join(valid)}",
            provider=cls.__name__,
            model=model,
            models=valid,
        )
