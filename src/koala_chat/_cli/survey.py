"""`koala check --all`: one request in every dialect, and which one to use.

Each dialect is tried once, in the order of docs/protocol.md ("Choosing a
dialect"): history, messages, then api, which costs the account a credit and is
tried only when a key is configured. Each request is `probe.probe` with the
protocol set, so a row says exactly what `koala check --protocol X` would.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Final

from .. import defaults
from ..providers import HTTPProvider
from ..providers.dialects import SHAPE_REJECTED_STATUSES
from .exits import ExitCode
from .hints import Situation
from .options import Connection
from .probe import Probe, milliseconds, probe

__all__ = ["SKIPPED", "Survey", "setting", "survey"]


#: The verdict of the api row without a key: nothing is sent.
SKIPPED: Final = f"skipped: no key ({defaults.API_KEY_VARIABLE} or --api-key-file)"


def setting(dialect: str) -> str:
    """Return the environment setting that selects `dialect`."""
    return f"{defaults.PROTOCOL_VARIABLE}={dialect}"


class Survey:
    """The rows of `koala check --all`, one per dialect, in `defaults.DIALECT_NAMES`."""

    def __init__(self, endpoint: str, rows: list[tuple[str, Probe | None]]) -> None:
        self.endpoint = endpoint
        self.rows = rows

    @property
    def use(self) -> str | None:
        """The first dialect that works, or None."""
        return next((d for d, row in self.rows if row is not None and row.works), None)

    @property
    def exit_code(self) -> int:
        """0 when a dialect works, else the code of the most telling failure.

        A refusal of the request's shape (400, 404, 405, 415, 422) only says
        that this is not the endpoint's dialect; any other failure (a rate
        limit, a challenge, a bad key, a broken stream) says more about the
        endpoint, and the first such in `defaults.DIALECT_NAMES` wins.
        """
        if self.use is not None:
            return ExitCode.OK
        return self._most_telling().exit_code

    def to_json(self) -> dict[str, object]:
        """Return the JSON object of `--all --json`: a row per dialect."""
        use = self.use
        return {
            "endpoint": self.endpoint,
            "works": use is not None,
            "use": use,
            "setting": setting(use) if use else None,
            "exit_code": self.exit_code,
            "dialects": [self._row_json(d, row) for d, row in self.rows],
        }

    def _row_json(self, dialect: str, row: Probe | None) -> dict[str, object]:
        verdict = _verdict(row)
        if row is None:
            return {
                "dialect": dialect,
                "status": None,
                "first_piece_seconds": None,
                "verdict": verdict,
                "setting": setting(dialect),
                "works": False,
                "skipped": True,
            }
        # The endpoint is the survey's; the dialect and protocol are the row's.
        left_out = ("endpoint", "protocol", "dialect")
        fields = {k: v for k, v in asdict(row).items() if k not in left_out}
        return {
            "dialect": dialect,
            "verdict": verdict,
            "setting": setting(dialect),
            "skipped": False,
            **fields,
        }

    def table(self) -> str:
        """Return the human-readable table and what to set."""
        head = ("dialect", "status", "first piece", "verdict", "setting")
        lines = [head]
        for dialect, row in self.rows:
            status = "-" if row is None or row.status is None else str(row.status)
            piece = "-" if row is None else milliseconds(row.first_piece_seconds)
            lines.append((dialect, status, piece, _verdict(row), setting(dialect)))
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        text = [
            "  ".join(
                cell.ljust(w) for cell, w in zip(line, widths, strict=True)
            ).rstrip()
            for line in lines
        ]
        text.append("")
        text.append(f"endpoint: {self.endpoint}")
        use = self.use
        if use is not None:
            text.append(f"use:      {setting(use)} (or --protocol {use})")
        else:
            text.append("use:      none of the dialects works")
        for dialect, row in self.rows:
            if row is not None and not row.works and row.error:
                text.append(f"{dialect}: {row.error}")
        step = self.next_step
        if step is not None:
            text.append(f"next step: {step}")
        return "\n".join(text) + "\n"

    @property
    def next_step(self) -> str | None:
        """What to do when no dialect works: the most telling failure's step."""
        if self.use is not None:
            return None
        return self._most_telling().next_step

    def _most_telling(self) -> Probe:
        """The failure that says most about the endpoint (see `exit_code`)."""
        tried = [row for _, row in self.rows if row is not None]
        telling = [row for row in tried if row.status not in SHAPE_REJECTED_STATUSES]
        return (telling or tried)[0]


#: The verdict of a row whose request shape the endpoint refused: it speaks
#: another dialect (docs/protocol.md, "Choosing a dialect").
NOT_THIS_DIALECT = "not this dialect"


def _verdict(row: Probe | None) -> str:
    if row is None:
        return SKIPPED
    if row.works:
        return "works"
    if row.status in SHAPE_REJECTED_STATUSES:
        return NOT_THIS_DIALECT
    return row.reason or "error"


async def survey(
    provider: type[HTTPProvider],
    connection: Connection,
    prompt: str,
    situation: Situation | None = None,
) -> Survey:
    """Try every dialect once (api only with a key); return the rows.

    `situation` is the command line's, for the next step of each failure.

    The key is given to the api dialect only.

    Raises:
        UsageError: a bad endpoint, proxy or model, before any request.
    """
    endpoint = ""
    rows: list[tuple[str, Probe | None]] = []
    for dialect in defaults.DIALECT_NAMES:
        if dialect == "api" and connection.api_key is None:
            rows.append((dialect, None))
            continue
        key = connection.api_key if dialect == "api" else None
        result = await probe(
            provider,
            connection._replace(protocol=dialect, api_key=key),
            prompt,
            situation,
        )
        endpoint = result.endpoint
        rows.append((dialect, result))
    return Survey(endpoint, rows)
