"""Memory that `koala serve` holds for streams whose clients never read.

The sandbox (scripted to answer with N pieces, 200,000 by default) and
`koala serve` in front of it run as processes of their own on 127.0.0.1. After
a warm-up (one whole reply read through the server, so that the server's
one-time allocations are made), S raw TCP connections (500 by default) each
send a streaming chat-completion request and never read a byte. The script
polls the server's resident set (VmRSS in /proc/PID/status) until it has stopped
growing (no growth above a small tolerance for several seconds, bounded by a
time limit), then reports its growth per stalled stream. The sockets' kernel
buffers are not in the resident set: this measures what the process holds.

    python benchmarks/bench_stalled.py [--streams 500] [--pieces 200000]

Goal: under 256 KiB per stalled stream.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import aiohttp
import msgspec

# The helpers that start the processes are bench_server.py's (this folder is
# first on sys.path when a script here runs).
from bench_server import SERVER_OVERHEAD_EVENTS, free_port, process

KIB = 1024
GOAL_KIB = 256
# The resident set has "stopped growing" when it grew by less than this over
# the last STEADY_SECONDS.
STEADY_KIB = 1024
STEADY_SECONDS = 5.0
POLL_SECONDS = 0.25


def request_bytes(port: int) -> bytes:
    """Return one streaming chat-completion request, head and body."""
    body = msgspec.json.encode(
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        }
    )
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


def rss_kib(pid: int) -> int:
    """Return the resident set of process `pid` in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def read_whole_reply(port: int, request: bytes, limit: float) -> int:
    """Read one whole streamed reply through the server; return its pieces."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        sock.sendall(request)
        # The end of a chunked body is its last chunk, of length 0.
        while not received.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(256 * KIB)
            if not chunk:
                break
            received += chunk
    head, _, chunked = bytes(received).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the server answered {head[:40]!r}")
    return dechunk(chunked).count(b"\n\n") - SERVER_OVERHEAD_EVENTS


def dechunk(chunked: bytes) -> bytes:
    """Return the body of an HTTP/1.1 chunked transfer coding."""
    body = bytearray()
    at = 0
    while True:
        end = chunked.index(b"\r\n", at)
        size = int(chunked[at:end].split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        body += chunked[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


@contextmanager
def stalled_streams(port: int, request: bytes, count: int) -> Iterator[None]:
    """Open `count` connections that each send `request` and never read."""
    with ExitStack() as sockets:
        for _ in range(count):
            sock = sockets.enter_context(
                socket.create_connection(("127.0.0.1", port), timeout=10)
            )
            sock.sendall(request)
        yield


def wait_steady(pid: int, limit: float) -> tuple[int, float, bool]:
    """Poll the resident set until it stops growing or `limit` seconds pass.

    Returns the last resident set in KiB, the seconds waited and whether it
    was steady (False: the time limit ended the wait).
    """
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    while True:
        now = time.monotonic()
        rss = rss_kib(pid)
        samples.append((now, rss))
        window = [kib for at, kib in samples if at >= now - STEADY_SECONDS]
        waited = now - started
        if waited >= STEADY_SECONDS and max(window) - min(window) < STEADY_KIB:
            return rss, waited, True
        if waited >= limit:
            return rss, waited, False
        time.sleep(POLL_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--pieces", type=int, default=200_000)
    parser.add_argument(
        "--limit", type=float, default=60.0, help="longest wait for a steady RSS"
    )
    args = parser.parse_args()
    print(
        f"bench_stalled: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"aiohttp {aiohttp.__version__}; {args.streams} stalled streams of "
        f"{args.pieces:,}-piece replies"
    )
    sandbox_port, server_port = free_port(), free_port()
    sandbox_argv = [
        "-m", "koala_chat.sandbox", "--port", str(sandbox_port),
        "--pieces", str(args.pieces),
    ]  # fmt: skip
    server_argv = [
        "-m", "koala_chat.server", "--port", str(server_port), "--quiet",
        "--endpoint", f"http://127.0.0.1:{sandbox_port}/api/gpt/",
        "--retries", "0", "--max-streams", str(args.streams + 10),
        "--max-connections", str(args.streams + 10),
    ]  # fmt: skip
    request = request_bytes(server_port)
    with (
        process(sandbox_argv, sandbox_port),
        process(server_argv, server_port) as server,
    ):
        pieces = read_whole_reply(server_port, request, args.limit)
        print(f"warm-up: one whole reply read, {pieces:,} pieces")
        before, _, _ = wait_steady(server.pid, args.limit)
        with stalled_streams(server_port, request, args.streams):
            after, waited, steady = wait_steady(server.pid, args.limit)
            growth = after - before
            per_stream = growth / args.streams
            print(
                f"server RSS {before / KIB:.1f} MiB before, {after / KIB:.1f} MiB "
                f"with the stalled streams ({'steady' if steady else 'still growing'}"
                f" after {waited:.1f} s)"
            )
            verdict = "met" if steady and per_stream < GOAL_KIB else "NOT met"
            print(
                f"growth per stalled stream: {per_stream:.1f} KiB "
                f"(goal < {GOAL_KIB} KiB: {verdict})"
            )
            pieces = read_whole_reply(server_port, request, args.limit)
            print(f"meanwhile a reader that reads gets {pieces:,} pieces")


if __name__ == "__main__":
    main()
