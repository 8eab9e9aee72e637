"""The two base classes of a provider, with the names gpt4free gives them.

A provider subclasses `AsyncGeneratorProvider` and implements the async generator
classmethod `create_async_generator`; the base derives the text and sync APIs
from it. `ProviderModelMixin` resolves model names. Neither mutates the class or
the caller's arguments at run time.

A provider is also a provider of the gpt4free package: its client reads the
attributes and classmethods marked below, and calls `create_async_generator`
itself, with its `stream` keyword, where it expects text; a provider gives it
the `text_pieces` of its values there. gpt4free's helpers (and other tools)
recognise a streaming provider by its shape: `create_async_generator` is an
async generator function, a classmethod, on the base as on every subclass.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from contextlib import aclosing
from typing import Any, ClassVar

from .._contract.capabilities import NO_PROTOCOL, Capabilities, ModelSet
from .._sync import iterate_sync
from ..errors import ModelNotFoundError, UsageError
from ..messages import JSONValue, Messages, text_of

__all__ = ["AsyncGeneratorProvider", "ProviderModelMixin", "text_pieces"]


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

    # Read by gpt4free's client and retry providers; we never read them.
    #: No API key: gpt4free looks none up for this provider.
    needs_auth: ClassVar[bool] = False
    #: gpt4free limits the gap between pieces with its own `stream_timeout`
    #: keyword, and passes `timeout` on to the provider (our total limit).
    use_stream_timeout: ClassVar[bool] = True
    #: gpt4free's score of the provider: it adds one for each reply that gave
    #: text and takes one off for each failure.
    live: ClassVar[int] = 0

    @classmethod
    def get_dict(cls) -> dict[str, str | None]:
        """Return the provider's name and URL, as gpt4free describes a provider."""
        return {"name": cls.__name__, "url": cls.url, "label": None}

    @classmethod
    def get_parent(cls) -> str:
        """Return the name gpt4free files API keys and statistics under."""
        return cls.__name__

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncGenerator[JSONValue, None]:
        """Send `messages` and yield each value the server streams back.

        Raises:
            NotImplementedError: on the first value; subclasses implement this.
        """
        raise NotImplementedError(f"{cls.__name__} does not implement streaming")
        # The yield makes this an async generator function, the shape the
        # subclasses' have and gpt4free inspects.
        yield

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
    def capabilities(cls, **options: Any) -> Capabilities:
        """Return what the provider offers: one set of models, no dialects.

        Options change nothing here; a provider with dialects overrides this.
        """
        return Capabilities(
            name=cls.__name__,
            model_sets={
                NO_PROTOCOL: ModelSet(cls.default_model, tuple(cls.get_models()))
            },
            accept_unknown_models=cls.accept_unknown_models,
        )

    @classmethod
    def get_models(cls, **kwargs: Any) -> list[str]:
        """Return the known models, or `[default_model]` when none are listed.

        Keywords (gpt4free passes `api_key`) change nothing: the list is fixed.
        """
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


def text_pieces(values: Iterable[JSONValue]) -> list[str]:
    """Return the text of `values` that carry some, as gpt4free's client needs it.

    gpt4free calls a provider's `create_async_generator` with its `stream`
    keyword and joins whatever it yields with `str()`, so an object value would
    reach its text as a Python repr and stop its retry provider, which counts
    only strings as a reply. A provider called with `stream` yields these
    pieces instead of its values. A list, not a generator: the provider's own
    generator stays the only one between gpt4free and the stream, since
    gpt4free leaves a stream it stops early to the event loop's shutdown, which
    closes every open async generator at once, and a wrapper would close the
    stream a second time, concurrently.

    Example:
        >>> text_pieces(["Hel", {"text": "lo"}, {"status": "thinking"}])
        ['Hel', 'lo']
    """
    return [text for value in values if (text := text_of(value))]
