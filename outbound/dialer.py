"""The dialler: plans campaigns, claims due attempts, applies the rules, dials, records.

One `tick()` (the service runs one a second; tests call it at a fixed clock):
1. plan: once a day (China date) per active campaign, the one dialler that wins `begin_planning`
   asks the risk API for the campaign's customers and queues a series for each new one, its
   first attempt at the next opening of the calling window in the customer's time zone;
2. reap expired leases (a dead dialler's claims go back; its dials end as `unknown`);
3. renew the leases of this dialler's attempts in flight;
4. when the originator is ready, claim due attempts within each campaign's pacing and work each
   one as a task: fresh contact facts from the risk API → the compliance decision, recorded with
   `dialling` in one transaction → the Originate → the result, and the series' next attempt.

A dialler that is killed at any point leaves nothing to be dialled twice: see outbound/queue.py.

Each Originate's outcome also goes to the quality stream (`events`, quality/publisher.py) under the
conversation id the call will have if answered (`DialRequest.conversation_id`): `dial_placed`
(campaign, flow, the customer's time zone, the attempt's number in its series, the phone number's
keyed digest `number_ref`; at the moment the Originate left) and `dial_result` once Asterisk
answered it (and `dial_result` `machine` when the dialplan's AMD() found an answering machine on
it), so the inspection checks the legal calling hours and the number's daily cap of every
call placed, answered or not (an Originate that never reached Asterisk is neither); an attempt
skipped for good is `dial_skipped` with its rule. Nothing in them names the customer, and the
number only by its keyed digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from outbound.campaigns import Campaign, CampaignError
from outbound.compliance import Compliance, Decision, timezone_of
from outbound.directory import (
    ID_BATCH,
    ContactDetails,
    CustomerDirectory,
    DirectoryUnavailable,
    UnknownCustomer,
    number_ref,
)
from outbound.metrics import ANSWERING_MACHINES, CONVERSATION_OUTCOMES, DIAL_ATTEMPTS
from outbound.originator import DialRequest, DialResult, Originator
from outbound.queue import Claimed, Contact, Planned, Queue
from risk_api.clock import CHINA_TZ, Clock

log = logging.getLogger(__name__)

CSV_CYCLE = "list"
PLAN_CHECK = timedelta(minutes=1)


class DialEvents(Protocol):
    """Where the dialler's events go (quality.publisher.StreamPublisher with source DIALLER)."""

    def publish(self, conversation_id: str, kind: str, at: float, data: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class DialerSettings:
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}"[:64])
    lease: timedelta = timedelta(minutes=3)  # > ring time + response margin; renewed every tick
    max_in_flight: int = 50  # attempts this dialler works on at once (every campaign)
    max_call: timedelta = timedelta(minutes=20)  # an answered call missing its Hangup frees its channel then
    retry_unavailable: timedelta = timedelta(minutes=1)  # the risk API or AMI did not answer


class Dialer:
    def __init__(self, *, queue: Queue, campaigns: Mapping[str, Campaign], compliance: Compliance,
                 directory: CustomerDirectory, originator: Originator, clock: Clock, number_key: bytes,
                 settings: DialerSettings | None = None,
                 agents_free: Callable[[str], int | None] = lambda queue: None,
                 events: DialEvents | None = None) -> None:
        self.queue = queue
        self.events = events
        # Agents free in an Asterisk queue now, None when unknown (outbound/agents.py AgentWatch).
        self.agents_free = agents_free
        self.agent_paced_out: dict[str, str] = {}  # campaign -> why it dials nothing now (health)
        self.campaigns = dict(campaigns)
        self.compliance = compliance
        self.directory = directory
        self.originator = originator
        self.clock = clock
        self.number_key = number_key
        self.settings = settings or DialerSettings()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.dials = 0
        self._plan_checked: dict[str, datetime] = {}  # campaign -> when this dialler last asked to plan it
        originator.on_call_end(self._call_ended)
        originator.on_machine(self._machine_answered)

    @property
    def owner(self) -> str:
        return self.settings.owner

    def start(self) -> None:
        self.queue.sync_campaigns(self.campaigns, self.clock.now())

    async def tick(self) -> None:
        now = self.clock.now()
        await self.plan(now)
        self.queue.reap(now, self.campaigns)
        self.queue.renew(self.owner, self.tasks, now, self.settings.lease)
        await self._report_opt_outs(now)
        if not self.originator.ready:
            return
        room = self.settings.max_in_flight - len(self.tasks)
        for claimed in self.queue.claim(self.owner, now, self.settings.lease, room, self.settings.max_call,
                                        self._agent_limits()):
            task = asyncio.create_task(self._work(claimed), name=f"attempt {claimed.attempt_id}")
            self.tasks[claimed.attempt_id] = task
            task.add_done_callback(lambda _, key=claimed.attempt_id: self.tasks.pop(key, None))

    def _agent_limits(self) -> dict[str, int]:
        """The calls at once each agent-paced campaign may have: calls_per_agent × the agents free
        in its queue; 0 while that is unknown (AMI down, not yet synced), said once per change."""
        limits: dict[str, int] = {}
        for campaign in self.campaigns.values():
            pacing = campaign.agent_pacing
            if pacing is None:
                continue
            free = self.agents_free(pacing.queue)
            limits[campaign.id] = 0 if free is None else math.floor(free * pacing.calls_per_agent)
            why = (f"agents of queue {pacing.queue} unknown (AMI down or not yet synced)" if free is None
                   else f"no agent free in queue {pacing.queue}" if limits[campaign.id] == 0 else None)
            if why and self.agent_paced_out.get(campaign.id) != why:
                log.warning("campaign %s dials nothing now: %s", campaign.id, why)
            if why:
                self.agent_paced_out[campaign.id] = why
            else:
                self.agent_paced_out.pop(campaign.id, None)
        return limits

    async def drain(self) -> None:
        """Until every attempt this dialler works on is done (tests; a graceful stop)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)

    async def run(self, stop: asyncio.Event, interval_seconds: float = 1.0) -> None:
        self.start()
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # a database hiccup must not end the service: next tick tries again
                log.exception("dialler tick failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)

    # --- planning -----------------------------------------------------------------------------

    async def plan(self, now: datetime) -> None:
        today = now.astimezone(CHINA_TZ).date()
        for campaign in self.campaigns.values():
            if not campaign.enabled or not campaign.runs_on(today):
                continue
            checked = self._plan_checked.get(campaign.id)
            if checked is not None and checked.astimezone(CHINA_TZ).date() == today and now - checked < PLAN_CHECK:
                continue  # asked a moment ago (another dialler may hold today's selection)
            self._plan_checked[campaign.id] = now
            if not self.queue.begin_planning(campaign.id, today, now):
                continue
            try:
                planned = await self._select(campaign, now)
            except DirectoryUnavailable as error:
                log.warning("campaign %s: selection failed (%s); trying again in a minute", campaign.id, error)
                self.queue.planning_failed(campaign.id, now + self.settings.retry_unavailable)
                continue
            except CampaignError as error:
                log.error("campaign %s refused: %s", campaign.id, error)
                self.queue.refuse_campaign(campaign.id, str(error), now)
                continue
            new = self.queue.enqueue(campaign, planned, now)
            log.info("campaign %s: %d customers selected (%s), %d new call series", campaign.id, len(planned),
                     campaign.selection.describe(), new)

    async def _select(self, campaign: Campaign, now: datetime) -> list[Planned]:
        selection = campaign.selection
        selected = []
        if selection.kind == "customer_ids":
            unknown: list[str] = []
            ids = list(selection.customer_ids)
            for start in range(0, len(ids), ID_BATCH):
                page = await self.directory.select(selection, None, ids[start:start + ID_BATCH])
                selected += page.customers
                unknown += page.unknown_ids
            if unknown:
                shown = "; ".join(f"{selection.where(customer)}: {customer}" for customer in unknown[:10])
                more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
                raise CampaignError(f"{campaign.path}: selection.customer_ids_csv: {len(unknown)} customer ids "
                                    f"the risk API does not know: {shown}{more}; nobody of this list is called "
                                    "until the file is fixed")
        else:
            after = None
            while True:
                page = await self.directory.select(selection, after)
                selected += page.customers
                if not page.next_after:
                    break
                after = page.next_after
        planned = []
        for customer in selected:
            zone = timezone_of(customer.timezone)
            # A customer whose zone is unknown is queued now and skipped by the rules, recorded.
            opening = self.compliance.next_opening(campaign, zone, now) if zone is not None else now
            if opening is None:
                continue  # the campaign has no calling day left
            cycle = customer.reference if selection.kind != "customer_ids" and customer.reference else CSV_CYCLE
            planned.append(Planned(customer.customer_id, cycle, opening))
        return planned

    # --- one attempt --------------------------------------------------------------------------

    async def _work(self, claimed: Claimed) -> None:
        try:
            await self._attempt(claimed)
        except Exception:
            # Left to the lease: a claimed attempt goes back to the queue, a dialling one ends unknown.
            log.exception("attempt %s failed", claimed.attempt_id)

    async def _attempt(self, claimed: Claimed) -> None:
        campaign = self.campaigns.get(claimed.campaign_id)
        if campaign is None:
            self.queue.skip(claimed, self.owner, "campaign_ended", "the campaign's file is gone", self.clock.now())
            self._publish(str(uuid.uuid4()), "dial_skipped", claimed.campaign_id, rule="campaign_ended")
            return
        try:
            details = await self.directory.contact(claimed.customer_id, campaign.selection)
        except UnknownCustomer:
            self.queue.skip(claimed, self.owner, "unknown_customer", "the risk API does not know the customer",
                            self.clock.now())
            self._publish(str(uuid.uuid4()), "dial_skipped", campaign.id, rule="unknown_customer")
            return
        except DirectoryUnavailable as error:
            log.warning("attempt %s: contact facts unavailable (%s): back in the queue", claimed.attempt_id, error)
            self.queue.release(claimed, self.owner, self.clock.now() + self.settings.retry_unavailable)
            return
        decision = self._decide(claimed, campaign, details)
        if decision is None or not decision.allowed:
            if decision is not None and decision.final:  # skipped for good, by this rule
                self._publish(str(uuid.uuid4()), "dial_skipped", campaign.id, rule=decision.rule or "skipped")
            return
        request = DialRequest(claimed.attempt_id, campaign.id, campaign.flow, claimed.customer_id, details.phone,
                              campaign.machine.behaviour, campaign.machine.prompt)
        timezone, number = details.timezone, number_ref(self.number_key, details.phone)
        del details  # the number lives on only in the request, for this one Originate
        placed_at = self.clock.now()
        result = await self.originator.dial(request)
        DIAL_ATTEMPTS.labels(campaign.id, result.result).inc()
        now = self.clock.now()
        if result.result == "not_sent":
            log.warning("attempt %s: not sent (%s): back in the queue", claimed.attempt_id, result.reason)
            self.queue.not_sent(claimed, self.owner, now + self.settings.retry_unavailable)
            return
        self._publish(request.conversation_id, "dial_placed", campaign.id, at=placed_at, flow=campaign.flow,
                      timezone=timezone, attempt=claimed.number, number=number)
        self._publish(request.conversation_id, "dial_result", campaign.id, at=now, result=result.result)
        self.dials += 1
        self._record(claimed, campaign, result, now)

    def _publish(self, conversation_id: str, kind: str, campaign_id: str, at: datetime | None = None,
                 **data: Any) -> None:
        if self.events is not None:
            self.events.publish(conversation_id, kind, (at or self.clock.now()).timestamp(),
                                {"campaign": campaign_id, **data})

    def _decide(self, claimed: Claimed, campaign: Campaign, details: ContactDetails) -> Decision | None:
        still_selected = details.selected and (campaign.selection.kind == "customer_ids"
                                               or details.reference == claimed.cycle)
        contact = Contact(customer_id=claimed.customer_id, number_ref=number_ref(self.number_key, details.phone),
                          timezone=details.timezone, do_not_call=details.do_not_call,
                          marketing_opt_out=details.marketing_opt_out, still_selected=still_selected)
        return self.queue.decide(claimed, self.owner, campaign, self.compliance, contact, self.clock.now())

    def _record(self, claimed: Claimed, campaign: Campaign, result: DialResult, now: datetime) -> None:
        self.queue.complete(claimed.attempt_id, campaign, result.result, now, reason=result.reason,
                            action_id=result.action_id, uniqueid=result.uniqueid)
        log.info("attempt %s: %s", claimed.attempt_id, result.result)

    def _call_ended(self, attempt_id: str) -> None:
        self.queue.call_ended(attempt_id, self.clock.now())

    def _machine_answered(self, attempt_id: str, detail: str, conversation_id: str) -> None:
        campaign_id = self.queue.machine(attempt_id, self.campaigns, detail, self.clock.now())
        if campaign_id is not None:
            ANSWERING_MACHINES.labels(campaign_id).inc()
            log.info("attempt %s: machine", attempt_id)
            if conversation_id:  # the call's, as the dialplan repeats it: whichever dialler placed it
                self._publish(conversation_id, "dial_result", campaign_id, result="machine")
            else:
                log.warning("attempt %s: the machine's event names no call: not on the quality stream", attempt_id)

    # --- after the call -----------------------------------------------------------------------

    async def record_conversation_outcome(self, attempt_id: str, outcome: str) -> bool:
        """What the conversation came to (the phone gateway reports it; docs/outbound.md). An opt-out
        stops the robot calling the customer from the next attempt on, and goes to the risk API.
        False: no such attempt."""
        now = self.clock.now()
        attempt = self.queue.record_conversation_outcome(attempt_id, outcome, now)
        if attempt is not None:
            CONVERSATION_OUTCOMES.labels(attempt.campaign_id, outcome).inc()
        if attempt is not None and outcome == "opted_out":
            await self._report_opt_outs(now)
        return attempt is not None

    async def _report_opt_outs(self, now: datetime) -> None:
        for row in self.queue.unreported_opt_outs():
            try:
                await self.directory.do_not_call(row.customer_id, row.source, row.attempt_id)
            except (DirectoryUnavailable, UnknownCustomer) as error:
                log.warning("opt-out of %s not yet reported to the risk API: %s", row.customer_id, error)
                return
            self.queue.opt_out_reported(row.customer_id, now)

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)
