"""Throughput of JSONValueDecoder beside the naive parser of the seed.

Run by hand: `python benchmarks/bench_decoder.py [--repeat N]`.

For each workload, fed in random chunks of 1 to 16 KiB (fixed seed), it prints
values per second and MB per second of our decoder and of the naive parser (the
seed's way: buffer the bytes, split lines on LF, keep the lines that start with
`data: `, `json.loads` the rest), measured in the same run, and their ratio.
Both must give the same values on these workloads; the script checks that, and
then shows inputs on which the naive parser is wrong. Timed runs consume the
values one by one and keep none, as a stream reader does.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import msgspec

from koala_chat._jsonstream import JSONValueDecoder
from koala_chat.errors import KoalaError

SEED = 20240611
KIB = 1024


def naive_values(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Parse as the seed does: LF lines, exact `data: ` prefix, stdlib json."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        lines = buffer.split(b"\n")
        buffer = lines.pop()
        for line in lines:
            if line.startswith(b"data: "):
                yield json.loads(line[6:])


def our_values(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Parse with JSONValueDecoder."""
    decoder = JSONValueDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.close()


def naive_parse(chunks: Iterable[bytes]) -> list[Any]:
    """Return all the values the naive parser finds."""
    return list(naive_values(chunks))


def our_parse(chunks: Iterable[bytes]) -> list[Any]:
    """Return all the values JSONValueDecoder finds."""
    return list(our_values(chunks))


def consume(
    values: Callable[[list[bytes]], Iterator[Any]], chunks: list[bytes]
) -> None:
    """Consume the values one by one without keeping them, as a stream reader does.

    Keeping 50,000 parsed objects alive would mostly time the garbage collector
    walking them, the same for every parser, and hide the parsers' difference.
    """
    collections.deque(values(chunks), maxlen=0)


def parse_each(loads: Callable[[str], Any], datas: list[str]) -> None:
    """Parse each of `datas` with `loads`, keeping none."""
    collections.deque(map(loads, datas), maxlen=0)


def chunked(stream: bytes, rng: random.Random) -> list[bytes]:
    """Cut `stream` into chunks of 1 to 16 KiB."""
    chunks = []
    start = 0
    while start < len(stream):
        end = start + rng.randint(1 * KIB, 16 * KIB)
        chunks.append(stream[start:end])
        start = end
    return chunks


def tokens(rng: random.Random) -> bytes:
    """(a) 200,000 small string events, as Koala sends them."""
    words = ["tok", " the", " a", " world", ",", " Hello", "\\n", " é"]
    return b"".join(f'data: "{rng.choice(words)}"\n\n'.encode() for _ in range(200_000))


def completion_chunks(rng: random.Random) -> bytes:
    """(b) 50,000 OpenAI-style chat.completion.chunk objects of ~250 bytes."""
    events = []
    for index in range(50_000):
        chunk = {
            "id": f"chatcmpl-{rng.getrandbits(96):024x}",
            "object": "chat.completion.chunk",
            "created": 1_718_000_000 + index // 100,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_0ba0d124f1",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": rng.choice([" the", " world", "!"])},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
        compact = json.dumps(chunk, separators=(",", ":"))  # as OpenAI sends it
        events.append(b"data: " + compact.encode() + b"\n\n")
    return b"".join(events)


def large_events(rng: random.Random) -> bytes:
    """(c) 200 events of 64 KiB each (a JSON string each)."""
    letters = "abcdefghijklmnopqrstuvwxyz "
    events = []
    for _ in range(200):
        text = "".join(rng.choices(letters, k=64 * KIB - 8))
        events.append(b"data: " + json.dumps(text).encode() + b"\n\n")
    return b"".join(events)


WORKLOADS: list[tuple[str, Callable[[random.Random], bytes]]] = [
    ("(a) 200,000 token events", tokens),
    ("(b) 50,000 chat.completion.chunk", completion_chunks),
    ("(c) 200 events of 64 KiB", large_events),
]


def best_times(runs: list[Callable[[], object]], repeat: int) -> list[float]:
    """Return the best wall time in seconds of each of `runs` over `repeat` rounds.

    The runs take turns, and the garbage of a run is collected before the
    next, so that a busy machine or the collector affects them alike.
    """
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for index, call in enumerate(runs):
            gc.collect()
            start = time.perf_counter()
            result = call()
            best[index] = min(best[index], time.perf_counter() - start)
            del result
    return best


def run_workloads(repeat: int) -> None:
    """Print the throughput table.

    "JSON alone" times msgspec's and the standard library's JSON decoders on
    the data of the events, already cut out: the part of the work that no
    event-stream parser can avoid, and so a bound on the ratio.
    """
    print(f"{'workload':36} {'parser':6} {'values/s':>12} {'MB/s':>8} {'ratio':>7}")
    for name, make in WORKLOADS:
        rng = random.Random(SEED)
        stream = make(rng)
        chunks = chunked(stream, rng)
        count = len(our_parse(chunks))
        if our_parse(chunks) != naive_parse(chunks):
            raise SystemExit(f"{name}: the parsers disagree")
        datas = [line[6:].decode() for line in stream.split(b"\n") if line]
        megabytes = len(stream) / 1e6
        ours, naive, fast_json, std_json = best_times(
            [
                partial(consume, our_values, chunks),
                partial(consume, naive_values, chunks),
                partial(parse_each, msgspec.json.Decoder().decode, datas),
                partial(parse_each, json.loads, datas),
            ],
            repeat,
        )
        for parser, seconds in (("ours", ours), ("naive", naive)):
            ratio = f"{naive / ours:6.1f}x" if parser == "ours" else ""
            print(
                f"{name:36} {parser:6} {count / seconds:12,.0f}"
                f" {megabytes / seconds:8.1f} {ratio:>7}"
            )
        print(
            f"{'':36} JSON alone: msgspec {count / fast_json:,.0f}/s,"
            f" json {count / std_json:,.0f}/s ({std_json / fast_json:.1f}x)"
        )


# Inputs on which the naive parser goes wrong, with what it should give.
EDGE_CASES: list[tuple[str, list[bytes]]] = [
    ("CR line ends", [b'data: "a"\r\rdata: "b"\r\r']),
    ("no space after the colon", [b'data:"a"\n\n']),
    ("data over two lines", [b'data: {"a":\ndata: 1}\n\n']),
    ("[DONE] at the end", [b'data: "a"\n\ndata: [DONE]\n\n']),
    ("leading BOM", [b'\xef\xbb\xbfdata: "a"\n\n']),
    ("last event without blank line", [b'data: "a"\n\ndata: "b"']),
    ("UTF-8 character split", [b'data: "\xc3', b'\xa9"\n\n']),
]


def outcome(parse: Callable[[list[bytes]], list[Any]], chunks: list[bytes]) -> str:
    """Return what `parse` gives, or the name of the error it raises."""
    try:
        return repr(parse(chunks))
    except (KoalaError, ValueError) as exc:
        return type(exc).__name__


def run_edge_cases() -> None:
    """Print where the naive parser is wrong."""
    print("\nwhere the naive parser is wrong:")
    for name, chunks in EDGE_CASES:
        ours, naive = outcome(our_parse, chunks), outcome(naive_parse, chunks)
        mark = "same" if ours == naive else "WRONG"
        print(f"  {name:30} ours {ours:22} naive {naive:22} {mark}")


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per parser")
    args = parser.parse_args()
    run_workloads(args.repeat)
    run_edge_cases()


if __name__ == "__main__":
    main()
