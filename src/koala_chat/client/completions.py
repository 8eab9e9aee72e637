"""`Client` and `AsyncClient`: the OpenAI SDK's chat-completions API over Koala.

    client = Client()
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=...)
    for chunk in client.chat.completions.create(model="", messages=..., stream=True):
        print(chunk.choices[0].delta.content or "", end="")

`AsyncClient` is the same with `await` (a streaming call is awaited too and gives
an async iterator, as in the openai SDK). Which OpenAI parameters are honoured,
emulated (JSON mode, tool calls), ignored or refused is listed in
`koala_chat._contract.params`; unlike `koala serve`, the client refuses unknown
names, so that a typo in a keyword fails at once.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, Generic, Literal, TypeVar, overload

from .._contract.capabilities import capabilities_of
from .._contract.emulation import complete_emulated, emulated_chunks
from .._contract.options import ProviderOptions
from .._contract.params import CompletionRequest, parse_request
from .._contract.provider import ChatProvider
from .._contract.replies import complete, stream_chunks
from .._contract.types import ChatCompletion, ChatCompletionChunk, Model, ModelList
from .._contract.worker import off_loop
from .._sync import iterate_sync, run_sync
from ..errors import ModelNotFoundError, UsageError
from ..messages import JSONValue
from ..providers import DEFAULT_PROVIDER
from .streams import AsyncStream, Stream

__all__ = [
    "AsyncClient",
    "AsyncCompletions",
    "AsyncStream",
    "Client",
    "Completions",
    "Models",
    "Stream",
]

InputMessages = Sequence[Mapping[str, JSONValue]]
ChatT = TypeVar("ChatT")


class _Config:
    """What a client was made with: the provider and its options."""

    def __init__(self, provider: ChatProvider, options: ProviderOptions) -> None:
        self.provider = provider
        self.options = options
        self.closed = False

    def prepare(
        self,
        model: str,
        messages: InputMessages,
        stream: bool,
        timeout: float | None,
        params: dict[str, JSONValue],
    ) -> tuple[CompletionRequest, ProviderOptions]:
        """Check a call; return the request and the provider options for it."""
        if self.closed:
            raise UsageError("this client is closed; make a new one")
        extra_body = params.pop("extra_body", None) or {}
        for name in ("extra_headers", "extra_query"):
            if params.pop(name, None):
                raise UsageError(
                    f"{name}: not supported, Koala's request is fixed by its protocol"
                )
        if not isinstance(extra_body, Mapping):
            raise UsageError("extra_body: must be a mapping of request parameters")
        request = parse_request(
            {
                **extra_body,
                **params,
                "model": model,
                # A tuple or a generator is a list to JSON; anything else is
                # passed on for parse_request to name.
                "messages": (
                    list(messages)
                    if isinstance(messages, Iterable)
                    and not isinstance(messages, str | bytes | Mapping)
                    else messages
                ),
                "stream": stream,
            }
        )
        # Koala's own extensions choose the dialect of this call only.
        options = self.options.merged(
            timeout=timeout, protocol=request.protocol, web_search=request.web_search
        )
        return request, options


class Models:
    """`client.models`: the provider's models, with no network traffic."""

    def __init__(self, config: _Config) -> None:
        self._config = config

    def list(self) -> ModelList:
        """Return the models the provider declares for the client's options."""
        return ModelList([Model(name) for name in self._models()])

    def _models(self) -> tuple[str, ...]:
        config = self._config
        return capabilities_of(config.provider, **config.options).models

    def retrieve(self, model: str) -> Model:
        """Return the known model `model`.

        Raises:
            ModelNotFoundError: the provider does not list it.
        """
        models = self._models()
        if model not in models:
            provider = getattr(self._config.provider, "__name__", "the provider")
            raise ModelNotFoundError(
                f"{provider} has no model {model!r}; choose one of: "
                + ", ".join(models),
                provider=provider,
                model=model,
                models=tuple(models),
            )
        return Model(model)


class Completions:
    """`client.chat.completions` of the synchronous `Client`."""

    def __init__(self, config: _Config) -> None:
        self._config = config

    @overload
    def create(
        self,
        *,
        model: str,
        messages: InputMessages,
        stream: Literal[False] = False,
        timeout: float | None = None,
        **params: JSONValue,
    ) -> ChatCompletion: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: InputMessages,
        stream: Literal[True],
        timeout: float | None = None,
        **params: JSONValue,
    ) -> Stream: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: InputMessages,
        stream: bool,
        timeout: float | None = None,
        **params: JSONValue,
    ) -> ChatCompletion | Stream: ...

    def create(
        self,
        *,
        model: str,
        messages: InputMessages,
        stream: bool = False,
        timeout: float | None = None,
        **params: JSONValue,
    ) -> ChatCompletion | Stream:
        """Send a conversation; return the completion, or a `Stream` of chunks.

        `params` are further OpenAI parameters (`stop`, `max_tokens`,
        `temperature`, ...; see `koala_chat._contract.params`). `timeout` is the
        total seconds for this request. The request runs on a private event loop
        (in a worker thread where this thread already runs one). A streaming
        call returns once the first piece of the reply has arrived.

        Raises:
            UsageError: a parameter Koala cannot honour, bad messages or model.
            TransportError, StatusError, ProtocolError: see `koala_chat.errors`.
        """
        request, options = self._config.prepare(
            model, messages, stream, timeout, params
        )
        provider = self._config.provider
        whole, chunked = _answerers(request)
        if not request.stream:
            return run_sync(lambda: whole(provider, request, options))
        chunks = iterate_sync(lambda: chunked(provider, request, options))
        return Stream(chunks, next(chunks))


class AsyncCompletions:
    """`client.chat.completions` of `AsyncClient`."""

    def __init__(self, config: _Config) -> None:
        self._config = config

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: InputMessages,
        stream: Literal[False] = False,
        timeout: float | None = None,  # noqa: ASYNC109 (the openai SDK's name)
        **params: JSONValue,
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: InputMessages,
        stream: Literal[True],
        timeout: float | None = None,  # noqa: ASYNC109 (the openai SDK's name)
        **params: JSONValue,
    ) -> AsyncStream: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: InputMessages,
        stream: bool,
        timeout: float | None = None,  # noqa: ASYNC109 (the openai SDK's name)
        **params: JSONValue,
    ) -> ChatCompletion | AsyncStream: ...

    async def create(
        self,
        *,
        model: str,
        messages: InputMessages,
        stream: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (the openai SDK's name)
        **params: JSONValue,
    ) -> ChatCompletion | AsyncStream:
        """Send a conversation; return the completion, or an `AsyncStream`.

        As `Client.chat.completions.create`; a streaming call is awaited too and
        returns once the first piece of the reply has arrived.

        Example:
            >>> stream = await client.chat.completions.create(
            ...     model="gpt-4o-mini", messages=messages, stream=True
            ... )
            >>> async for chunk in stream:
            ...     print(chunk.choices[0].delta.content or "", end="")

        Raises:
            UsageError: a parameter Koala cannot honour, bad messages or model.
            TransportError, StatusError, ProtocolError: see `koala_chat.errors`.
        """
        prepare = self._config.prepare
        if "response_format" in params or "tools" in params:
            # Checking a client's schemas takes time: not on the caller's loop.
            request, options = await off_loop(
                prepare, model, messages, stream, timeout, params
            )
        else:
            request, options = prepare(model, messages, stream, timeout, params)
        provider = self._config.provider
        whole, chunked = _answerers(request)
        if not request.stream:
            return await whole(provider, request, options)
        chunks = chunked(provider, request, options)
        try:
            first = await anext(chunks)
        except BaseException:
            await chunks.aclose()
            raise
        return AsyncStream(chunks, first)


def _answerers(
    request: CompletionRequest,
) -> tuple[
    Callable[..., Coroutine[Any, Any, ChatCompletion]],
    Callable[..., AsyncGenerator[ChatCompletionChunk, None]],
]:
    """Return how to answer `request` whole and in chunks: emulated or not."""
    if request.emulated:
        return complete_emulated, emulated_chunks
    return complete, stream_chunks


class _Chat:
    def __init__(self, completions: Completions) -> None:
        self.completions = completions


class _AsyncChat:
    def __init__(self, completions: AsyncCompletions) -> None:
        self.completions = completions


class _ClientBase(Generic[ChatT]):
    """What both clients are made of: a provider, its options, chat and models."""

    def __init__(
        self,
        provider: ChatProvider = DEFAULT_PROVIDER,
        *,
        api_endpoint: str | None = None,
        proxy: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **provider_options_: Any,
    ) -> None:
        self._config = _Config(
            provider,
            ProviderOptions.parse(
                {
                    "api_endpoint": api_endpoint,
                    "proxy": proxy,
                    "timeout": timeout,
                    "max_retries": max_retries,
                    **provider_options_,
                }
            ),
        )
        self.chat: ChatT = self._make_chat(self._config)
        self.models = Models(self._config)

    def _make_chat(self, config: _Config) -> ChatT:
        raise NotImplementedError


class Client(_ClientBase[_Chat]):
    """An OpenAI-shaped client for Koala, for synchronous code.

    `provider` is the provider class (`Koala`); `api_endpoint`, `proxy`,
    `timeout` (total seconds per request) and `max_retries` pass through to it,
    as do other keyword `provider_options` (`connect_timeout`, ...). The client
    holds no connection between calls; `close()` only marks it closed.

    Example:
        >>> client = Client(api_endpoint="http://127.0.0.1:8080/api/gpt/")
        >>> completion = client.chat.completions.create(
        ...     model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        ... )
        >>> print(completion.choices[0].message.content)
    """

    def _make_chat(self, config: _Config) -> _Chat:
        return _Chat(Completions(config))

    def close(self) -> None:
        """Mark the client closed: later calls raise UsageError."""
        self._config.closed = True

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_ClientBase[_AsyncChat]):
    """An OpenAI-shaped client for Koala, for async code; options as `Client`.

    Example:
        >>> async with AsyncClient() as client:
        ...     completion = await client.chat.completions.create(
        ...         model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        ...     )
    """

    def _make_chat(self, config: _Config) -> _AsyncChat:
        return _AsyncChat(AsyncCompletions(config))

    async def close(self) -> None:
        """Mark the client closed: later calls raise UsageError."""
        self._config.closed = True

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
