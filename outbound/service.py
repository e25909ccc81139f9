"""`python -m outbound`: the dialler loop and a health endpoint on loopback.

Settings come from the environment (docs/outbound.md lists them). Without AMI (no
`ASTERISK_AMI_SECRET`) or without a dial channel (`OUTBOUND_DIAL_CHANNEL`) the service still
runs: it plans the campaigns and keeps their queue, dials nothing, and says so at start and on
`/health`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from flowspec.model import load_flowset
from outbound.campaigns import CAMPAIGNS_DIR, load_campaigns, load_policy
from outbound.compliance import Compliance
from outbound.dialer import Dialer, DialerSettings
from outbound.directory import RiskApiDirectory
from outbound.originator import AmiOriginator, DialSettings, NullOriginator, Originator
from outbound.queue import DEFAULT_DATABASE_URL, Queue
from risk_api.clock import SystemClock
from telephony.ami import AmiClient, AmiConfig
from trust.env_secrets import SecretError, require_secret

log = logging.getLogger("outbound")

DEFAULT_HEALTH_PORT = 9094
STOP_GRACE_SECONDS = 10
HEALTH_HOST = "127.0.0.1"  # loopback only: the health answer is for the stack and local monitoring


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class OutboundSettings:
    risk_api_url: str
    risk_api_token: str = field(repr=False)
    number_key: bytes = field(repr=False)
    database_url: str = DEFAULT_DATABASE_URL
    health_port: int = DEFAULT_HEALTH_PORT
    campaigns_dir: Path = CAMPAIGNS_DIR
    ami: AmiConfig | None = None
    dial: DialSettings | None = None
    owner: str = ""
    tick_seconds: float = 1.0
    max_in_flight: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OutboundSettings:
        try:
            token = require_secret("RISK_API_TOKEN", env)
            number_key = require_secret("OUTBOUND_NUMBER_KEY", env)
        except SecretError as error:
            raise SettingsError(f"{error} (RISK_API_TOKEN: the risk API's dialer-role token; OUTBOUND_NUMBER_KEY: "
                                "the key of the numbers' digests in the dialler's database)") from None
        ami = None
        if env.get("ASTERISK_AMI_SECRET"):
            try:
                ami = AmiConfig.from_env(env)
            except ValueError as error:
                raise SettingsError(str(error)) from None
        dial = None
        channel = env.get("OUTBOUND_DIAL_CHANNEL", "").strip()
        if channel:
            if "{number}" not in channel:
                raise SettingsError(f"OUTBOUND_DIAL_CHANNEL must contain {{number}} (e.g. PJSIP/{{number}}@trunk), "
                                    f"got {channel!r}")
            dial = DialSettings(channel=channel, caller_id=env.get("OUTBOUND_CALLER_ID") or None,
                                ring_seconds=_number(env, "OUTBOUND_RING_SECONDS", 30, 5, 120))
        return cls(
            risk_api_url=env.get("RISK_API_URL", "http://127.0.0.1:8400"), risk_api_token=token,
            number_key=number_key.encode(),
            database_url=env.get("OUTBOUND_DATABASE_URL") or DEFAULT_DATABASE_URL,
            health_port=_number(env, "OUTBOUND_HEALTH_PORT", DEFAULT_HEALTH_PORT, 1, 65535),
            campaigns_dir=Path(env.get("OUTBOUND_CAMPAIGNS_DIR") or CAMPAIGNS_DIR),
            ami=ami, dial=dial,
            owner=(env.get("OUTBOUND_DIALER_ID") or f"{socket.gethostname()}:{os.getpid()}")[:64],
            max_in_flight=_number(env, "OUTBOUND_MAX_IN_FLIGHT", 50, 1, 1000))

    def dialling_off_reason(self) -> str | None:
        if self.ami is None:
            return "AMI not configured (ASTERISK_AMI_SECRET unset)"
        if self.dial is None:
            return "no dial channel (OUTBOUND_DIAL_CHANNEL unset, e.g. PJSIP/{number}@trunk)"
        return None


def _number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name, str(default)).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise SettingsError(f"{name} must be a whole number {low}-{high}, got {text!r}")
    return int(text)


def health_app(dialer: Dialer, settings: OutboundSettings) -> FastAPI:
    """`GET /health`: counts and states only, no customer."""
    app = FastAPI(title="outbound dialler", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "dialler": dialer.owner, "dialling": dialer.originator.ready,
                "originator": dialer.originator.description,
                "campaigns": dialer.queue.campaign_states(), "attempts": dialer.queue.counts(),
                "in_flight": len(dialer.tasks), "dials": dialer.dials}

    return app


async def serve(settings: OutboundSettings, stop: asyncio.Event | None = None) -> None:
    flows = load_flowset()
    campaigns = load_campaigns(flows, settings.campaigns_dir)
    policy = load_policy(settings.campaigns_dir)
    queue = Queue(settings.database_url)
    queue.prepare()
    directory = RiskApiDirectory(settings.risk_api_url, settings.risk_api_token)
    ami: AmiClient | None = None
    originator: Originator
    off = settings.dialling_off_reason()
    if off is None:
        assert settings.ami is not None and settings.dial is not None
        ami = AmiClient(settings.ami)
        ami_originator = AmiOriginator(ami, settings.dial)
        ami_originator.start()
        await ami.connect(retry_in_background=True)  # AMI down at start: the queue waits for it
        originator = ami_originator
        log.info("dialling through %s, channel %s", originator.description,
                 settings.dial.channel.replace("{number}", "<number>"))
    else:
        originator = NullOriginator(off)
        log.warning("dialling is OFF: %s. Campaigns are planned and queued; nobody is called.", off)
    log.info("campaigns: %s", ", ".join(f"{c.id} ({'on' if c.enabled else 'off'}, {c.selection.describe()})"
                                         for c in campaigns.values()) or "none")
    dialer = Dialer(queue=queue, campaigns=campaigns, compliance=Compliance(policy), directory=directory,
                    originator=originator, clock=SystemClock(), number_key=settings.number_key,
                    settings=DialerSettings(owner=settings.owner, max_in_flight=settings.max_in_flight))
    health = uvicorn.Server(uvicorn.Config(health_app(dialer, settings), host=HEALTH_HOST,
                                           port=settings.health_port, log_level="warning"))
    health.install_signal_handlers = lambda: None  # our own handlers stop everything
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    health_task = asyncio.create_task(health.serve())
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
        health.should_exit = True
        await health_task
        await originator.close()
        if ami is not None:
            await ami.close()
        await directory.close()
        queue.close()
