"""The instructions `koala serve` executes per request and per piece (callgrind).

The server's CPU time per piece (bench_server.py) moves by a tenth from run to
run; the instructions it executes for the same requests move by a thousandth,
so two commits are told apart by a few percent. The server runs under
valgrind's callgrind with counting off; after a warm-up (two streams per
client), counting is on for R requests at concurrency C, each a streamed reply
of P unpaced pieces from the sandbox, then the count is read. Two values of P
give the cost of a request and of a piece apart (a straight line through the
two).

Instructions are not time: a cache miss or a system call costs more than
either count shows, and the kernel's share (the socket writes) is not counted
at all. Compare counts of one machine, Python and valgrind only.

    python benchmarks/bench_instructions.py [--requests 200] [--clients 10]
        [--pieces 20,200] [--format chat] [--repeat 1]

Needs valgrind (`apt-get install -y valgrind`). To count another tree of the
project, put its `src` first on `PYTHONPATH`: the sandbox and the server are
started from whatever `koala_chat` imports.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

import bench_server
from bench_server import (
    FORMATS,
    Result,
    Served,
    free_port,
    one_stream,
    process,
    wait_listening,
)

#: How long the server may take to listen under valgrind (imports are slow).
START_SECONDS = 300.0


def count(api: Served, requests: int, clients: int, pieces: int) -> int:
    """Return the instructions the server executed for `requests` requests."""
    sandbox_port, server_port = free_port(), free_port()
    sandbox_argv = [
        "-m", "koala_chat.sandbox", "--port", str(sandbox_port),
        "--pieces", str(pieces), "--interval", "0",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as folder:
        out = Path(folder) / "callgrind.out"
        server_argv = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable, "-m", "koala_chat.server", "--port", str(server_port),
            "--quiet", "--endpoint", f"http://127.0.0.1:{sandbox_port}/api/gpt/",
            "--retries", "0", "--max-streams", "5000",
        ]  # fmt: skip
        with process(sandbox_argv, sandbox_port):
            server = subprocess.Popen(
                server_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_listening(server_port, server, START_SECONDS)
                url = f"http://127.0.0.1:{server_port}{api.path}"
                asyncio.run(_load(server.pid, url, api, requests, clients, pieces))
            finally:
                server.terminate()
                server.wait(60)
        return _total(out)


async def _load(
    pid: int, url: str, api: Served, requests: int, clients: int, pieces: int
) -> None:
    bench_server.PIECES = pieces  # what one_stream expects of each reply
    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def streams(count: int, result: Result) -> None:
            left = count

            async def client() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await one_stream(
                        session, url, api.body, api.overhead, result, api.separator
                    )

            await asyncio.gather(*(client() for _ in range(clients)))
            if result.errors:
                raise SystemExit(f"bench_instructions: {result.errors} bad streams")

        await streams(2 * clients, Result())
        _control(pid, "--instr=on")
        await streams(requests, Result())
        _control(pid, "--instr=off")
        _control(pid, "--dump")


def _control(pid: int, command: str) -> None:
    subprocess.run(
        ["callgrind_control", command, str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _total(out: Path) -> int:
    """Return the instructions of callgrind's dump (the file `--dump` wrote)."""
    dumps = sorted(out.parent.glob(out.name + ".*"))
    if not dumps:
        raise SystemExit("bench_instructions: callgrind wrote no dump")
    for line in dumps[-1].read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"bench_instructions: no total in {dumps[-1].name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--pieces", default="20,200", help="two piece counts")
    parser.add_argument("--format", default="chat", choices=sorted(FORMATS))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("needs valgrind: apt-get install -y valgrind")
    few, many = (int(p) for p in args.pieces.split(","))
    api = FORMATS[args.format]
    import koala_chat

    tree = Path(koala_chat.__file__).parents[2]
    print(
        f"bench_instructions: {tree}, Python {sys.version.split()[0]}, "
        f"aiohttp {aiohttp.__version__}, format {args.format}, "
        f"{args.requests} requests at C={args.clients}"
    )
    print(f"instr/request at {few} | at {many} | per request | per piece")
    for _ in range(args.repeat):
        low = count(api, args.requests, args.clients, few)
        high = count(api, args.requests, args.clients, many)
        per_piece = (high - low) / (args.requests * (many - few))
        per_request = low / args.requests - few * per_piece
        print(
            f"{low / args.requests:>14,.0f} | {high / args.requests:>9,.0f}"
            f" | {per_request:>11,.0f} | {per_piece:>9,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
