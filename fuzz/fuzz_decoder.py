"""Coverage-guided fuzz target for the event-stream decoder.

Each input is cut into a size limit, split points and a byte stream. The stream
goes through both layers of the decoder (`koala_chat._sse.SSEDecoder` and
`koala_chat._jsonstream.JSONValueDecoder`, the core of `Koala._parse_event_stream`)
once whole and once in the chunks the split points give. The target fails when

- anything but a `ProtocolError` escapes the decoder, or
- the chunked run gives other events, values or error than the whole run
  (any split of a stream into chunks gives the same events).

Run it with `fuzz/run.sh SECONDS` (needs `pip install atheris`); it is not part
of CI. Any other argument is passed to libFuzzer, for instance a crash file to
replay it.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import sys
from collections.abc import Sequence

import atheris

with atheris.instrument_imports():
    from koala_chat._jsonstream import JSONValueDecoder
    from koala_chat._sse import SSEDecoder
    from koala_chat.errors import ProtocolError

# What one run of a decoder gives: its outputs in order, then the name of the
# error that ended it (or None).
Outcome = tuple[list[object], str | None]

SEEDS: tuple[bytes, ...] = (
    b'data: "Hello"\n\ndata: " world"\n\n',
    b'data: {"text": "Hi"}\r\n\r\ndata: [DONE]\r\n\r\n',
    b"\xef\xbb\xbfdata:1\rdata:2\r\r: comment\nid: 7\nretry: 10\nevent: x\ndata\n\n",
    b'data: "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xa8"\n\ndata: "\xff\xfe"\n\n',
    b'data: [1, 2\ndata: , 3]\n\ndata: {"cut',
    b"data: " + b"[" * 300 + b"]" * 300 + b"\n\n",
)


def split(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    """Return `stream` cut at the given offsets (sorted, clipped to its length)."""
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def run_sse(chunks: Sequence[bytes], limit: int) -> Outcome:
    """Decode `chunks` with SSEDecoder; return the events and the error, if any."""
    decoder = SSEDecoder(max_event_size=limit)
    events: list[object] = []
    try:
        for chunk in chunks:
            events.extend(decoder.feed(chunk))
        last = decoder.close()
    except ProtocolError as exc:
        return events, type(exc).__name__
    if last is not None:
        events.append(last)
    return events, None


def run_json(chunks: Sequence[bytes], limit: int) -> Outcome:
    """Decode `chunks` as Koala values; return their reprs and the error, if any."""
    decoder = JSONValueDecoder(max_event_size=limit)
    values: list[object] = []
    try:
        for chunk in chunks:
            # repr, since NaN (which the standard library parses) is not == NaN.
            values.extend(map(repr, decoder.feed(chunk)))
            if decoder.done:
                break
        values.extend(map(repr, decoder.close()))
    except ProtocolError as exc:
        return values, type(exc).__name__
    return values, None


def test_one_input(data: bytes) -> None:
    """Check both decoders on one fuzzer input; raise AssertionError on a finding."""
    provider = atheris.FuzzedDataProvider(data)
    limit = provider.ConsumeIntInRange(1, 512)
    cuts = provider.ConsumeIntListInRange(provider.ConsumeIntInRange(0, 12), 0, 4096)
    stream = provider.ConsumeBytes(provider.remaining_bytes())
    chunks = split(stream, cuts)
    for run in (run_sse, run_json):
        whole = run([stream], limit)
        pieces = run(chunks, limit)
        single = run([stream[i : i + 1] for i in range(len(stream))], limit)
        assert whole == pieces == single, (run.__name__, limit, chunks, whole, pieces)


def write_seeds(directory: str) -> None:
    """Put the seed inputs into an empty corpus directory."""
    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        return
    for number, seed in enumerate(SEEDS):
        # Bytes for the limit and the cut count come first, as they are read.
        (path / f"seed-{number}").write_bytes(b"\xff\x00\x00\x00" + seed)


def main(argv: list[str]) -> None:
    """Seed the corpus directories named in `argv`, then hand over to libFuzzer."""
    for arg in argv[1:]:
        if not arg.startswith("-") and not os.path.isfile(arg):
            write_seeds(arg)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
