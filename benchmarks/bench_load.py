"""Load: many concurrent streams through `Koala`, beside a bare aiohttp client.

The sandbox runs in a process of its own (`python -m koala_chat.sandbox`), so
this process holds the client alone. Both clients open all streams at once
through one borrowed connector without a connection limit and read every
reply to its end. The floor is the least any client can do: one shared aiohttp
session, the raw chunks (`iter_any()`), pieces counted by their blank lines,
nothing parsed. Koala does all its work: a session per call, the SSE decoder,
JSON for every value.

Each client runs twice per round: once timed (pieces per second, time to the
first piece from the start of the round, CPU per piece), once under
tracemalloc with every stream held open after its first piece until all have
one, so the peak is that of all streams open together.

    python benchmarks/bench_load.py [--streams 1000] [--pieces 200] [--rounds 3]

Goals: at least 0.7x the floor's pieces per second; under 100 KiB
peak memory per open stream.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from koala_chat import Koala

# One stream: (session for the floor, connector, endpoint, input) -> its pieces,
# calling `first()` when its first piece arrives.
Reader = Callable[
    [
        aiohttp.ClientSession,
        aiohttp.BaseConnector,
        str,
        str,
        Callable[[], Awaitable[None]],
    ],
    Awaitable[int],
]


async def read_koala(
    session: aiohttp.ClientSession,
    connector: aiohttp.BaseConnector,
    endpoint: str,
    text: str,
    first: Callable[[], Awaitable[None]],
) -> int:
    """Read one reply through Koala; return how many values it had."""
    messages: Any = [{"role": "user", "content": text}]
    stream = Koala.create_async_generator(
        "", messages, connector=connector, api_endpoint=endpoint, max_retries=0
    )
    count = 0
    async with aclosing(stream) as values:
        async for _ in values:
            count += 1
            if count == 1:
                await first()
    return count


async def read_floor(
    session: aiohttp.ClientSession,
    connector: aiohttp.BaseConnector,
    endpoint: str,
    text: str,
    first: Callable[[], Awaitable[None]],
) -> int:
    """Read one reply with bare aiohttp; return how many events it had."""
    body = {"input": text, "inputHistory": [], "outputHistory": [], "model": ""}
    count = 0
    last = b""
    async with session.post(endpoint, json=body) as response:
        async for chunk in response.content.iter_any():
            # Blank lines end events; one may straddle two chunks.
            found = (last + chunk[:1]).count(b"\n\n") + chunk.count(b"\n\n")
            if found and not count:
                await first()
            count += found
            last = chunk[-1:]
    return count


@dataclass
class Round:
    """What one timed round measured."""

    pieces: int
    seconds: float
    cpu_seconds: float
    first_piece: list[float]

    @property
    def rate(self) -> float:
        return self.pieces / self.seconds


async def load(
    reader: Reader, endpoint: str, streams: int, *, hold: bool = False
) -> tuple[int, list[float]]:
    """Run `streams` readers at once; return the pieces and each first-piece time.

    With `hold`, every stream waits after its first piece until all streams
    have theirs, so that all are open at the same moment.
    """
    all_started = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    first_times: list[float] = []

    async def first() -> None:
        first_times.append(loop.time() - started)
        if len(first_times) == streams:
            all_started.set()
        if hold:
            await all_started.wait()

    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(
            connector=connector, connector_owner=False
        ) as session:
            counts = await asyncio.gather(
                *(
                    reader(session, connector, endpoint, f"stream {n}", first)
                    for n in range(streams)
                )
            )
    finally:
        await connector.close()
    return sum(counts), first_times


def timed(reader: Reader, endpoint: str, streams: int) -> Round:
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    pieces, first_times = asyncio.run(load(reader, endpoint, streams))
    return Round(
        pieces,
        time.perf_counter() - start,
        time.process_time() - cpu,
        first_times,
    )


def peak_per_stream(reader: Reader, endpoint: str, streams: int) -> float:
    """Return the traced peak memory of the load, in bytes per open stream."""
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        asyncio.run(load(reader, endpoint, streams, hold=True))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - baseline) / streams


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def sandbox(pieces: int) -> Iterator[str]:
    """Run the sandbox in another process; yield its API endpoint."""
    command = [sys.executable, "-m", "koala_chat.sandbox", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--pieces", str(pieces)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once it listens
        match = re.search(r"listening on (\S+)", line)
        if match is None:
            raise SystemExit(f"the sandbox did not start: {line!r}")
        yield f"{match[1]}/api/gpt/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--pieces", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # One socket per stream, and some to spare.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, args.streams + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    readers: dict[str, Reader] = {"floor (aiohttp)": read_floor, "Koala": read_koala}
    rounds: dict[str, list[Round]] = {name: [] for name in readers}
    memory: dict[str, float] = {}
    with sandbox(args.pieces) as endpoint:
        timed(read_koala, endpoint, min(args.streams, 50))  # warm up both ends
        for _ in range(args.rounds):
            for name, reader in readers.items():
                result = timed(reader, endpoint, args.streams)
                expected = args.streams * args.pieces
                if result.pieces != expected:
                    raise SystemExit(f"{name}: {result.pieces} pieces, not {expected}")
                rounds[name].append(result)
        for name, reader in readers.items():
            memory[name] = peak_per_stream(reader, endpoint, args.streams)

    print(
        f"{args.streams:,} concurrent streams x {args.pieces} pieces over loopback, "
        f"best of {args.rounds} rounds (sandbox in its own process)"
    )
    print(
        f"  {'client':16} {'pieces/s':>10} {'vs floor':>9} {'1st p50':>8} "
        f"{'1st p99':>8} {'CPU us/piece':>13} {'KiB/open stream':>16}"
    )
    floor_rate = max(r.rate for r in rounds["floor (aiohttp)"])
    for name in readers:
        best = max(rounds[name], key=lambda r: r.rate)
        print(
            f"  {name:16} {best.rate:>10,.0f} {best.rate / floor_rate:>8.2f}x "
            f"{statistics.median(best.first_piece) * 1000:>6.0f}ms "
            f"{percentile(best.first_piece, 0.99) * 1000:>6.0f}ms "
            f"{best.cpu_seconds / best.pieces * 1e6:>13.2f} "
            f"{memory[name] / 1024:>16.1f}"
        )
    koala = max(r.rate for r in rounds["Koala"]) / floor_rate
    print(
        f"goals: throughput {koala:.2f}x the floor (>= 0.7): "
        f"{'met' if koala >= 0.7 else 'MISSED'}; "
        f"memory {memory['Koala'] / 1024:.1f} KiB per open stream (< 100): "
        f"{'met' if memory['Koala'] < 100 * 1024 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
