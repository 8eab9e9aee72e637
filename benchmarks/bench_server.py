"""Load through `koala serve`, beside the sandbox loaded directly (the floor).

C concurrent clients (C = 1, 10, 100, 500) each stream 200-piece replies, one
after another, for a fixed time. The same aiohttp client loads the sandbox
directly (the floor) and `koala serve` in front of the same sandbox, in the same
run, at two paces: pieces 5 ms apart (like a model) and unpaced (CPU-bound).
Reported: pieces per second, time to first piece p50/p99, the server's CPU time
per piece (from /proc/PID/stat) and its peak RSS (VmHWM), errors.

The sandbox and the server run in processes of their own; the client runs here.
Each cell starts with a warm-up (one stream per client, not counted) so that
connection pools are filled and one-time costs (imports, the TLS context) are
paid; the CPU time counts only the timed part.

    python benchmarks/bench_server.py [--seconds 3] [--clients 1,10,100,500]
        [--format chat,responses]   # the wire formats, one after another:
                                    # chat (the default), responses,
                                    # completions, messages, ollama
        [--gateway none,sqlite,redis]   # without --keys (the default), or
                                    # with --keys and that --state (a key
                                    # whose limits are never met, so every
                                    # request pays the whole admission)

`--gateway redis` starts a `redis-server` of its own on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
import msgspec

PIECES = 200
KOALA_BODY = msgspec.json.encode(
    {"input": "Hi", "inputHistory": [], "outputHistory": [], "model": ""}
)
OPENAI_BODY = msgspec.json.encode(
    {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
)
RESPONSES_BODY = msgspec.json.encode(
    {"model": "gpt-4o-mini", "stream": True, "input": "Hi"}
)
COMPLETIONS_BODY = msgspec.json.encode(
    {"model": "gpt-4o-mini", "stream": True, "prompt": "Hi"}
)
OLLAMA_BODY = msgspec.json.encode(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
)
# The Messages API requires max_tokens (Claude Code sends 32000): the reply is
# then cut on our side on the estimate, a cost of the format.
ANTHROPIC_BODY = msgspec.json.encode(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
)
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Served:
    """One wire format of `koala serve`: where to post, what, how to count."""

    path: str
    body: bytes
    #: Events of a stream that carry no piece (the role, the end, `[DONE]`).
    overhead: int
    #: What ends one event: a blank line (SSE) or a newline (NDJSON).
    separator: bytes = b"\n\n"


#: The wire formats `--format` chooses from; each new format adds its entry.
FORMATS = {
    "chat": Served("/v1/chat/completions", OPENAI_BODY, 3),
    # created, in_progress, the item and its part added, the text, part and
    # item done, completed.
    "responses": Served("/v1/responses", RESPONSES_BODY, 8),
    # The finish chunk and [DONE]: a legacy stream has no role chunk.
    "completions": Served("/v1/completions", COMPLETIONS_BODY, 2),
    # NDJSON: a line per piece and the last one, `done: true`.
    "ollama": Served("/api/chat", OLLAMA_BODY, 1, b"\n"),
    # message_start, ping, content_block_start, content_block_stop,
    # message_delta, message_stop.
    "messages": Served("/v1/messages?beta=true", ANTHROPIC_BODY, 6),
}


@dataclass
class Result:
    pieces: int = 0
    streams: int = 0
    errors: int = 0
    ttfp: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0  # the measured process's CPU seconds in the timed part

    @property
    def rate(self) -> float:
        return self.pieces / self.seconds if self.seconds else 0.0

    def ttfp_ms(self) -> str:
        """Return "p50/p99" of the time to first piece in milliseconds."""
        return f"{self.percentile(0.5) * 1e3:.1f}/{self.percentile(0.99) * 1e3:.1f}"

    def percentile(self, q: float) -> float:
        if not self.ttfp:
            return float("nan")
        ordered = sorted(self.ttfp)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    overhead: int,
    result: Result,
    separator: bytes = b"\n\n",
    headers: dict[str, str] | None = None,
) -> None:
    started = time.perf_counter()
    first = None
    events = 0
    previous_lf = False
    try:
        sent = {"Content-Type": "application/json", **(headers or {})}
        async with session.post(url, data=body, headers=sent) as response:
            if response.status != 200:
                await response.read()
                result.errors += 1
                return
            async for chunk in response.content.iter_any():
                if first is None:
                    first = time.perf_counter() - started
                events += chunk.count(separator)
                # An event boundary split between two chunks.
                if separator == b"\n\n" and previous_lf and chunk[:1] == b"\n":
                    events += 1
                previous_lf = chunk[-1:] == b"\n"
    except (aiohttp.ClientError, OSError):
        result.errors += 1
        return
    pieces = events - overhead
    if pieces != PIECES:
        result.errors += 1
    result.pieces += max(0, pieces)
    result.streams += 1
    if first is not None:
        result.ttfp.append(first)


async def load(
    url: str,
    body: bytes,
    overhead: int,
    clients: int,
    seconds: float,
    cpu: Callable[[], float] = lambda: 0.0,
    separator: bytes = b"\n\n",
    headers: dict[str, str] | None = None,
) -> Result:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Warm-up: one stream per client, so both paths start with open pools.
        warm = Result()
        await asyncio.gather(
            *(
                one_stream(session, url, body, overhead, warm, separator, headers)
                for _ in range(clients)
            )
        )
        result = Result()
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                await one_stream(
                    session, url, body, overhead, result, separator, headers
                )

        cpu_before = cpu()
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        result.seconds = time.perf_counter() - started
        result.cpu = cpu() - cpu_before
        return result


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the ")".
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(
    port: int, process: subprocess.Popen[bytes], seconds: float = 15.0
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def process(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_listening(port, child)
        yield child
    finally:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()


@dataclass(frozen=True)
class Gateway:
    """What `koala serve` is started with for one `--gateway`, and the key."""

    name: str
    argv: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


@contextmanager
def gateway(name: str) -> Iterator[Gateway]:
    """Set up `--gateway name`: a keys file, its state (and Redis), the key."""
    if name == "none":
        yield Gateway(name)
        return
    from koala_chat.server.gateway.keys import Limits, add_key

    with tempfile.TemporaryDirectory() as folder:
        keys = os.path.join(folder, "keys.toml")
        never = 10**9
        key = add_key(keys, "bench", Limits(never, never, never))
        headers = {"Authorization": f"Bearer {key}"}
        if name == "sqlite":
            state = os.path.join(folder, "state.sqlite3")
            yield Gateway(name, ["--keys", keys, "--state", state], headers)
            return
        with redis_server() as url:
            yield Gateway(name, ["--keys", keys, "--state", url], headers)


@contextmanager
def redis_server() -> Iterator[str]:
    """Run a `redis-server` that keeps nothing on disk; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--gateway redis needs redis-server (apt-get install it)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        wait_listening(port, child)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        child.terminate()
        child.wait(20)


def run_pace(
    interval: float,
    clients: list[int],
    seconds: float,
    workers: int,
    api: Served,
    keys: Gateway,
) -> None:
    sandbox_port, server_port = free_port(), free_port()
    sandbox_argv = [
        "-m", "koala_chat.sandbox", "--port", str(sandbox_port),
        "--pieces", str(PIECES), "--interval", str(interval),
    ]  # fmt: skip
    server_argv = [
        "-m", "koala_chat.server", "--port", str(server_port), "--quiet",
        "--endpoint", f"http://127.0.0.1:{sandbox_port}/api/gpt/",
        "--retries", "0", "--max-streams", "5000", "--workers", str(workers),
        *keys.argv,
    ]  # fmt: skip
    floor_url = f"http://127.0.0.1:{sandbox_port}/api/gpt/"
    server_url = f"http://127.0.0.1:{server_port}{api.path}"
    pace = f"{interval * 1000:g} ms apart" if interval else "unpaced"
    print(
        f"\n## {PIECES}-piece replies, {pace}, {seconds:g} s per cell, "
        f"gateway {keys.name}"
    )
    print(
        "   C | floor pieces/s  TTFP p50/p99 ms | serve pieces/s  TTFP p50/p99 ms"
        " | ratio | CPU us/piece | RSS MiB | errors"
    )
    with (
        process(sandbox_argv, sandbox_port),
        process(server_argv, server_port) as server,
    ):
        pids = [server.pid, *_children(server.pid)]
        for count in clients:
            floor = asyncio.run(load(floor_url, KOALA_BODY, 0, count, seconds))
            served = asyncio.run(
                load(
                    server_url,
                    api.body,
                    api.overhead,
                    count,
                    seconds,
                    lambda: sum(cpu_seconds(pid) for pid in pids),
                    api.separator,
                    keys.headers,
                )
            )
            per_piece = served.cpu / served.pieces * 1e6 if served.pieces else 0
            rss = max(peak_rss_mib(pid) for pid in pids)
            print(
                f"{count:>4} | {floor.rate:>14,.0f}  {floor.ttfp_ms():>15}"
                f" | {served.rate:>14,.0f}  {served.ttfp_ms():>15}"
                f" | {served.rate / floor.rate:5.2f} | {per_piece:12.1f} | {rss:7.1f}"
                f" | {floor.errors}/{served.errors}",
                flush=True,
            )


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", default="1,10,100,500")
    parser.add_argument("--paces", default="0.005,0", help="seconds between pieces")
    parser.add_argument("--workers", type=int, default=1, help="koala serve --workers")
    parser.add_argument(
        "--format",
        default="chat",
        help=f"the wire formats to load, comma-separated, from {', '.join(FORMATS)}",
    )
    parser.add_argument(
        "--gateway",
        default="none",
        help="koala serve without --keys (none), or with --keys and --state in "
        "sqlite or redis; comma-separated, one after another",
    )
    args = parser.parse_args()
    gateways = args.gateway.split(",")
    if unknown_state := set(gateways) - {"none", "sqlite", "redis"}:
        parser.error(f"unknown --gateway {', '.join(sorted(unknown_state))}")
    clients = [int(c) for c in args.clients.split(",")]
    names = args.format.split(",")
    if unknown := set(names) - FORMATS.keys():
        parser.error(f"unknown --format {', '.join(sorted(unknown))}")
    for name in names:
        wire = FORMATS[name]
        print(
            f"bench_server: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
            f"aiohttp {aiohttp.__version__}, koala serve --workers {args.workers}, "
            f"format {name} ({wire.path})"
        )
        for interval in (float(p) for p in args.paces.split(",")):
            for name_of_state in gateways:
                with gateway(name_of_state) as keys:
                    run_pace(interval, clients, args.seconds, args.workers, wire, keys)


if __name__ == "__main__":
    main()
