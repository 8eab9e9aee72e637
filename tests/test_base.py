"""The base classes: model resolution, the text and sync APIs derived from a stream."""

from __future__ import annotations

import asyncio
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


def test_a_provider_without_a_stream_says_so() -> None:
    with pytest.raises(NotImplementedError):
        AsyncGeneratorProvider.create_async_generator("", HELLO)


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
