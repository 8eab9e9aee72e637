"""How long a replaying sandbox takes to load a cassette of many exchanges.

Run by hand: `python benchmarks/bench_cassette.py [--exchanges 10000]
[--chunks 30] [--repeat 5]`.

It writes a cassette of N exchanges (a three-turn history conversation each,
every one different, with a streamed answer of C chunks and their timing, as
the recorder writes them) to a temporary file, then times what `Replayer`
does when it starts: read the file, decode and validate every line
(`load_cassette`) and index the requests (`CassetteIndex`). It prints the
file's size, the best and the median of the runs, and whether the best is
under the goal of one second for 10,000 exchanges. The floor beside it is
`msgspec.json.decode` of the same lines without a type (no validation).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from koala_chat.sandbox.cassette import (
    CassetteRequest,
    CassetteResponse,
    Exchange,
    Timing,
    Turn,
    encode_exchange,
    load_cassette,
)
from koala_chat.sandbox.matching import CassetteIndex

GOAL_SECONDS = 1.0


def exchange(number: int, chunks: int) -> Exchange:
    """The `number`th exchange: a question of its own and a streamed answer."""
    conversation = [
        Turn("user", "Hi"),
        Turn("assistant", "Hello! How can I help?"),
        Turn("user", f"Question {number}: how tall do koalas grow?"),
    ]
    pieces = [f'data: "word{index} "\n\n' for index in range(chunks)]
    return Exchange(
        request=CassetteRequest("history", "gpt-4o-mini", conversation),
        response=CassetteResponse(
            200,
            [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
            chunks=pieces,
            timing=Timing(0.05, [0.05 + 0.02 * index for index in range(chunks)]),
        ),
        recorded="2026-12-02T20:00:00+00:00",
    )


def load(path: Path) -> int:
    """What the replayer does on start; return how many requests it indexed."""
    return len(CassetteIndex(load_cassette(path)))


def floor(path: Path) -> int:
    """Decode the lines without validating them: the floor of `load`."""
    return len([msgspec.json.decode(line) for line in path.read_bytes().splitlines()])


def timed(function: Callable[[Path], int], path: Path, repeat: int) -> list[float]:
    """Return the seconds of each of `repeat` calls of `function(path)`."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(path)
        runs.append(time.perf_counter() - start)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=10_000)
    parser.add_argument("--chunks", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.jsonl"
        with path.open("wb") as file:
            for number in range(args.exchanges):
                file.write(encode_exchange(exchange(number, args.chunks)))
        assert load(path) == args.exchanges
        runs = timed(load, path, args.repeat)
        floors = timed(floor, path, args.repeat)
        size = path.stat().st_size
    best = min(runs)
    print(
        f"{args.exchanges} exchanges of {args.chunks} chunks, "
        f"{size / 1e6:.1f} MB, {args.repeat} runs"
    )
    print(f"load and index: best {best:.3f} s, median {statistics.median(runs):.3f} s")
    print(f"floor (untyped decode): best {min(floors):.3f} s")
    goal = GOAL_SECONDS * args.exchanges / 10_000
    verdict = "under" if best < goal else "OVER"
    print(f"goal: {goal:.2f} s for {args.exchanges} exchanges: {verdict}")


if __name__ == "__main__":
    main()
