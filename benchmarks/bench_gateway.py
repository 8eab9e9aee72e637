"""The cost of one admission of `koala serve --keys`: SQLite and Redis, p50/p99.

What the limit check adds to a request's time to first piece is one
admission (count the key's windows and open streams, take a place) before the
request goes upstream; a key with `max_streams` also gives its place back at
the end, off the response's path. This times both, one request after
another on one event loop, as `koala_chat.server.gateway.gate` awaits them,
for a key with all three limits (never met, so every admission does the whole
work), whose day window fills up to `--requests` entries as the run goes.

    python benchmarks/bench_gateway.py [--requests 5000] [--state sqlite,redis]

The first line, `cpu`, times a loop that does no I/O, as long as an
admission: its p99 is what the machine itself adds (other processes taking
the CPU), the floor under the other p99s.

`--state redis` starts a `redis-server` of its own on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid

from bench_server import redis_server
from koala_chat.server.gateway.backends import StateBackend, open_state
from koala_chat.server.gateway.keys import Limits

LIMITS = Limits(requests_per_minute=10**9, requests_per_day=10**9, max_streams=10**9)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    return f"{at(0.5):.3f}/{at(0.99):.3f}/{ordered[-1] * 1e3:.3f}"


async def measure(state: StateBackend, requests: int) -> tuple[list[float], ...]:
    admits: list[float] = []
    releases: list[float] = []
    for n in range(requests + 200):
        ticket = uuid.uuid4().hex
        started = time.perf_counter()
        refusal = await state.admit("bench", LIMITS, ticket)
        admitted = time.perf_counter()
        await state.release("bench", ticket)
        released = time.perf_counter()
        assert refusal is None
        if n >= 200:  # the first ones warm the connection and the caches
            admits.append(admitted - started)
            releases.append(released - admitted)
    return admits, releases


async def run(url: str, requests: int) -> tuple[list[float], ...]:
    state = open_state(url)
    try:
        return await measure(state, requests)
    finally:
        await state.close()


def cpu_floor(requests: int) -> list[float]:
    """Time `requests` runs of a loop without I/O of about 0.1 ms."""
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        sum(range(8000))
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--state", default="sqlite,redis")
    args = parser.parse_args()
    print(
        f"bench_gateway: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"{args.requests} requests one after another, a key with all three limits"
    )
    print("state  | admit ms p50/p99/max   | release ms p50/p99/max")
    print(f"cpu    | {percentiles(cpu_floor(args.requests)):<22} |")
    for name in args.state.split(","):
        if name == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "state.sqlite3")
                admits, releases = asyncio.run(run(path, args.requests))
        elif name == "redis":
            with redis_server() as url:
                admits, releases = asyncio.run(run(url, args.requests))
        else:
            parser.error(f"unknown --state {name}")
        print(f"{name:<6} | {percentiles(admits):<22} | {percentiles(releases)}")


if __name__ == "__main__":
    main()
