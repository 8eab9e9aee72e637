"""The streams a streaming `create` returns: `Stream` and `AsyncStream`.

Like the openai SDK's, they are iterables that can also be closed, directly or
by leaving a `with` block, which ends the request at once. The first chunk was
already received when the stream is handed over (see `stream_chunks` in
`koala_chat._contract.replies`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator

from .._contract.types import ChatCompletionChunk

__all__ = ["AsyncStream", "Stream"]


class Stream:
    """The chunks of a streamed completion, for synchronous code.

    Iterate over it; `close()` (or leaving a `with` block) ends the request at
    once, and so does stopping early once the stream is garbage.
    """

    def __init__(
        self, chunks: Iterator[ChatCompletionChunk], first: ChatCompletionChunk
    ) -> None:
        self._chunks = chunks
        self._first: ChatCompletionChunk | None = first

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self

    def __next__(self) -> ChatCompletionChunk:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return next(self._chunks)

    def close(self) -> None:
        """Stop the request and release its connection; harmless when done."""
        self._first = None
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncStream:
    """The chunks of a streamed completion, for async code.

    Iterate with `async for`; `await stream.close()` (or leaving an `async with`
    block) ends the request at once.
    """

    def __init__(
        self,
        chunks: AsyncGenerator[ChatCompletionChunk, None],
        first: ChatCompletionChunk,
    ) -> None:
        self._chunks = chunks
        self._first: ChatCompletionChunk | None = first

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._chunks)

    async def close(self) -> None:
        """Stop the request and release its connection; harmless when done."""
        self._first = None
        await self._chunks.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
