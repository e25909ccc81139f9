"""`python -m quality`: the inspection service. It reads the event stream from its cursor, checks
every event against the rules, keeps a score per conversation and a live alert feed, and
serves them with the day's figures, on loopback.

Its cursor and its hits are saved with the stream (quality/store.py): after a restart it rebuilds
each conversation's state from the events it had read (without raising anything again), takes the
hits and alerts as they were raised, and reads on from where it stopped. Conversations whose last
event is older than `keep_days` leave memory and the database (events and hits).

GET /health (open), and with `Authorization: Bearer $QUALITY_API_TOKEN`:
/alerts?after=N, /conversations/{id}/score (the hits a review dismissed not counted), the reviews'
routes (quality/reviews.py), /figures/daily.csv, /figures/daily.json?days=N; /metrics
with $METRICS_TOKEN (trust/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Query
from fastapi.responses import PlainTextResponse
from prometheus_client.core import Metric

from ivr_config import environment
from ivr_config.environment import SettingsError, port_number
from quality.cursor import StreamCursor
from quality.events import StreamEvent
from quality.figures import (
    DEFAULT_REPEAT_HOURS,
    DailyFigures,
    daily_figures,
    figures_csv,
    figures_row,
    metric_families,
)
from quality.reviews import add_review_routes, body_limit, inspected, reviewed_score, steps_of
from quality.rules import RULES_PATH, FlowFacts, Hit, Inspector, load_rules
from quality.store import HIT_FIELDS, Progress, SqlEventStore, events_url
from trust.asgi import BearerGate, BodyLimit
from trust.env_secrets import SecretError, require_secret
from trust.metrics import MetricsEndpoint, metrics_token
from trust.serving import serving_http

log = logging.getLogger("quality")

DEFAULT_PORT = 9095
TOKEN_ENV = "QUALITY_API_TOKEN"
MAX_BODY = 1024  # every route but the reviews' (quality/reviews.py) is a GET
ALERTS_KEPT = 1000
READ_BATCH = 1000
READER = "inspection"  # its row in quality_progress
DEFAULT_KEEP_DAYS = 7
MAX_FIGURE_DAYS = 90  # a chart's longest span (the days kept are fewer by default: QUALITY_KEEP_DAYS)
RETENTION_EVERY_SECONDS = 600.0
OPEN_PATHS = frozenset({"/health"})


@dataclass(frozen=True)
class QualitySettings:
    token: str = field(repr=False)
    events_url: str
    rules_path: Path = RULES_PATH
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    keep_days: int = DEFAULT_KEEP_DAYS
    poll_seconds: float = 0.5
    metrics_token: str | None = field(default=None, repr=False)  # METRICS_TOKEN: GET /metrics
    # On PostgreSQL, the login role of the stream's writers (Rasa's broker, the phone gateways): given
    # INSERT on the events, nothing else (deploy/postgres-init.sh). Unset: nothing is granted.
    writer_role: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> QualitySettings:
        try:
            token = require_secret(TOKEN_ENV, env)
        except SecretError as error:
            raise SettingsError(f"{error} ({TOKEN_ENV}: the bearer token the desk uses)") from None
        return cls(token=token, events_url=events_url(env),
                   rules_path=environment.path(env, "QUALITY_RULES", RULES_PATH),
                   host=environment.text(env, "QUALITY_HOST", "127.0.0.1"),
                   port=port_number(env, "QUALITY_PORT", DEFAULT_PORT),
                   keep_days=environment.whole_number(env, "QUALITY_KEEP_DAYS", DEFAULT_KEEP_DAYS, minimum=1),
                   metrics_token=metrics_token(env),
                   writer_role=environment.optional_text(env, "QUALITY_WRITER_ROLE"))


class Inspection:
    """The stream read from a cursor into the inspector; critical hits become alerts. `resume`
    first (it rebuilds what a previous run had read), then `poll` again and again."""

    def __init__(self, store: SqlEventStore, inspector: Inspector, clock: Callable[[], float] = time.time,
                 keep_days: int = DEFAULT_KEEP_DAYS) -> None:
        self.store = store
        self.inspector = inspector
        self.clock = clock
        self.keep_days = keep_days
        self.cursor = StreamCursor()
        self.consumed = 0
        self.hits: Counter[tuple[str, str]] = Counter()
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_KEPT)
        self.alerts_raised = 0
        self.resumed = False
        self._unsaved: list[dict[str, Any]] = []  # hits found, not yet saved with the cursor
        self._retention_due = 0.0

    async def resume(self) -> int:
        """Rebuild the state of what was read before (the events up to the saved cursor, checked
        again without raising anything; the hits as saved), then go on from there. How many
        events were replayed."""
        saved = await asyncio.to_thread(self.store.progress, READER)
        if saved is None:  # never read: from the oldest event kept
            first = await asyncio.to_thread(self.store.first_position)
            saved = Progress(position=(first or 1) - 1)
            replayed = 0
        else:
            replayed = await self._replay(saved)
        stored = await asyncio.to_thread(self.store.hits)
        for conversation in self.inspector.conversations.values():
            conversation.hits = []
        for row in stored:
            hit = Hit(**{name: row[name] for name in HIT_FIELDS if name != "seq"})
            conversation = self.inspector.conversations.get(hit.conversation_id)
            if conversation is not None:
                conversation.hits.append(hit)
            self.hits[(hit.rule, hit.severity)] += 1
            if row["seq"] is not None:
                self.alerts.append({"seq": row["seq"], **hit.as_dict()})
        self.cursor = StreamCursor(saved)
        self.alerts_raised = saved.alerts
        self.resumed = True
        log.info("resumed at position %d (%d waited for), %d events replayed, %d hits, %d alerts so far",
                 saved.position, len(saved.pending), replayed, len(stored), saved.alerts)
        return replayed

    async def _replay(self, saved: Progress) -> int:
        replayed, position = 0, 0
        while position < saved.position:  # each batch moves `position` on: ends at the table's end
            batch = await asyncio.to_thread(self.store.after, position, READ_BATCH)
            if not batch:
                break
            for event in batch:
                if event.id <= saved.position and event.id not in saved.pending:
                    self.inspector.feed(event)
                    replayed += 1
            position = batch[-1].id
        return replayed

    async def poll(self) -> int:
        """Inspect what was stored since the cursor, and what filled a gap it had passed (read off
        the event loop); save the cursor with the hits, then raise their alerts. How many events."""
        read_from = self.cursor.snapshot()
        late, fresh = await asyncio.to_thread(self._read, read_from)
        events = self.cursor.advance(late, fresh, self.clock())
        for event in events:
            self._unsaved += [self._numbered(hit) for hit in self.inspector.feed(event)]
        self.consumed += len(events)
        if self.cursor.progress != read_from or self._unsaved:
            self.cursor.progress.alerts = self.alerts_raised
            # Saved before anything is shown: a run that dies here raises these alerts once, next run.
            await asyncio.to_thread(self.store.record, READER, self.cursor.snapshot(), self._unsaved)
            for hit in self._unsaved:
                if hit["seq"] is not None:
                    self.alerts.append(hit)
                    log.warning("alert %d: %s (%s) in a conversation", hit["seq"], hit["rule"], hit["severity"])
            self._unsaved = []
        await self._retain()
        return len(fresh)

    def _read(self, progress: Progress) -> tuple[list[StreamEvent], list[StreamEvent]]:
        late = self.store.among(sorted(progress.pending)) if progress.pending else []
        return late, self.store.after(progress.position, READ_BATCH)

    def _numbered(self, hit: Hit) -> dict[str, Any]:
        self.hits[(hit.rule, hit.severity)] += 1
        seq = None
        if self.inspector.rules.alerts(hit.severity):
            self.alerts_raised += 1
            seq = self.alerts_raised
        return {"seq": seq, **hit.as_dict()}

    async def _retain(self) -> None:
        """Now and then: conversations quiet for `keep_days` leave memory and the database."""
        now = self.clock()
        if now < self._retention_due:
            return
        self._retention_due = now + RETENTION_EVERY_SECONDS
        gone = self.inspector.forget_before(now - self.keep_days * 86400)
        if gone:
            progress = self.cursor.progress
            read_through = min(progress.pending, default=progress.position + 1) - 1
            deleted = await asyncio.to_thread(self.store.forget, gone, read_through)
            log.info("retention: %d conversations older than %d days deleted (%d events)", len(gone),
                     self.keep_days, deleted)

    def alerts_after(self, seq: int) -> list[dict[str, Any]]:
        return [alert for alert in self.alerts if alert["seq"] > seq]

    def days(self) -> list[DailyFigures]:
        figures = self.inspector.rules.figures
        return daily_figures(self.inspector.conversations.values(), figures["timezone"], figures["top"],
                             figures.get("repeat_within_hours", DEFAULT_REPEAT_HOURS))

    def today(self) -> DailyFigures | None:
        zone = ZoneInfo(self.inspector.rules.figures["timezone"])
        day = datetime.fromtimestamp(self.clock(), zone).date()
        return next((figures for figures in self.days() if figures.day == day), None)

    async def run(self, stop: asyncio.Event, poll_seconds: float) -> None:
        while not stop.is_set():
            try:
                read = await (self.poll() if self.resumed else self.resume())
            except Exception as error:  # the store is down: try again, keep serving what we have
                log.error("event stream unreadable: %s", error)
                read = 0
            if read < READ_BATCH:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_seconds)


class InspectionMetrics:
    """The inspection's counters and today's figures, read at each scrape."""

    def __init__(self, inspection: Inspection) -> None:
        self.inspection = inspection

    def collect(self) -> list[Metric]:
        inspection = self.inspection
        return metric_families(inspection.today(), inspection.hits, inspection.alerts_raised, inspection.consumed,
                               len(inspection.inspector.conversations))


def _refusal(code: str, message: str) -> dict[str, Any]:
    return {"detail": {"code": code, "message": message}}


def create_app(inspection: Inspection, token: str, monitoring_token: str | None = None) -> Any:
    app = FastAPI(title="quality inspection", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    def health() -> dict[str, Any]:
        progress = inspection.cursor.progress
        return {"status": "ok" if inspection.resumed else "resuming", "cursor": progress.position,
                "waiting_for": len(progress.pending), "conversations": len(inspection.inspector.conversations)}

    @app.get("/alerts")
    def alerts(after: int = Query(0, ge=0)) -> dict[str, Any]:
        """Alerts newer than `after` (a `seq`), oldest first: poll with the last one seen."""
        return {"alerts": inspection.alerts_after(after), "last": inspection.alerts_raised}

    @app.get("/conversations/{conversation_id}/score")
    def score(conversation_id: str) -> dict[str, Any]:
        conversation = inspected(inspection, conversation_id)
        return reviewed_score(inspection, conversation, steps_of(inspection.store, conversation_id))

    @app.get("/figures/daily.csv")
    def daily() -> PlainTextResponse:
        return PlainTextResponse(figures_csv(inspection.days()), media_type="text/csv; charset=utf-8")

    @app.get("/figures/daily.json")
    def daily_json(days: int = Query(14, ge=1, le=MAX_FIGURE_DAYS)) -> dict[str, Any]:
        """The last `days` days with conversations, oldest first (the desk's charts)."""
        return {"days": [figures_row(figures) for figures in inspection.days()[-days:]]}

    add_review_routes(app, inspection)
    app.add_middleware(BodyLimit, limit_for=lambda path: body_limit(path, MAX_BODY),
                       refusal=lambda limit: _refusal("too_large", f"请求体超过 {limit} 字节。"))
    app.add_middleware(BearerGate, tokens=[token], open_paths=OPEN_PATHS,
                       refusal=_refusal("unauthorized", "缺少或错误的访问令牌。"))
    # Outside the desk's gate: /metrics has the monitoring token of its own.
    app.add_middleware(MetricsEndpoint, service="quality", token=monitoring_token,
                       collectors=[InspectionMetrics(inspection)])
    return app


async def serve(settings: QualitySettings, stop: asyncio.Event | None = None) -> None:
    inspection = Inspection(SqlEventStore(settings.events_url, writer_role=settings.writer_role),
                            Inspector(load_rules(settings.rules_path), FlowFacts.from_repository()),
                            keep_days=settings.keep_days)
    app = create_app(inspection, settings.token, settings.metrics_token)
    async with serving_http(app, settings.host, settings.port, stop) as stop:
        log.info("quality inspection on http://%s:%d, rules %s", settings.host, settings.port, settings.rules_path)
        await inspection.run(stop, settings.poll_seconds)
