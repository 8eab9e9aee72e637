"""Koala models for simonw's `llm`, registered through its plugin entry point.

Installing koala-chat next to `llm` is enough: `llm` finds this module through the
`llm` entry point of our package metadata and asks it for models. Each model of
`Koala.models` is `koala/<model>`, and `koala` is an alias of the default one:

    llm -m koala "Tell me something"
    llm -m koala/gpt-4.1 -s "Answer briefly" "Why is the sky blue?"
    llm -c "And at night?"
    llm -m koala -o endpoint http://127.0.0.1:8000/api/gpt/ "Hi"

The conversation so far (what `llm -c` continues, and what a conversation of the
Python API holds) reaches Koala as its history; token counts are our estimate
(`koala_chat.client.estimate_tokens`), since Koala reports none. Only `llm`
imports this module; nothing else in the package imports it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing

import llm
from llm.parts import TextPart
from pydantic import Field

from ._contract.options import ProviderOptions
from .client import estimate_tokens
from .defaults import PROTOCOLS, Protocol
from .errors import UsageError
from .messages import Message, Messages, Role
from .providers import Koala

__all__ = ["AsyncKoalaModel", "KoalaModel", "KoalaOptions", "register_models"]

#: The alias of `koala/<Koala.default_model>`.
ALIAS = "koala"
_PREFIX = "koala/"
_ROLES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}


class KoalaOptions(llm.Options):
    """The `-o NAME VALUE` options of the Koala models."""

    protocol: Protocol | None = Field(
        default=None,
        description=f"The Koala dialect to speak: {', '.join(PROTOCOLS)}",
    )
    endpoint: str | None = Field(
        default=None,
        description="The URL of the Koala API (else KOALA_API_ENDPOINT, else koala.sh)",
    )
    proxy: str | None = Field(
        default=None,
        description="A proxy URL: http, https, socks4, socks4a, socks5 or socks5h",
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds for the whole request, retries included",
    )
    web_search: bool | None = Field(
        default=None, description="Let Koala search the web for the answer"
    )


class _KoalaModelBase:
    """What the sync and async models share: names, options, the conversation."""

    can_stream = True
    supports_conversation = True

    def __init__(self, model_name: str) -> None:
        self.model_id = _PREFIX + model_name
        self.model_name = model_name

    @staticmethod
    def provider_options(options: llm.Options) -> ProviderOptions:
        """Return the options of `Koala` for the options that are set."""
        names = {
            "protocol": "protocol",
            "endpoint": "api_endpoint",
            "proxy": "proxy",
            "timeout": "timeout",
            "web_search": "web_search",
        }
        values = options.model_dump()
        return ProviderOptions.parse(
            {keyword: values[name] for name, keyword in names.items()}
        )


class KoalaModel(_KoalaModelBase, llm.Model):
    """A Koala model for `llm`'s command line and sync Python API."""

    class Options(KoalaOptions):
        """The options of `KoalaOptions`."""

    def execute(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.Response,
        conversation: llm.Conversation | None,
    ) -> Iterator[str]:
        """Yield the reply's text; record the estimated usage on `response`.

        Raises:
            KoalaError: see `koala_chat.errors`; `llm` shows its message.
        """
        messages = conversation_of(prompt)
        options = self.provider_options(prompt.options)
        with _Usage(messages, response.set_usage) as usage:
            for piece in Koala.create_completion(
                self.model_name, messages, stream=stream, **options
            ):
                usage.add(piece)
                yield piece


class AsyncKoalaModel(_KoalaModelBase, llm.AsyncModel):
    """A Koala model for `llm`'s async Python API (`llm.get_async_model`)."""

    class Options(KoalaOptions):
        """The options of `KoalaOptions`."""

    async def execute(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.AsyncResponse,
        conversation: llm.AsyncConversation | None,
    ) -> AsyncGenerator[str, None]:
        """Yield the reply's text; record the estimated usage on `response`.

        Raises:
            KoalaError: see `koala_chat.errors`.
        """
        messages = conversation_of(prompt)
        options = self.provider_options(prompt.options)
        with _Usage(messages, response.set_usage) as usage:
            pieces = Koala.create_async_text(self.model_name, messages, **options)
            async with aclosing(pieces) as stream_of_pieces:
                async for piece in stream_of_pieces:
                    usage.add(piece)
                    yield piece


def conversation_of(prompt: llm.Prompt) -> Messages:
    """Return the conversation `prompt` sends, as Koala messages.

    `prompt.messages` holds the whole chain: the system prompt, the earlier turns
    of the conversation (also those `llm -c` reloads from its log) and the new
    prompt. Each message's text parts are joined, as OpenAI joins text parts.

    Raises:
        UsageError: a message whose role Koala does not know (tool results).
    """
    messages: Messages = []
    for message in prompt.messages:
        text = "".join(
            part.text for part in message.parts if isinstance(part, TextPart)
        )
        role = _ROLES.get(message.role)
        if role is None:
            raise UsageError(
                "Koala models take system, user and assistant messages, "
                f"not {message.role!r}"
            )
        messages.append(Message(role=role, content=text))
    return messages


class _Usage:
    """Collect the reply's text and report the estimated usage once it ends.

    Also when the reply stops early, so that a cut reply is still accounted for.
    """

    def __init__(self, messages: Messages, report: Callable[..., None]) -> None:
        # conversation_of gives plain-text contents.
        self._input = sum(
            estimate_tokens(m["content"])
            for m in messages
            if isinstance(m["content"], str)
        )
        self._report = report
        self._pieces: list[str] = []

    def add(self, piece: str) -> None:
        self._pieces.append(piece)

    def __enter__(self) -> _Usage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        output = estimate_tokens("".join(self._pieces))
        self._report(input=self._input, output=output)


@llm.hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Register `koala/<model>` for each known model; `koala` is the default."""
    for model_name in Koala.get_models():
        aliases = [ALIAS] if model_name == Koala.default_model else []
        register(KoalaModel(model_name), AsyncKoalaModel(model_name), aliases=aliases)
