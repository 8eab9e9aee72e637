"""A pytest plugin: test code that calls Koala against answers recorded once.

pytest loads it through the `pytest11` entry point of the installed package.
A test that uses the `koala_cassette` fixture, or carries the
`koala_cassette` marker, runs with `KOALA_API_ENDPOINT` pointed at a local
sandbox (`koala_chat.sandbox`) that answers from the test's cassette, so the
code under test reaches the network never:

    @pytest.mark.koala_cassette("cassettes/headline.jsonl")
    def test_headline() -> None:
        assert headline("...") == "..."

`pytest --koala-record` records the cassettes afresh instead: each one is
emptied, and the sandbox passes every request on to the upstream (the
`--koala-upstream` URL, else the `KOALA_API_ENDPOINT` set before the test,
else koala.sh), streams the answer back, and appends the exchange, scrubbed of
keys and cookies. Commit the cassettes; CI replays them.

The marker's path is relative to the test file's folder; without one the
cassette is `cassettes/<test file>/<test name>.jsonl` beside the test file.
Its keyword `timing=True` replays at the recorded pace; `scrub=[...]` adds
patterns to scrub (the recorder's `--scrub`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .defaults import API_ENDPOINT, ENDPOINT_VARIABLE

if TYPE_CHECKING:
    from .sandbox import RecordedRequest, Sandbox

__all__ = ["KoalaCassette", "koala_cassette"]

_MARKER = "koala_cassette"
#: How long a test's end waits for the last exchange to reach the cassette.
_RECORD_TIMEOUT = 10.0


@dataclass(frozen=True)
class KoalaCassette:
    """What the `koala_cassette` fixture gives a test.

    `path` is the cassette, `recording` whether it is being recorded, and
    `sandbox` the server `KOALA_API_ENDPOINT` points at (its `api_endpoint`).
    """

    path: Path
    recording: bool
    sandbox: Sandbox

    @property
    def api_endpoint(self) -> str:
        """The sandbox's API URL, the value of `KOALA_API_ENDPOINT` in the test."""
        return self.sandbox.api_endpoint

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests the sandbox received during the test, in order."""
        return self.sandbox.requests


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add `--koala-record`, `--koala-upstream` and `--koala-proxy`."""
    group = parser.getgroup("koala", "Koala cassettes (koala_chat)")
    group.addoption(
        "--koala-record",
        action="store_true",
        help="record the koala_cassette tests' cassettes afresh from the upstream",
    )
    group.addoption(
        "--koala-upstream",
        metavar="URL",
        help=f"the endpoint to record from (default: ${ENDPOINT_VARIABLE}, "
        f"else {API_ENDPOINT})",
    )
    group.addoption(
        "--koala-proxy",
        metavar="URL",
        help="reach the upstream through this proxy while recording",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the `koala_cassette` marker."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(path=None, *, timing=False, scrub=()): answer the test's "
        "Koala requests from the cassette at path (relative to the test file); "
        "pytest --koala-record records it",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test with the marker the fixture, requested or not."""
    for item in items:
        names = getattr(item, "fixturenames", None)
        wants = item.get_closest_marker(_MARKER) is not None
        if wants and names is not None and _MARKER not in names:
            names.append(_MARKER)


@pytest.fixture
def koala_cassette(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KoalaCassette]:
    """Run the test against a sandbox that replays (or records) its cassette."""
    from .sandbox import Sandbox
    from .sandbox.recorder import Recorder
    from .sandbox.replayer import Replayer
    from .sandbox.responder import Responder

    marker = request.node.get_closest_marker(_MARKER)
    args = marker.args if marker else ()
    kwargs = marker.kwargs if marker else {}
    path = _cassette_path(request, args[0] if args else kwargs.get("path"))
    scrub = [re.compile(pattern) for pattern in kwargs.get("scrub", ())]
    recording = bool(request.config.getoption("koala_record"))
    responder: Responder
    if recording:
        upstream = (
            request.config.getoption("koala_upstream")
            or os.environ.get(ENDPOINT_VARIABLE)
            or API_ENDPOINT
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        proxy = request.config.getoption("koala_proxy")
        responder = Recorder(path, upstream, proxy=proxy, scrub=scrub)
    elif not path.is_file():
        pytest.fail(
            f"no Koala cassette {path}: record it once with pytest --koala-record",
            pytrace=False,
        )
    else:
        responder = Replayer(path, timing=bool(kwargs.get("timing")), scrub=scrub)
    with Sandbox(responder=responder) as sandbox:
        monkeypatch.setenv(ENDPOINT_VARIABLE, sandbox.api_endpoint)
        try:
            yield KoalaCassette(path, recording, sandbox)
        finally:
            # An answer's end may still be on its way to the cassette.
            if not responder.wait_recorded(_RECORD_TIMEOUT):
                pytest.fail(f"the cassette {path} was not written in time")
            # Shown with a failure: which requests the cassette lacked, and why.
            misses = getattr(responder, "misses", [])
            if misses:
                request.node.add_report_section(
                    "teardown", "koala_cassette", "\n".join(misses)
                )


def _cassette_path(request: pytest.FixtureRequest, given: object) -> Path:
    """The cassette's path: the marker's, relative to the test file's folder."""
    folder = request.path.parent
    if given is None:
        return (
            folder
            / "cassettes"
            / request.path.stem
            / f"{_safe(request.node.name)}.jsonl"
        )
    if not isinstance(given, str | os.PathLike):
        raise pytest.UsageError(
            f"{_MARKER} takes the cassette's path, not {type(given).__name__}"
        )
    return folder / os.fspath(given)


def _safe(name: str) -> str:
    """A test's name as a file name: parameters' punctuation replaced."""
    return re.sub(r"[^\w.-]+", "_", name)
