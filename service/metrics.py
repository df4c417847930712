"""Prometheus metrics of one app: its own registry (no process-wide globals), an ASGI middleware that
counts and times requests by route template, and a collector that reports searches by state from the
database at scrape time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import repository as repo

log = logging.getLogger("evonorm_search.service.metrics")

# Latency buckets from 1 ms to 10 s: the API's reads should land in the first few.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
UNMATCHED = "<unmatched>"  # one label for every unknown path, so clients cannot inflate the label set


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "evonorm_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "evonorm_http_request_duration_seconds",
            "Time to answer HTTP requests (to the end of the body), by method and route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.event_streams = Gauge(
            "evonorm_event_streams", "Server-sent event streams open now.", registry=self.registry
        )
        self.launches = Counter(
            "evonorm_search_launches", "Searches this server started or resumed.", ["kind"], registry=self.registry
        )

    def watch_store(self, store: Callable[[], repo.Store]) -> None:
        """Report searches by state and database reachability, read at every scrape."""
        self.registry.register(_StoreCollector(store))


class _StoreCollector(Collector):
    def __init__(self, store: Callable[[], repo.Store]) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("evonorm_database_up", "1 when the Pareto database answered the last scrape.")
        by_state = GaugeMetricFamily("evonorm_searches", "Searches in the database, by state.", labels=["state"])
        try:
            with self._store().session(readonly=True) as s:
                counts = repo.count_searches_by_state(s)
        except repo.StoreError as e:
            log.warning("metrics: database unavailable: %s", e)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        for state, count in counts.items():
            by_state.add_metric([str(state)], float(count))
        yield up
        yield by_state

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected lazily: never touch the database when the collector is registered


class MetricsMiddleware:
    """Counts and times every HTTP request under the route template it matched (`/api/v1/searches/{search_id}`).

    Pure ASGI (no BaseHTTPMiddleware), so streaming responses pass through untouched; a stream is timed
    to its end.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _route_template(scope.get("route"))
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def _route_template(route: BaseRoute | None) -> str:
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
