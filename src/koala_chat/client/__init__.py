"""The OpenAI-shaped client: `Client`, `AsyncClient` and the objects they return."""

from .completions import AsyncClient, AsyncStream, Client, Stream
from .cutting import ReplyCutter, cut_reply
from .params import CompletionRequest, estimate_tokens, parse_request
from .types import (
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
