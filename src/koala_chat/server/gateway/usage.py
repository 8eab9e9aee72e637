"""Usage per key and day: what each request adds, and the summary `koala usage` shows.

The backends keep plain counters per (key, day), which add up across
processes and servers: requests, limited (429s), errors (other statuses of
400 and up, and replies that broke after they started), pieces, and the
estimated tokens in and out (the estimate of `koala_chat._contract.usage`:
Koala counts no tokens). The time to first piece
is kept as a histogram in the same counters, `ttfp:B` for bucket B, whose
edges grow by 2 ** (1/8) (9 %): the median read from it is within 5 % of the
true one, and the counts stay a few dozen per day whatever the traffic.
Pure: no I/O.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Final

from .backends import Counts

__all__ = [
    "COUNTERS",
    "UsageBuffer",
    "UsageRow",
    "request_counts",
    "summarise",
    "table",
    "today",
]

#: The plain counters, in the order `koala usage` shows them.
COUNTERS: Final = (
    "requests",
    "limited",
    "errors",
    "pieces",
    "tokens_in",
    "tokens_out",
)

_TTFP: Final = "ttfp:"
#: Buckets per doubling of the time to first piece.
_STEPS: Final = 8


def today(now: float | None = None) -> str:
    """Return the UTC day of `now` (default: now), as YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def _bucket(seconds: float) -> int:
    """Return the histogram bucket of a time to first piece (ms, log scale)."""
    milliseconds = max(seconds * 1000, 1.0)
    return math.ceil(_STEPS * math.log2(milliseconds))


def _bucket_ms(bucket: int) -> float:
    """Return the middle of `bucket` (log scale), in milliseconds."""
    return 2 ** ((bucket - 0.5) / _STEPS) if bucket > 0 else 1.0


def request_counts(
    status: int,
    *,
    pieces: int = 0,
    tokens_in: int = 0,
    tokens_out: int = 0,
    ttfp: float | None = None,
    failed: bool = False,
) -> dict[str, int]:
    """Return what one finished request with `status` adds to its key's day.

    `failed`: the reply broke after its start (the status was 200 by then).
    """
    counts = {"requests": 1, "pieces": pieces}
    if status == 429:
        counts["limited"] = 1
    elif status >= 400 or failed:
        counts["errors"] = 1
    if tokens_in:
        counts["tokens_in"] = tokens_in
    if tokens_out:
        counts["tokens_out"] = tokens_out
    if ttfp is not None:
        counts[f"{_TTFP}{_bucket(ttfp)}"] = 1
    return counts


class UsageBuffer:
    """The counts of finished requests not yet written to the state.

    `note` is cheap and never awaits (it runs as a request ends, also when
    the request was cancelled); the gateway writes `take()` now and then in
    one transaction, and `give_back` what could not be written.
    """

    __slots__ = ("_counts",)

    #: The most (key, day) pairs held while the state cannot be reached.
    LIMIT: Final = 10_000

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], Counter[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._counts)

    def note(
        self, name: str, counts: Mapping[str, int], day: str | None = None
    ) -> None:
        """Add `counts` of a request of key `name` (on `day`, default today)."""
        place = (name, day or today())
        held = self._counts.get(place)
        if held is None:
            if len(self._counts) >= self.LIMIT:
                return
            held = self._counts[place] = Counter()
        held.update(counts)

    def take(self) -> dict[tuple[str, str], Counter[str]]:
        """Return the counts held and forget them."""
        counts, self._counts = self._counts, {}
        return counts

    def give_back(self, counts: Mapping[tuple[str, str], Mapping[str, int]]) -> None:
        """Hold `counts` again (writing them failed)."""
        for (name, day), values in counts.items():
            self.note(name, values, day)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One key's usage on one day, as `koala usage` shows it."""

    key: str
    day: str
    requests: int
    limited: int
    errors: int
    pieces: int
    tokens_in: int
    tokens_out: int
    #: The median time to first piece, in ms (None: no piece came).
    median_ttfp_ms: float | None

    def as_dict(self) -> dict[str, object]:
        """Return the row as JSON-ready data."""
        return asdict(self)


def summarise(counts: Counts) -> list[UsageRow]:
    """Return the rows of `counts`, by day, then key."""
    rows = []
    for (key, day), values in sorted(counts.items(), key=lambda item: item[0][::-1]):
        plain = {name: int(values.get(name, 0)) for name in COUNTERS}
        histogram = {
            int(name[len(_TTFP) :]): amount
            for name, amount in values.items()
            if name.startswith(_TTFP) and amount > 0
        }
        rows.append(UsageRow(key, day, **plain, median_ttfp_ms=_median(histogram)))
    return rows


def _median(histogram: Mapping[int, int]) -> float | None:
    """Return the middle of the bucket that holds the median; None when empty."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if 2 * seen >= total:
            return round(_bucket_ms(bucket), 1)
    raise AssertionError("unreachable: the buckets add up to the total")


_HEADINGS: Final = (*("key", "day"), *COUNTERS, "median_ttfp_ms")


def table(rows: Iterable[UsageRow]) -> str:
    """Return `rows` as an aligned text table with a heading line."""
    lines = [list(_HEADINGS)]
    for row in rows:
        ttfp = "-" if row.median_ttfp_ms is None else f"{row.median_ttfp_ms:g}"
        lines.append(
            [row.key, row.day, *(str(getattr(row, name)) for name in COUNTERS), ttfp]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADINGS))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )
