"""End to end over loopback: one long stream through `Koala`, beside the seed's way.

The sandbox runs in a separate process (`python -m koala_chat.sandbox`) so that
only the client is measured in this one. Every client reads a reply of N
values; the naive one is the seed's code: aiohttp's line iterator and
`json.loads` on each `data: ` line. `Koala` is measured in the history dialect
and in the messages dialect (whose stream ends with `data: [DONE]`); the last
line compares the two.

    python benchmarks/bench_provider.py [--values 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Any

import aiohttp

from koala_chat import Koala

MESSAGES = [{"role": "user", "content": "Count for me."}]
BODY = {"input": "Count for me.", "inputHistory": [], "outputHistory": [], "model": ""}


async def ours(endpoint: str, protocol: str = "history") -> int:
    count = 0
    stream = Koala.create_async_generator(
        "",
        MESSAGES,  # type: ignore[arg-type]
        api_endpoint=endpoint,
        protocol=protocol,
    )
    async with aclosing(stream):
        async for _ in stream:
            count += 1
    return count


async def naive(endpoint: str) -> int:
    count = 0
    async with (
        aiohttp.ClientSession() as session,
        session.post(endpoint, json=BODY) as response,
    ):
        async for line in response.content:
            if line.startswith(b"data: "):
                json.loads(line[6:])
                count += 1
    return count


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the sandbox did not start on port {port}")


def measure(
    run: Callable[[str], Coroutine[Any, Any, int]], endpoint: str, rounds: int
) -> tuple[int, float]:
    best = float("inf")
    count = 0
    for _ in range(rounds):
        started = time.perf_counter()
        count = asyncio.run(run(endpoint))
        best = min(best, time.perf_counter() - started)
    return count, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "koala_chat.sandbox",
            "--port",
            str(port),
            "--pieces",
            str(args.values),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, time.monotonic() + 20)
        endpoint = f"http://127.0.0.1:{port}/api/gpt/"
        results = {
            "naive (seed)": measure(naive, endpoint, args.rounds),
            "Koala history": measure(ours, endpoint, args.rounds),
            "Koala messages": measure(
                functools.partial(ours, protocol="messages"), endpoint, args.rounds
            ),
        }
    finally:
        server.terminate()
        server.wait(timeout=10)
    floor = results["naive (seed)"]
    print(f"{args.values:,} values over loopback, best of {args.rounds}")
    for name, (count, seconds) in results.items():
        rate = count / seconds
        print(
            f"  {name:14} {count:>9,} values  {seconds:7.3f} s  {rate:>12,.0f} values/s"
            f"  {rate / (floor[0] / floor[1]):5.2f}x"
        )
    history, messages = results["Koala history"], results["Koala messages"]
    ratio = (messages[0] / messages[1]) / (history[0] / history[1])
    print(f"  messages / history: {ratio:.2f} (within 10%: {abs(ratio - 1) <= 0.1})")


if __name__ == "__main__":
    main()
