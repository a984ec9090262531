"""GET /metrics in Prometheus' text format, from a registry that belongs to one app.

Requests and their durations are counted by a middleware; tokens and time to first token
by the app's Generations (owl/server/generations.py); queue depth and slot use are read
from the generating models' occupancy when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from owl.engine import Occupancy

router = APIRouter()
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
UNMATCHED = "unmatched"  # the route label of requests no route took: bounded, unlike paths


class Metrics:
    """The app's counters and histograms; two apps in one process share none of them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "owl_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "owl_request_duration_seconds",
            "Time from a request's arrival to the end of its response (streams included).",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "owl_prompt_tokens",
            "Prompt tokens of finished generations.",
            ["model"],
            registry=self.registry,
        )
        self.completion_tokens = Counter(
            "owl_completion_tokens",
            "Generated tokens of finished generations.",
            ["model"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "owl_time_to_first_token_seconds",
            "Time from a request's arrival to its first generated text.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )

    def watch(self, occupancy: Callable[[], Mapping[str, Occupancy]]) -> None:
        """Report the slots and queues that `occupancy()` gives, by model, at each scrape."""
        self.registry.register(_SlotCollector(occupancy))

    def first_token(self, model: str, seconds: float) -> None:
        self.ttft.labels(model=model).observe(seconds)

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        self.prompt_tokens.labels(model=model).inc(prompt)
        self.completion_tokens.labels(model=model).inc(completion)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _SlotCollector:
    """Gauges read when scraped: slots total and busy, and requests waiting, per model."""

    def __init__(self, occupancy: Callable[[], Mapping[str, Occupancy]]) -> None:
        self.occupancy = occupancy

    def describe(self) -> list[Metric]:
        return []  # the gauges' labels are only known at scrape time

    def collect(self) -> Iterator[Metric]:
        total = GaugeMetricFamily("owl_slots_total", "Generation slots.", labels=["model"])
        busy = GaugeMetricFamily("owl_slots_busy", "Slots generating.", labels=["model"])
        queue = GaugeMetricFamily(
            "owl_queue_depth", "Generations waiting for a slot.", labels=["model"]
        )
        for name, occupancy in sorted(self.occupancy().items()):
            total.add_metric([name], occupancy.slots)
            busy.add_metric([name], occupancy.running)
            queue.add_metric([name], occupancy.waiting)
        yield from (total, busy, queue)


class MetricsMiddleware:
    """Counts every response by route template and status, and times it to its last byte."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        scope.setdefault("state", {})["started"] = started  # request.state.started
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)
            self.metrics.requests.labels(route=route, status=str(status)).inc()
            self.metrics.duration.labels(route=route).observe(time.monotonic() - started)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.text(), media_type=CONTENT_TYPE_LATEST)
