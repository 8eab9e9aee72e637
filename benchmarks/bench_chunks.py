"""The cost of one `chat.completion.chunk` event, built and encoded.

Run by hand: `python benchmarks/bench_chunks.py [--repeat N]`.

Prints nanoseconds per event of the chunk encoder's content event (the
server's hot path), of the same event built as a `ChatCompletionChunk` and
encoded whole (the struct path, which every other event takes), and per
piece of a 200-piece stream from head to tail; the best of `--repeat` runs of
`timeit`. Run with `PYTHONPATH` set to another tree's `src` to compare two
versions; on a tree whose types are not structs, the struct path encodes
`model_dump()` instead.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import msgspec

from koala_chat._contract.params import parse_request
from koala_chat._contract.replies import Reply
from koala_chat._contract.types import ChatCompletionChunk, ChoiceDelta, ChunkChoice
from koala_chat.server.formats.chat import ChunkEncoder

TEXT = "a piece of a reply, "
PIECES = 200


def _best_ns(call: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e9


def _struct_event() -> bytes:
    chunk = ChatCompletionChunk(
        id="chatcmpl-0123456789abcdef01234567",
        created=1700000000,
        model="gpt-4o-mini",
        choices=[ChunkChoice(index=0, delta=ChoiceDelta(content=TEXT))],
    )
    if isinstance(chunk, msgspec.Struct):
        return b"data: " + msgspec.json.encode(chunk) + b"\n\n"
    return b"data: " + msgspec.json.encode(chunk.model_dump()) + b"\n\n"


def _reply() -> Reply:
    hi = [{"role": "user", "content": "Hi"}]
    reply = Reply(parse_request({"model": "gpt-4o-mini", "messages": hi}))
    reply.id, reply.created = "chatcmpl-0123456789abcdef01234567", 1
    return reply


def _stream(reply: Reply) -> bytes:
    encoder = ChunkEncoder(reply)
    parts = [encoder.role()]
    parts += [encoder.content(TEXT) for _ in range(PIECES)]
    parts.append(encoder.finish("stop"))
    return b"".join(parts)


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat
    reply = _reply()
    encoder = ChunkEncoder(reply)
    content = _best_ns(lambda: encoder.content(TEXT), 200_000, repeat)
    struct = _best_ns(_struct_event, 50_000, repeat)
    stream = _best_ns(lambda: _stream(reply), 2_000, repeat) / PIECES
    print(f"content event (encoder):        {content:7.0f} ns")
    print(f"content event (struct, whole):  {struct:7.0f} ns")
    print(f"200-piece stream, per piece:    {stream:7.0f} ns")


if __name__ == "__main__":
    main()
