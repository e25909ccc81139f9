"""`python -m quality`: the inspection service. It reads the event stream from its cursor, checks
every event against the rules, keeps a score per conversation and a live alert feed, and
serves them with the day's figures, on loopback.

GET /health (open), and with `Authorization: Bearer $QUALITY_API_TOKEN`:
/alerts?after=N, /conversations/{id}/score, /figures/daily.csv, /metrics (Prometheus text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse

from quality.figures import DailyFigures, daily_figures, figures_csv, prometheus_text
from quality.rules import RULES_PATH, FlowFacts, Hit, Inspector, load_rules
from quality.store import EventStore, SqlEventStore, events_url
from trust.asgi import BearerGate, BodyLimit
from trust.env_secrets import SecretError, require_secret

log = logging.getLogger("quality")

DEFAULT_PORT = 9095
TOKEN_ENV = "QUALITY_API_TOKEN"
MAX_BODY = 1024  # every route is a GET
ALERTS_KEPT = 1000
READ_BATCH = 1000
OPEN_PATHS = frozenset({"/health"})


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class QualitySettings:
    token: str = field(repr=False)
    events_url: str
    rules_path: Path = RULES_PATH
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    keep_days: int = 7
    poll_seconds: float = 0.5

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> QualitySettings:
        try:
            token = require_secret(TOKEN_ENV, env)
        except SecretError as error:
            raise SettingsError(f"{error} ({TOKEN_ENV}: the bearer token the desk and monitoring use)") from None
        port, keep = env.get("QUALITY_PORT", str(DEFAULT_PORT)), env.get("QUALITY_KEEP_DAYS", "7")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise SettingsError(f"QUALITY_PORT must be a port number, got {port!r}")
        if not keep.isdigit() or int(keep) < 1:
            raise SettingsError(f"QUALITY_KEEP_DAYS must be a whole number of days (1 or more), got {keep!r}")
        return cls(token=token, events_url=events_url(env), rules_path=Path(env.get("QUALITY_RULES") or RULES_PATH),
                   host=env.get("QUALITY_HOST", "127.0.0.1"), port=int(port), keep_days=int(keep))


class Inspection:
    """The stream read from a cursor into the inspector; critical hits become alerts."""

    def __init__(self, store: EventStore, inspector: Inspector, clock: Callable[[], float] = time.time,
                 keep_days: int = 7) -> None:
        self.store = store
        self.inspector = inspector
        self.clock = clock
        self.keep_days = keep_days
        self.cursor = 0
        self.consumed = 0
        self.hits: Counter[tuple[str, str]] = Counter()
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_KEPT)
        self.alerts_raised = 0

    async def poll(self) -> int:
        """Inspect what was stored since the cursor (read off the event loop); how many events."""
        events = await asyncio.to_thread(self.store.after, self.cursor, READ_BATCH)
        for event in events:
            for hit in self.inspector.feed(event):
                self._count(hit)
            self.cursor = event.id
        self.consumed += len(events)
        if events:
            self.inspector.forget_before(self.clock() - self.keep_days * 86400)
        return len(events)

    def _count(self, hit: Hit) -> None:
        self.hits[(hit.rule, hit.severity)] += 1
        if self.inspector.rules.alerts(hit.severity):
            self.alerts_raised += 1
            self.alerts.append({"seq": self.alerts_raised, **hit.as_dict()})
            log.warning("alert %d: %s (%s) in a conversation", self.alerts_raised, hit.rule, hit.severity)

    def alerts_after(self, seq: int) -> list[dict[str, Any]]:
        return [alert for alert in self.alerts if alert["seq"] > seq]

    def days(self) -> list[DailyFigures]:
        figures = self.inspector.rules.figures
        return daily_figures(self.inspector.conversations.values(), figures["timezone"], figures["top"])

    def today(self) -> DailyFigures | None:
        zone = ZoneInfo(self.inspector.rules.figures["timezone"])
        day = datetime.fromtimestamp(self.clock(), zone).date()
        return next((figures for figures in self.days() if figures.day == day), None)

    async def run(self, stop: asyncio.Event, poll_seconds: float) -> None:
        while not stop.is_set():
            try:
                read = await self.poll()
            except Exception as error:  # the store is down: try again, keep serving what we have
                log.error("event stream unreadable: %s", error)
                read = 0
            if read < READ_BATCH:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_seconds)


def _refusal(code: str, message: str) -> dict[str, Any]:
    return {"detail": {"code": code, "message": message}}


def create_app(inspection: Inspection, token: str) -> Any:
    app = FastAPI(title="quality inspection", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "cursor": inspection.cursor, "conversations": len(inspection.inspector.conversations)}

    @app.get("/alerts")
    def alerts(after: int = Query(0, ge=0)) -> dict[str, Any]:
        """Alerts newer than `after` (a `seq`), oldest first: poll with the last one seen."""
        return {"alerts": inspection.alerts_after(after), "last": inspection.alerts_raised}

    @app.get("/conversations/{conversation_id}/score")
    def score(conversation_id: str) -> dict[str, Any]:
        conversation = inspection.inspector.conversations.get(conversation_id)
        if conversation is None:
            raise HTTPException(404, _refusal("not_found", "没有这个会话的质检记录。")["detail"])
        return inspection.inspector.score(conversation)

    @app.get("/figures/daily.csv")
    def daily() -> PlainTextResponse:
        return PlainTextResponse(figures_csv(inspection.days()), media_type="text/csv; charset=utf-8")

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        text = prometheus_text(inspection.today(), inspection.hits, inspection.alerts_raised, inspection.consumed,
                               len(inspection.inspector.conversations))
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    app.add_middleware(BodyLimit, limit_for=lambda _path: MAX_BODY,
                       refusal=lambda limit: _refusal("too_large", f"请求体超过 {limit} 字节。"))
    app.add_middleware(BearerGate, tokens=[token], open_paths=OPEN_PATHS,
                       refusal=_refusal("unauthorized", "缺少或错误的访问令牌。"))
    return app


async def serve(settings: QualitySettings, stop: asyncio.Event | None = None) -> None:
    inspection = Inspection(SqlEventStore(settings.events_url),
                            Inspector(load_rules(settings.rules_path), FlowFacts.from_repository()),
                            keep_days=settings.keep_days)
    server = uvicorn.Server(uvicorn.Config(create_app(inspection, settings.token), host=settings.host,
                                           port=settings.port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # our own handlers stop everything
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server_task = asyncio.create_task(server.serve())
    log.info("quality inspection on http://%s:%d, rules %s", settings.host, settings.port, settings.rules_path)
    try:
        await inspection.run(stop, settings.poll_seconds)
    finally:
        server.should_exit = True
        await server_task
