"""The sandbox's options for cassettes: `--record`, `--replay` and their company.

`add_cassette_arguments` adds them to the sandbox command's parser and
`responder_from` turns the parsed options into the responder they ask for
(docs/protocol.md, "Cassettes"). The standard library only at module level:
`koala --help` loads this module.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from .responder import Responder

__all__ = ["CASSETTE_EPILOG", "add_cassette_arguments", "responder_from"]

CASSETTE_EPILOG = """\
--record CASSETTE --upstream URL passes every request on to URL (through
--proxy) and streams its answer back as it arrives, appending each exchange to
CASSETTE (JSONL). Keys, cookies and Set-Cookie are never written; --scrub
REGEX removes more. --replay CASSETTE answers from it, byte for byte, and a
request it lacks gets a 404 naming the nearest recorded one;
--record-mode new records those instead (with --upstream).
"""


def _pattern(text: str) -> re.Pattern[str]:
    """Compile a `--scrub` pattern (an argparse `type`)."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {exc}") from None


def add_cassette_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the record and replay options to `parser`."""
    group = parser.add_argument_group("record and replay")
    modes = group.add_mutually_exclusive_group()
    modes.add_argument(
        "--record",
        metavar="CASSETTE",
        help="answer from --upstream and append each exchange to CASSETTE",
    )
    modes.add_argument(
        "--replay",
        metavar="CASSETTE",
        help="answer from CASSETTE; a request it lacks gets a 404",
    )
    group.add_argument(
        "--upstream",
        metavar="URL",
        help="the endpoint to record from (https://koala.sh/api/gpt/, say)",
    )
    group.add_argument(
        "--proxy",
        metavar="URL",
        help="reach the upstream through this proxy (http, https, socks4(a), "
        "socks5(h))",
    )
    group.add_argument(
        "--scrub",
        metavar="REGEX",
        action="append",
        type=_pattern,
        default=[],
        help="also replace what REGEX matches by *** in what is recorded "
        "(repeatable; give the same to --replay)",
    )
    group.add_argument(
        "--replay-timing",
        action="store_true",
        help="replay each answer at the pace it was recorded",
    )
    group.add_argument(
        "--record-mode",
        choices=("none", "new"),
        default="none",
        help="with --replay: new records what the cassette lacks from --upstream "
        "(none: answer 404)",
    )


def responder_from(args: argparse.Namespace) -> Responder | None:
    """Return the recorder or replayer the options ask for, or None.

    Raises:
        UsageError: options that do not go together, a bad URL or cassette.
        OSError: the cassette cannot be opened.
    """
    record: str | None = args.record
    replay: str | None = args.replay
    upstream: str | None = args.upstream
    if record is None and replay is None:
        for name, given in (
            ("--upstream", upstream),
            ("--proxy", args.proxy),
            ("--replay-timing", args.replay_timing),
            ("--scrub", args.scrub),
        ):
            if given:
                raise UsageError(f"{name} needs --record or --replay")
        if args.record_mode != "none":
            raise UsageError("--record-mode needs --replay")
        return None
    from .recorder import Recorder
    from .replayer import Replayer

    if record is not None:
        if args.replay_timing or args.record_mode != "none":
            raise UsageError("--replay-timing and --record-mode go with --replay")
        if upstream is None:
            raise UsageError("--record needs --upstream URL, the endpoint to record")
        return Recorder(record, upstream, proxy=args.proxy, scrub=args.scrub)
    assert replay is not None
    if args.record_mode == "new":
        if upstream is None:
            raise UsageError("--record-mode new needs --upstream URL")
        recorder = Recorder(replay, upstream, proxy=args.proxy, scrub=args.scrub)
        return Replayer(replay, timing=args.replay_timing, recorder=recorder)
    if upstream is not None or args.proxy:
        raise UsageError(
            "--replay never uses the network: --upstream and --proxy go with "
            "--record or --record-mode new"
        )
    return Replayer(replay, timing=args.replay_timing, scrub=args.scrub)
