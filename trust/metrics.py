"""Prometheus metrics of a service and its `GET /metrics` endpoint (docs/operations.md).

Each service defines its own metrics in its `metrics.py` on prometheus-client's process-wide
registry; a service whose figures live in an object (a database, an inspection) adds a collector
of its own to its endpoint. Labels name routes by template, flows, outcomes, priorities and
rules, never a customer, a number or a conversation.

Who may read: the monitoring system, with `Authorization: Bearer $METRICS_TOKEN`, compared in
constant time; without the setting no one (401), so a forgotten token leaves metrics off rather
than open.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from trust.asgi import ASGIApp, BearerGate, Message, Receive, Scope, Send
from trust.env_secrets import optional_secret

METRICS_PATH = "/metrics"
METRICS_TOKEN_ENV = "METRICS_TOKEN"
UNMATCHED_ROUTE = "unmatched"  # every path no route knows: one label, whatever a client sends
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Up to a long-poll's answer (the desk's relay waits up to 25 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter("ivr_http_requests_total", "HTTP requests answered, by route template and status",
                        ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram("ivr_http_request_duration_seconds",
                         "Time from a request's arrival to its response's start (a stream's first byte)",
                         ["service", "route"], buckets=LATENCY_BUCKETS)


def metrics_token(env: Mapping[str, str] = os.environ) -> str | None:
    """METRICS_TOKEN, held to the rules of every secret (trust/env_secrets.py); None: unset."""
    return optional_secret(METRICS_TOKEN_ENV, env)


class _ProcessMetrics:
    """The process-wide registry seen through a service's own registry."""

    def collect(self) -> Iterable[Any]:
        return REGISTRY.collect()


def service_registry(collectors: Sequence[Collector] = ()) -> CollectorRegistry:
    """The process's metrics plus a service's own collectors, for one endpoint."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics())  # type: ignore[arg-type]
    for collector in collectors:
        registry.register(collector)
    return registry


def route_of(scope: Scope) -> str:
    """The template of the route that took the request (`/customers/{customer_id}`), never its
    path; read once routing is done. A request no route took (an unknown path, a refusal before
    routing such as a 401 or a 413) is `unmatched`."""
    route = scope.get("route")  # set by FastAPI's router on a match
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if template:
        return str(template)
    mounted = str(scope.get("root_path", ""))[len(str(scope.get("app_root_path", ""))):]  # a Mount's prefix
    return f"{mounted}/{{path}}" if mounted else UNMATCHED_ROUTE


class MetricsEndpoint:
    """Outermost ASGI layer of a FastAPI service: answers `GET /metrics` itself (behind its own
    bearer gate, before the service's gates and size limits) and times every other request by
    route template. `app.add_middleware(MetricsEndpoint, service=..., token=...)` last."""

    def __init__(self, app: ASGIApp, service: str, token: str | None,
                 collectors: Sequence[Collector] = (), clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.service = service
        self.clock = clock
        self.registry = service_registry(collectors)
        self.gate = BearerGate(self._exposition, tokens=[token] if token else [], open_paths=(),
                               refusal={"detail": "metrics need the monitoring token"})

    async def _exposition(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 405,
                        "headers": [(b"allow", b"GET"), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        # Off the event loop: a collector may ask a database.
        body = await asyncio.to_thread(generate_latest, self.registry)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH:
            await self.gate(scope, receive, send)
            return
        started = self.clock()
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = route_of(scope)
                HTTP_LATENCY.labels(self.service, route).observe(self.clock() - started)
                HTTP_REQUESTS.labels(self.service, method, route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, timed_send)
