"""`GET /metrics`: the server's series in the Prometheus text format.

Every series is named `koala_...`; the README's section "Metrics" lists them
with their labels. They are counted once per request, at its end
(`observe.observe_middleware` calls `Metrics.record`, and
`observe.count_limited` for a 429), never per piece: a
stream's pieces are added up as one number. The gauge of streams in progress
is the exception, moved when a request is admitted and when it leaves
(`state.Admission`).

Labels hold names, never secrets or text a client chose freely: the key's
name (`middleware.key_name`, "-" for none), the wire format, a model the
server knows (any other is "other"), a status, a reason or cause from a short
list.

Several workers (`koala serve --workers N`) share one directory of counts
(`shared_across_processes`), prometheus_client's multiprocess mode: a scrape
that any worker answers sums them all. The series of one process live in a
registry of its app's own, so that two apps in one process (tests) count
apart.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Final, Generic, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from .._contract.capabilities import Capabilities
from .._contract.usage import tokens_for_length
from ..defaults import IMAGE_MODELS
from .streaming import RequestLog

__all__ = [
    "METRICS_KEY",
    "MULTIPROCESS_VARIABLE",
    "PATH",
    "Metrics",
    "add_metrics",
    "known_models",
    "shared_across_processes",
]

#: The route of the scrape.
PATH: Final = "/metrics"

#: Where prometheus_client keeps the counts of several processes.
MULTIPROCESS_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"

#: The label of a model the server does not list (a provider that passes
#: unknown names through): a client must not be able to make a series per name.
OTHER_MODEL: Final = "other"

#: The buckets of the time to first piece, in seconds: from a local sandbox's
#: milliseconds to an upstream that thinks for a minute.
FIRST_PIECE_BUCKETS: Final = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


_Metric = TypeVar("_Metric", bound=MetricWrapperBase)


class _Children(Generic[_Metric]):
    """The labelled series of one metric, each looked up once.

    prometheus_client's `labels` checks and joins its arguments on every
    call, most of what recording a request cost; the children it returns are
    kept here by their labels. Their number is bounded as the labels are.
    """

    __slots__ = ("_made", "_metric")

    def __init__(self, metric: _Metric) -> None:
        self._metric = metric
        self._made: dict[tuple[str, ...], _Metric] = {}

    def __call__(self, *labels: str) -> _Metric:
        """Return the series of `labels`."""
        try:
            return self._made[labels]
        except KeyError:
            child = self._made[labels] = self._metric.labels(*labels)
            return child


class Metrics:
    """The series of one app, and what one finished request adds to them."""

    def __init__(self, models: Iterable[str], registry: CollectorRegistry) -> None:
        #: The models a label may name; any other is `OTHER_MODEL`.
        self.models = frozenset(models)
        self.registry = registry
        self.requests = Counter(
            "koala_requests",
            "Completion and image requests, by the status of their answer.",
            ("format", "model", "status", "key_name"),
            registry=registry,
        )
        self.first_piece = Histogram(
            "koala_first_piece_seconds",
            "Time from a streamed request to its first piece of reply.",
            ("format", "model"),
            buckets=FIRST_PIECE_BUCKETS,
            registry=registry,
        )
        self.pieces = Counter(
            "koala_pieces",
            "Pieces of reply text sent (images, for the images route).",
            ("format", "model", "key_name"),
            registry=registry,
        )
        self.tokens = Counter(
            "koala_estimated_tokens",
            "Tokens estimated at four characters each: input (the messages) "
            "and output (the reply).",
            ("format", "model", "key_name", "type"),
            registry=registry,
        )
        self.upstream_failures = Counter(
            "koala_upstream_failures",
            "Requests the upstream failed, by reason.",
            ("format", "model", "reason"),
            registry=registry,
        )
        self.limited = Counter(
            "koala_rate_limited",
            "Requests answered 429, by cause.",
            ("cause", "key_name"),
            registry=registry,
        )
        self.active = Gauge(
            "koala_active_streams",
            "Requests in progress that count against --max-streams.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._requests = _Children(self.requests)
        self._first_piece = _Children(self.first_piece)
        self._pieces = _Children(self.pieces)
        self._tokens = _Children(self.tokens)
        self._upstream_failures = _Children(self.upstream_failures)
        self._limited = _Children(self.limited)

    def model(self, name: str | None) -> str:
        """Return the label of the model `name` ("-" for none yet)."""
        if not name:
            return "-"
        return name if name in self.models else OTHER_MODEL

    def record(self, log: RequestLog, status: int, key: str) -> None:
        """Add one finished request, answered `status`, made with key `key`."""
        fmt = log.format
        model = self.model(log.model)
        self._requests(fmt, model, str(status), key).inc()
        if log.stream and log.first_piece is not None:
            self._first_piece(fmt, model).observe(log.first_piece - log.started)
        if log.pieces:
            self._pieces(fmt, model, key).inc(log.pieces)
        if log.input_tokens:
            self._tokens(fmt, model, key, "input").inc(log.input_tokens)
        if log.chars:
            output = tokens_for_length(log.chars)
            self._tokens(fmt, model, key, "output").inc(output)
        if log.error is not None:
            self._upstream_failures(fmt, model, log.error).inc()

    def count_limited(self, cause: str, key: str) -> None:
        """Count one 429 answer, for `cause`, to a request made with `key`."""
        self._limited(cause, key).inc()


#: Where an app keeps its `Metrics`.
METRICS_KEY: Final = web.AppKey("koala_chat.metrics", Metrics)


def known_models(capabilities: Capabilities) -> frozenset[str]:
    """Return the models a label may name: those of every dialect, the images'."""
    names = {name for each in capabilities.model_sets.values() for name in each.models}
    return frozenset(names | set(IMAGE_MODELS))


def add_metrics(app: web.Application, models: Iterable[str]) -> Metrics:
    """Give `app` its series and the route `GET /metrics`; return the series.

    `models` are the names a model label may hold. Under several workers the
    route answers with the counts of all of them.
    """
    metrics = Metrics(models, CollectorRegistry())
    app[METRICS_KEY] = metrics
    if MULTIPROCESS_VARIABLE in os.environ:
        scraped = CollectorRegistry()
        # prometheus_client leaves these two untyped.
        MultiProcessCollector(scraped)  # type: ignore[no-untyped-call]
    else:
        scraped = metrics.registry
    app.router.add_get(PATH, make_aiohttp_handler(scraped))
    return metrics


@contextmanager
def shared_across_processes() -> Iterator[str]:
    """Keep the counts of the processes forked in the block in one directory.

    Yields the directory, a fresh temporary one (removed at the end, with
    the counts), named in `PROMETHEUS_MULTIPROC_DIR` for the processes.
    Fork them inside the block, after this process made no series of its own.
    """
    previous = os.environ.get(MULTIPROCESS_VARIABLE)
    with tempfile.TemporaryDirectory(prefix="koala-metrics-") as directory:
        os.environ[MULTIPROCESS_VARIABLE] = directory
        # prometheus_client chooses where values live when it is imported,
        # from the variable; it was imported before anyone knew there would
        # be workers, so it chooses again.
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        try:
            yield directory
        finally:
            if previous is None:
                del os.environ[MULTIPROCESS_VARIABLE]
            else:
                os.environ[MULTIPROCESS_VARIABLE] = previous
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
