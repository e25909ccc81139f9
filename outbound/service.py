"""`python -m outbound`: the dialler loop, its health endpoint and the agent desk's campaign API.

Settings come from the environment (docs/outbound.md lists them). Without AMI (no
`ASTERISK_AMI_SECRET`) or without a dial channel (`OUTBOUND_DIAL_CHANNEL`) the service still
runs: it plans the campaigns and keeps their queue, dials nothing, and says so at start and on
`/health`. The campaign routes (progress, start / pause / stop, the CSV of outcomes) answer the
web server only, with `OUTBOUND_DESK_TOKEN`; the outcome route (what an answered call's
conversation came to) the phone gateway only, with `OUTBOUND_GATEWAY_TOKEN`.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowspec.model import load_flowset
from ivr_config import environment
from ivr_config.environment import SettingsError
from outbound.agents import AgentWatch
from outbound.campaigns import CAMPAIGNS_DIR, load_campaigns, load_policy
from outbound.compliance import Compliance
from outbound.dialer import Dialer, DialerSettings
from outbound.directory import RiskApiDirectory
from outbound.originator import AmiOriginator, DialSettings, NullOriginator, Originator
from outbound.queue import CONVERSATION_OUTCOMES, DEFAULT_DATABASE_URL, Queue
from quality.events import DIALLER
from quality.publisher import StreamPublisher
from quality.store import SqlEventStore, events_url
from risk_api.clock import SystemClock
from telephony.ami import AmiClient, AmiConfig
from trust.asgi import BearerGate, BodyLimit
from trust.env_secrets import SecretError, optional_secret, require_secret
from trust.metrics import MetricsEndpoint, metrics_token
from trust.serving import serving_http

log = logging.getLogger("outbound")

DEFAULT_HEALTH_PORT = 9094
STOP_GRACE_SECONDS = 10
CampaignPath = Annotated[str, PathParam(pattern=r"^[a-z][a-z0-9_]{0,47}$")]  # campaign ids: their file names
AttemptPath = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_:.\-]{1,104}$")]  # <campaign>:<customer>:<cycle>:<n>
MAX_BODY = 1024  # a start / pause / stop and the agent's login; an outcome
CSV_COLUMNS = ("campaign", "customer_id", "cycle", "status", "calls", "result", "outcome", "skipped_by",
               "created_at", "ended_at")


@dataclass(frozen=True)
class OutboundSettings:
    risk_api_url: str
    risk_api_token: str = field(repr=False)
    number_key: bytes = field(repr=False)
    desk_token: str | None = field(default=None, repr=False)  # the web server's, for the campaign routes
    gateway_token: str | None = field(default=None, repr=False)  # the phone gateway's, for the outcome route
    host: str = "127.0.0.1"  # loopback unless the web server runs on another host
    database_url: str = DEFAULT_DATABASE_URL
    health_port: int = DEFAULT_HEALTH_PORT
    campaigns_dir: Path = CAMPAIGNS_DIR
    ami: AmiConfig | None = None
    dial: DialSettings | None = None
    owner: str = ""
    tick_seconds: float = 1.0
    max_in_flight: int = 50
    metrics_token: str | None = field(default=None, repr=False)  # METRICS_TOKEN: GET /metrics

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OutboundSettings:
        try:
            token = require_secret("RISK_API_TOKEN", env)
            number_key = require_secret("OUTBOUND_NUMBER_KEY", env)
        except SecretError as error:
            raise SettingsError(f"{error} (RISK_API_TOKEN: the risk API's dialer-role token; OUTBOUND_NUMBER_KEY: "
                                "the key of the numbers' digests in the dialler's database)") from None
        ami = AmiConfig.from_env(env) if environment.text(env, "ASTERISK_AMI_SECRET") else None
        dial = None
        channel = environment.text(env, "OUTBOUND_DIAL_CHANNEL")
        if channel:
            if "{number}" not in channel:
                raise SettingsError(f"OUTBOUND_DIAL_CHANNEL must contain {{number}} (e.g. PJSIP/{{number}}@trunk), "
                                    f"got {channel!r}")
            dial = DialSettings(channel=channel, caller_id=environment.optional_text(env, "OUTBOUND_CALLER_ID"),
                                ring_seconds=environment.whole_number(env, "OUTBOUND_RING_SECONDS", 30, 5, 120))
        return cls(
            risk_api_url=environment.text(env, "RISK_API_URL", "http://127.0.0.1:8400"), risk_api_token=token,
            number_key=number_key.encode(), desk_token=optional_secret("OUTBOUND_DESK_TOKEN", env),
            gateway_token=optional_secret("OUTBOUND_GATEWAY_TOKEN", env),
            host=environment.text(env, "OUTBOUND_HOST", "127.0.0.1"),
            database_url=environment.text(env, "OUTBOUND_DATABASE_URL", DEFAULT_DATABASE_URL),
            health_port=environment.port_number(env, "OUTBOUND_HEALTH_PORT", DEFAULT_HEALTH_PORT),
            campaigns_dir=environment.path(env, "OUTBOUND_CAMPAIGNS_DIR", CAMPAIGNS_DIR),
            ami=ami, dial=dial,
            owner=environment.text(env, "OUTBOUND_DIALER_ID", f"{socket.gethostname()}:{os.getpid()}")[:64],
            max_in_flight=environment.whole_number(env, "OUTBOUND_MAX_IN_FLIGHT", 50, 1, 1000),
            metrics_token=metrics_token(env))

    def dialling_off_reason(self) -> str | None:
        if self.ami is None:
            return "AMI not configured (ASTERISK_AMI_SECRET unset)"
        if self.dial is None:
            return "no dial channel (OUTBOUND_DIAL_CHANNEL unset, e.g. PJSIP/{number}@trunk)"
        return None


class CampaignControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["active", "paused", "stopped"]
    by: str = Field(min_length=1, max_length=64, pattern=r"^\S(?:.*\S)?$")  # the agent logged in to the desk


class OutcomeReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: str

    @field_validator("outcome")
    @classmethod
    def known(cls, outcome: str) -> str:
        if outcome not in CONVERSATION_OUTCOMES:
            raise ValueError(f"unknown conversation outcome; known: {', '.join(CONVERSATION_OUTCOMES)}")
        return outcome


def holder_of(token: str | None, role: str) -> Any:
    """A route dependency: 403 unless the request's bearer token is `token` (the gate let in any of
    the service's tokens; each caller may use its own routes only)."""

    def check(request: Request) -> None:
        presented = request.headers.get("authorization", "").partition(" ")[2].strip()
        if not token or not hmac.compare_digest(presented.encode(), token.encode()):
            raise HTTPException(403, {"code": "wrong_caller", "message": f"only the {role} may use this route"})

    return Depends(check)


def service_app(dialer: Dialer, settings: OutboundSettings) -> FastAPI:
    """`GET /health`: counts and states only, no customer, no credential. The campaign routes:
    the web server's bearer token (`OUTBOUND_DESK_TOKEN`); the outcome route: the phone gateway's
    (`OUTBOUND_GATEWAY_TOKEN`); a route whose token is not set is off (401), another caller's
    token is refused (403)."""
    app = FastAPI(title="outbound dialler", docs_url=None, redoc_url=None, openapi_url=None)
    desk = APIRouter(dependencies=[holder_of(settings.desk_token, "agent desk")])
    gateway = APIRouter(dependencies=[holder_of(settings.gateway_token, "phone gateway")])
    app.add_middleware(BodyLimit, limit_for=lambda _path: MAX_BODY,
                       refusal=lambda limit: {"detail": f"request body over {limit} bytes"})
    app.add_middleware(BearerGate, tokens=[token for token in (settings.desk_token, settings.gateway_token) if token],
                       open_paths=("/health",), refusal={"detail": "a caller's token is required"})
    app.add_middleware(MetricsEndpoint, service="outbound", token=settings.metrics_token)

    def campaign_named(campaign_id: str) -> Any:
        campaign = dialer.campaigns.get(campaign_id)
        if campaign is None:
            raise HTTPException(404, {"code": "unknown_campaign", "message": "没有这个外呼活动。"})
        return campaign

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "dialler": dialer.owner, "dialling": dialer.originator.ready,
                "originator": dialer.originator.description,
                "campaigns": dialer.queue.campaign_states(), "attempts": dialer.queue.counts(),
                "in_flight": len(dialer.tasks), "dials": dialer.dials,
                "paced_to_agents_out": dialer.agent_paced_out}

    @desk.get("/campaigns")
    def campaigns() -> list[dict[str, Any]]:
        """Every campaign this dialler runs: what its file says, its state, and its counts."""
        states = dialer.queue.campaign_states()
        return [{"id": campaign.id, "name": campaign.name, "flow": campaign.flow, "enabled": campaign.enabled,
                 "selection": campaign.selection.describe(),
                 "window": f"{campaign.window.start:%H:%M}-{campaign.window.end:%H:%M}",
                 **states.get(campaign.id, {"state": "unknown", "error": None, "selected_on": None}),
                 **dialer.queue.campaign_report(campaign.id)}
                for campaign in sorted(dialer.campaigns.values(), key=lambda each: (-each.priority, each.id))]

    @desk.post("/campaigns/{campaign_id}/control")
    def control(campaign_id: CampaignPath, request: CampaignControlRequest) -> dict[str, str]:
        campaign = campaign_named(campaign_id)
        try:
            state = dialer.queue.control_campaign(campaign, request.state, request.by, dialer.clock.now())
        except KeyError:
            raise HTTPException(404, {"code": "unknown_campaign", "message": "这个外呼活动还没有排入队列。"}) from None
        except ValueError as error:
            raise HTTPException(409, {"code": "cannot_start", "message": f"无法启动：{error}"}) from None
        log.info("campaign %s %s by %s", campaign_id, state, request.by)
        return {"id": campaign_id, "state": state}

    @desk.get("/campaigns/{campaign_id}/outcomes.csv")
    def outcomes(campaign_id: CampaignPath) -> Response:
        """One line per call series: customer id, never a number (the dialler keeps none)."""
        campaign_named(campaign_id)
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(CSV_COLUMNS)
        for member in dialer.queue.members(campaign_id):
            writer.writerow([member.campaign_id, member.customer_id, member.cycle, member.status, member.attempts,
                             member.result or "", member.conversation_outcome or "", member.rule or "",
                             member.created_at.isoformat(), member.ended_at.isoformat() if member.ended_at else ""])
        # A byte-order mark: spreadsheet programs then read the UTF-8 right.
        return Response("\ufeff" + text.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{campaign_id}-outcomes.csv"'})

    @gateway.post("/attempts/{attempt_id}/outcome")
    async def outcome(attempt_id: AttemptPath, report: OutcomeReport) -> dict[str, str]:
        """What an answered call's conversation came to (the phone gateway reports it as the call ends)."""
        if not await dialer.record_conversation_outcome(attempt_id, report.outcome):
            raise HTTPException(404, {"code": "unknown_attempt", "message": "没有这次外呼。"})
        log.info("attempt %s: conversation outcome %s", attempt_id, report.outcome)
        return {"attempt_id": attempt_id, "outcome": report.outcome}

    app.include_router(desk)
    app.include_router(gateway)
    return app


async def serve(settings: OutboundSettings, stop: asyncio.Event | None = None) -> None:
    flows = load_flowset()
    campaigns = load_campaigns(flows, settings.campaigns_dir)
    policy = load_policy(settings.campaigns_dir)
    queue = Queue(settings.database_url)
    queue.prepare()
    directory = RiskApiDirectory(settings.risk_api_url, settings.risk_api_token)
    ami: AmiClient | None = None
    agent_watch: AgentWatch | None = None
    originator: Originator
    off = settings.dialling_off_reason()
    if off is None:
        assert settings.ami is not None and settings.dial is not None
        ami = AmiClient(settings.ami)
        ami_originator = AmiOriginator(ami, settings.dial)
        ami_originator.start()
        await ami.connect(retry_in_background=True)  # AMI down at start: the queue waits for it
        originator = ami_originator
        paced = {c.agent_pacing.queue for c in campaigns.values() if c.agent_pacing is not None}
        if paced:
            agent_watch = AgentWatch(ami, paced)
            agent_watch.start()
        log.info("dialling through %s, channel %s", originator.description,
                 settings.dial.channel.replace("{number}", "<number>"))
    else:
        originator = NullOriginator(off)
        log.warning("dialling is OFF: %s. Campaigns are planned and queued; nobody is called.", off)
    log.info("campaigns: %s", ", ".join(f"{c.id} ({'on' if c.enabled else 'off'}, {c.selection.describe()})"
                                         for c in campaigns.values()) or "none")
    # Each call placed and its result into the quality stream (QUALITY_EVENTS_URL, as the gateway's).
    dial_events = StreamPublisher(SqlEventStore(events_url()), DIALLER)
    dialer = Dialer(queue=queue, campaigns=campaigns, compliance=Compliance(policy), directory=directory,
                    originator=originator, clock=SystemClock(), number_key=settings.number_key,
                    settings=DialerSettings(owner=settings.owner, max_in_flight=settings.max_in_flight),
                    agents_free=agent_watch.available if agent_watch else lambda queue: None, events=dial_events)
    try:
        async with serving_http(service_app(dialer, settings), settings.host, settings.health_port, stop) as stop:
            try:
                await dialer.run(stop, settings.tick_seconds)
                # Calls being placed get a few seconds for their results (the stack kills a service that
                # takes 20 s to stop); the rest are left to the leases: a claim returns to the queue, a
                # dial in flight ends as `unknown` and its series goes on with the next attempt.
                try:
                    await asyncio.wait_for(dialer.drain(), STOP_GRACE_SECONDS)
                except asyncio.TimeoutError:
                    log.warning("stopping with %d dials unanswered: their leases settle them", len(dialer.tasks))
            finally:
                await dialer.close()
    finally:
        await originator.close()
        if agent_watch is not None:
            await agent_watch.close()
        if ami is not None:
            await ami.close()
        await directory.close()
        queue.close()
        dial_events.close()
