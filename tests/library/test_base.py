"""The base classes: model resolution, the text and sync APIs derived from a stream."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import pytest

from koala_chat import (
    AsyncGeneratorProvider,
    Messages,
    ModelNotFoundError,
    ProviderModelMixin,
    UsageError,
)
from koala_chat.providers.base import text_pieces

HELLO: Messages = [{"role": "user", "content": "hi"}]


class Scripted(AsyncGeneratorProvider):
    """Yields `values`, recording in `log` how the stream ended."""

    values: ClassVar[list[Any]] = ["Hel", {"text": "lo"}, 7, None, {"n": 1}, "!"]
    log: ClassVar[list[str]] = []

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: Messages, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        cls.log.append(f"start on {threading.current_thread().name}")
        try:
            for value in cls.values:
                await asyncio.sleep(0)
                yield value
            cls.log.append("finished")
        finally:
            cls.log.append("closed")


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    Scripted.log.clear()


async def test_create_async_keeps_text_of_strings_and_text_fields() -> None:
    assert await Scripted.create_async("", HELLO) == "Hello!"


def test_create_completion_streams_text_pieces() -> None:
    assert list(Scripted.create_completion("", HELLO)) == ["Hel", "lo", "!"]
    assert Scripted.log[-2:] == ["finished", "closed"]


def test_create_completion_without_stream_yields_once() -> None:
    assert list(Scripted.create_completion("", HELLO, stream=False)) == ["Hello!"]


def test_stopping_the_sync_stream_early_closes_the_async_one() -> None:
    pieces = Scripted.create_completion("", HELLO)
    assert next(pieces) == "Hel"
    pieces.close()
    assert Scripted.log[-1] == "closed"
    assert "finished" not in Scripted.log


async def test_sync_api_works_inside_a_running_loop() -> None:
    # As in a notebook: this thread runs a loop, so the private one needs a thread.
    assert list(Scripted.create_completion("", HELLO)) == ["Hel", "lo", "!"]
    assert Scripted.log[0] == "start on koala-chat-loop"


async def test_a_provider_without_a_stream_says_so() -> None:
    stream = AsyncGeneratorProvider.create_async_generator("", HELLO)
    with pytest.raises(NotImplementedError, match="AsyncGeneratorProvider"):
        await stream.__anext__()


@pytest.mark.parametrize("provider", [AsyncGeneratorProvider, Scripted])
def test_create_async_generator_has_the_shape_of_gpt4free(
    provider: type[AsyncGeneratorProvider],
) -> None:
    # The base has the shape its subclasses have: a classmethod that is an
    # async generator function, taking the model, the messages and keywords.
    method = provider.create_async_generator
    assert inspect.isasyncgenfunction(method)
    assert method.__self__ is provider
    assert list(inspect.signature(method).parameters) == [
        "model",
        "messages",
        "kwargs",
    ]


async def test_calling_create_async_generator_gives_an_async_generator() -> None:
    stream = AsyncGeneratorProvider.create_async_generator("", HELLO)
    assert inspect.isasyncgen(stream)
    await stream.aclose()
    # Closed before it started: it never ran, so it cannot fail any more.
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


def test_text_pieces_keeps_the_text_of_each_value() -> None:
    values = ["Hel", {"text": "lo"}, 7, None, {"n": 1}, {"text": ""}, "", "!"]
    assert text_pieces(values) == ["Hel", "lo", "!"]


class Models(ProviderModelMixin):
    default_model = "small"
    models = ("small", "large")
    model_aliases: ClassVar[dict[str, str]] = {"big": "large"}


class Open(ProviderModelMixin):
    default_model = "any"


@pytest.mark.parametrize(
    ("name", "model"),
    [(None, "small"), ("", "small"), ("big", "large"), ("large", "large")],
)
def test_get_model(name: str | None, model: str) -> None:
    assert Models.get_model(name) == model


def test_unknown_model_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        Models.get_model("huge")
    error = caught.value
    assert (error.provider, error.model, error.models) == (
        "Models",
        "huge",
        ("small", "large"),
    )
    assert "Models" in str(error)
    assert "small, large" in str(error)


def test_unknown_model_passes_when_no_models_are_listed() -> None:
    assert Open.get_model("whatever") == "whatever"
    assert Open.get_models() == ["any"]
    assert Models.get_models() == ["small", "large"]


def test_non_string_model_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="model must be a string"):
        Models.get_model(42)  # type: ignore[arg-type]
