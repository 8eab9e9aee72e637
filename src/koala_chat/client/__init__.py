"""The OpenAI-shaped client: `Client`, `AsyncClient` and the objects they return.

The client is only the call surface; what it shares with `koala serve` (the
objects, the parameter table, stop cutting, the usage estimate) lives in
`koala_chat._contract` and is re-exported here.
"""

from .._contract.cutting import ReplyCutter, cut_reply
from .._contract.params import CompletionRequest, parse_request
from .._contract.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    Model,
    ModelList,
)
from .._contract.usage import estimate_tokens
from .completions import AsyncClient, AsyncStream, Client, Stream

__all__ = [
    "AsyncClient",
    "AsyncStream",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "Client",
    "CompletionRequest",
    "CompletionUsage",
    "Model",
    "ModelList",
    "ReplyCutter",
    "Stream",
    "cut_reply",
    "estimate_tokens",
    "parse_request",
]
