"""The phone gateway: Asterisk calls in over AudioSocket, each call runs through the voice
pipeline, and AMI carries the call control.

For every AudioSocket connection:
1. the call UUID is matched to its Asterisk channel (the dialplan's `UserEvent(IvrCall)`), which
   gives the caller's number; the number is looked up in the risk-check API (salutation, age,
   persona tags) and counts toward L1 in the dialogue core; without a recogniser that hears names
   (keypad only, or Whisper) the gateway also vouches for the number to the risk API itself, so
   that the caller, who cannot say a name to it, may prove L1 with it and ID digits on the keypad;
2. `ivr_config/priority.yaml` gives the call a tier (emergency, care, VIP, repeat caller…);
3. the call runs through the voice pipeline until the caller hangs up or is handed over;
4. a hand-over attaches the dialogue core's summary to the channel (`IVR_SUMMARY`,
   `IVR_HANDOFF_ID`: the agent desk reads the same record from the risk API), sets the queue
   priority (`QUEUE_PRIO`) and redirects the channel into the agents' queue; when the queue
   is saturated, a caller whose tier allows it is offered a callback instead;
5. an outbound call's end reports what the conversation came to (telephony/outcomes.py) to the
   dialler, for the attempt the dialplan's UserEvent named (`OriginateId`).

Without AMI (no `ASTERISK_AMI_SECRET`, or Asterisk's manager unreachable), calls still run: no
caller number, and a caller who wants a person is offered a callback instead of a transfer.
With AMI up, a UUID the dialplan did not announce is refused: no Asterisk call of ours has it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ivr_config import environment
from ivr_config.environment import SettingsError, port_number
from quality.events import CALL
from quality.publisher import StreamPublisher
from quality.store import SqlEventStore, events_url
from risk_api_client import RiskApiHttp, RiskApiRefused, RiskApiUnavailable
from telephony import metrics as call_metrics
from telephony.ami import (
    CORRELATION_EVENT,
    DIRECTORY_SIZE,
    SESSION_RESUMED,
    AmiClient,
    AmiConfig,
    AmiError,
    ChannelDirectory,
    ChannelInfo,
    Event,
    consume_events,
)
from telephony.audiosocket import (
    DEFAULT_MAX_CALLS,
    AudioIn,
    AudioSocketCall,
    AudioSocketServer,
    DtmfIn,
    HangupIn,
)
from telephony.outcomes import OutcomeReporter, conversation_outcome
from telephony.priority import DEFAULT_RULES_PATH, CallFacts, PriorityRules, Tier, load_priority_rules
from trust.asgi import BearerGate, BodyLimit
from trust.env_secrets import SecretError, optional_secret, require_secret
from trust.log_format import configure_logging, log_context
from trust.metrics import MetricsEndpoint, metrics_token
from trust.serving import serving_http
from voice.audio import TELEPHONE_RATE
from voice.call import CallResult, VoiceEngines, run_call
from voice.config import load_voice_config
from voice.frames import (
    CallbackBooked,
    CallStarted,
    Control,
    Frame,
    Hangup,
    InputAudio,
    Keypress,
    TransferDeclined,
)
from voice.kokoro import start_prerender, stop_prerender

log = logging.getLogger(__name__)

CHANNEL_LOOKUP_SECONDS = 2.0
# The dialplan's hand-over target and queue (ivr_config/asterisk/extensions.conf, queues.conf).
HANDOVER_CONTEXT = "ivr-handover"
HANDOVER_EXTEN = "agents"
AGENT_QUEUE = "agents"
# Every queue's callers, as the queue watchers ask after a reconnect: one list, asked once for all.
ALL_QUEUES = ("QueueStatus", None, "QueueStatusComplete")
MAX_CONTROL_BODY = 1024  # a call id in JSON


@dataclass(frozen=True)
class GatewaySettings:
    host: str
    port: int
    rasa_url: str
    risk_api_url: str
    risk_api_token: str
    ami: AmiConfig | None
    priority_rules: Path = DEFAULT_RULES_PATH
    health_port: int = 9093
    # The health/metrics/queue routes' address: AUDIOSOCKET_HOST unless GATEWAY_HEALTH_HOST says
    # otherwise (a container exposes them to the web server, never the AudioSocket).
    health_host: str | None = None
    max_calls: int = DEFAULT_MAX_CALLS
    share_port: bool = False  # one of several gateway processes on the AudioSocket address (SO_REUSEPORT)
    outbound_url: str | None = None  # the dialler, told each outbound call's outcome
    outbound_token: str | None = dataclasses.field(default=None, repr=False)
    metrics_token: str | None = dataclasses.field(default=None, repr=False)  # monitoring's, for /metrics
    # The web server's, for moving a waiting call up the agents' queue; unset: nobody may.
    desk_token: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> GatewaySettings:
        try:
            token = require_secret("RISK_API_TOKEN", env)
        except SecretError as error:
            raise SettingsError(f"{error} (RISK_API_TOKEN: the risk API's gateway-role token)") from None
        return cls(
            host=environment.text(env, "AUDIOSOCKET_HOST", "127.0.0.1"),
            port=port_number(env, "AUDIOSOCKET_PORT", 9092),
            rasa_url=environment.text(env, "RASA_URL", "http://127.0.0.1:5005"),
            risk_api_url=environment.text(env, "RISK_API_URL", "http://127.0.0.1:8400"), risk_api_token=token,
            ami=AmiConfig.from_env(env) if environment.text(env, "ASTERISK_AMI_SECRET") else None,
            priority_rules=environment.path(env, "IVR_PRIORITY_RULES", DEFAULT_RULES_PATH),
            health_port=port_number(env, "GATEWAY_HEALTH_PORT", 9093),
            max_calls=environment.whole_number(env, "AUDIOSOCKET_MAX_CALLS", DEFAULT_MAX_CALLS, minimum=1),
            health_host=environment.optional_text(env, "GATEWAY_HEALTH_HOST"),
            share_port=environment.flag(env, "AUDIOSOCKET_SHARED"),
            outbound_url=environment.optional_text(env, "OUTBOUND_URL"),
            outbound_token=optional_secret("OUTBOUND_GATEWAY_TOKEN", env),
            metrics_token=metrics_token(env), desk_token=optional_secret("GATEWAY_DESK_TOKEN", env))


class CallerLookup:
    """Who is calling, from the risk-check API with the gateway's role token; an unknown number or
    an API that is down leaves the caller anonymous (they verify in the conversation instead).
    Nothing here fails a call: every failure is logged and answered with None."""

    def __init__(self, risk_api_url: str, token: str) -> None:
        self._risk = RiskApiHttp(risk_api_url, token, timeout_seconds=3.0)
        self._last_call: dict[str, float] = {}

    async def customer(self, phone: str | None) -> dict[str, Any] | None:
        return await self._lookup({"phone": phone}) if phone else None

    async def dialled_customer(self, customer_id: str | None) -> dict[str, Any] | None:
        """The customer an outbound call was placed to; their number on file is the one called."""
        return await self._lookup({"customer_id": customer_id}) if customer_id else None

    async def book_callback(self, call_uuid: str, channel: str, phone: str, preferred_time: str) -> datetime | None:
        """A callback to the number calling (no identity needed: an agent calls that very number and
        verifies then); None when the risk API would not take it."""
        body = {"session_id": call_uuid, "channel": channel, "phone": phone, "preferred_time": preferred_time}
        try:
            booked = await self._risk.call("POST", "/callbacks", json=body)
        except (RiskApiUnavailable, RiskApiRefused) as error:
            log.error("call %s: callback not booked: %s", call_uuid, error)
            return None
        return datetime.fromisoformat(booked["scheduled_for"])

    async def vouch_for_line(self, call_uuid: str, channel: str, phone: str) -> None:
        """Tells the risk API, with the gateway's own token, which line this call comes from: the
        conversation may then prove L1 with it and ID digits (its rules allowing: `l1_methods`).
        Refused or unanswered, the caller is asked the usual questions instead."""
        body = {"session_id": call_uuid, "channel": channel, "phone": phone}
        try:
            await self._risk.call("POST", "/verification/line", json=body)
        except (RiskApiUnavailable, RiskApiRefused) as error:
            log.error("call %s: line not vouched for: %s", call_uuid, error)

    async def handoff_call_state(self, handoff_id: str, state: str, agent: str | None) -> None:
        body = {"state": state, **({"agent": agent[:64]} if agent else {})}
        try:
            await self._risk.call("POST", f"/handoffs/{handoff_id}/call-state", json=body)
        except (RiskApiUnavailable, RiskApiRefused) as error:
            log.error("hand-over %s: call state %s not recorded: %s", handoff_id, state, error)

    async def _lookup(self, body: dict[str, str]) -> dict[str, Any] | None:
        try:
            # In the body: no caller's number in any URL or access log.
            return await self._risk.call("POST", "/customers/lookup", json=body)
        except RiskApiRefused as refusal:
            if refusal.status != 404:
                log.error("caller lookup refused: %s", refusal)
            return None
        except RiskApiUnavailable as error:
            log.error("caller lookup failed: %s", error)
            return None

    def hours_since_last_call(self, phone: str | None) -> float | None:
        """Remembered per gateway process (a restart forgets): enough to spot a caller ringing
        back within the day on the same gateway."""
        if not phone:
            return None
        now = time.time()
        previous = self._last_call.get(phone)
        self._last_call[phone] = now
        return None if previous is None else (now - previous) / 3600

    async def close(self) -> None:
        await self._risk.close()


class QueueWatch:
    """How many callers wait in each agent queue, from Asterisk's QueueCallerJoin/Leave events."""

    def __init__(self, ami: AmiClient) -> None:
        self.waiting: dict[str, int] = {}
        self._ami = ami
        self._events = ami.subscribe({"QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", SESSION_RESUMED})
        self._task = asyncio.create_task(consume_events(self._events, self._take, "queue watch"), name="queue-watch")

    async def _take(self, event: Event) -> None:
        if event.get("Event") == SESSION_RESUMED:  # what changed while AMI was down: ask Asterisk
            queues = await self._ami.resync(*ALL_QUEUES)
            if queues is None:
                return  # unanswered: the counts known so far; each join or leave carries its queue's count
            self.waiting = {params.get("Queue", ""): int(params["Calls"]) for params in queues
                            if params.get("Event") == "QueueParams" and params.get("Calls", "").isdigit()}
        elif event.get("Count", "").isdigit():
            self.waiting[event.get("Queue", "")] = int(event["Count"])

    async def close(self) -> None:
        self._task.cancel()
        self._ami.unsubscribe(self._events)


class QueueOutcomes:
    """Tells the risk API what Asterisk's queue did with each phone hand-over: a queue member
    answered (AgentConnect) or the caller hung up waiting (QueueCallerAbandon), so the agent
    desk's waiting list is the queue's.

    While AMI was down those events are lost: after a reconnect the queue is asked (QueueStatus)
    and a hand-over whose call no longer waits there is reported `unknown` (answered or abandoned
    cannot be told afterwards): off the desk's waiting list, for an agent to take and close."""

    def __init__(self, ami: AmiClient, callers: CallerLookup) -> None:
        self._callers = callers
        self._ami = ami
        self._handoffs: OrderedDict[str, str] = OrderedDict()  # channel -> hand-over id
        self.unknown = 0  # hand-overs whose call left the queue while AMI was down
        self._events = ami.subscribe({"AgentConnect", "QueueCallerAbandon", SESSION_RESUMED})
        self._task = asyncio.create_task(consume_events(self._events, self._take, "queue outcomes"),
                                         name="queue-outcomes")

    def queued(self, channel: str, handoff_id: str) -> None:
        _remember(self._handoffs, channel, handoff_id)

    async def _take(self, event: Event) -> None:
        if event.get("Event") == SESSION_RESUMED:
            await self._resync()
            return
        handoff_id = self._handoffs.pop(event.get("Channel", ""), None)
        if handoff_id is None:
            return  # not a hand-over of ours (or an agent's second leg)
        connected = event.get("Event") == "AgentConnect"
        await self._callers.handoff_call_state(handoff_id, "connected" if connected else "abandoned",
                                               event.get("MemberName") if connected else None)

    async def _resync(self) -> None:
        entries = await self._ami.resync(*ALL_QUEUES)
        if entries is None:
            return  # not known: each hand-over keeps waiting for its own event
        waiting = {entry.get("Channel") for entry in entries
                   if entry.get("Event") == "QueueEntry" and entry.get("Queue") == AGENT_QUEUE}
        gone = [channel for channel in self._handoffs if channel not in waiting]
        for channel in gone:
            handoff_id = self._handoffs.pop(channel)
            log.warning("hand-over %s: its call left the queue while AMI was down; answered or abandoned is "
                        "not known, reported unknown for an agent to close", handoff_id)
            self.unknown += 1
            await self._callers.handoff_call_state(handoff_id, "unknown", None)

    async def close(self) -> None:
        self._task.cancel()
        self._ami.unsubscribe(self._events)


class NotQueued(Exception):
    """The call is not one this gateway handed to the agents' queue, or it no longer waits there."""


class QueuedCalls:
    """The calls this gateway handed to the agents' queue and which wait there now (from
    QueueCallerJoin until QueueCallerLeave), so that a supervisor may move one up the queue."""

    def __init__(self, ami: AmiClient, top_tier: Tier) -> None:
        self._ami = ami
        self._top_tier = top_tier  # priority.yaml's highest
        self._channels: OrderedDict[str, str] = OrderedDict()  # call UUID -> channel, as handed over
        # Channels in the agents' queue now: every join, ours or not (its event may come before
        # the transfer's bookkeeping), each until it leaves. None: not known (Asterisk did not
        # answer QueueStatus after a reconnect), Asterisk itself then says whether a call waits.
        self._waiting: OrderedDict[str, None] | None = OrderedDict()
        self._events = ami.subscribe({"QueueCallerJoin", "QueueCallerLeave", SESSION_RESUMED})
        self._task = asyncio.create_task(consume_events(self._events, self._take, "queued calls"),
                                         name="queued-calls")

    def handed_over(self, call_uuid: str, channel: str) -> None:
        _remember(self._channels, call_uuid, channel)

    async def _take(self, event: Event) -> None:
        if event.get("Event") == SESSION_RESUMED:
            # Joins and leaves missed while AMI was down: the queue as Asterisk has it now (the
            # events queued meanwhile are applied after it, in order).
            entries = await self._ami.resync(*ALL_QUEUES)
            self._waiting = None if entries is None else OrderedDict(
                (entry.get("Channel", ""), None) for entry in entries
                if entry.get("Event") == "QueueEntry" and entry.get("Queue") == AGENT_QUEUE)
        elif event.get("Queue") != AGENT_QUEUE or self._waiting is None:
            return
        elif event.get("Event") == "QueueCallerJoin":
            _remember(self._waiting, event.get("Channel", ""), None)
        else:
            self._waiting.pop(event.get("Channel", ""), None)

    def waiting(self, channel: str) -> bool:
        """Asterisk said the channel joined the agents' queue and has not said it left (or the
        queue is not known since a reconnect: Asterisk's answer to the move decides)."""
        return self._waiting is None or channel in self._waiting

    async def raise_priority(self, call_uuid: str) -> int:
        """The call to the highest tier's priority, moved up at once (`Immediate`), and that tier
        on its channel (`IVR_TIER`: back from the queue unanswered, it waits again as raised); the
        priority set. NotQueued for a call not waiting; AmiError when Asterisk is unreachable."""
        channel = self._channels.get(call_uuid)
        if channel is None or not self.waiting(channel):
            raise NotQueued(call_uuid)
        try:
            await self._ami.queue_change_priority_caller(AGENT_QUEUE, channel, self._top_tier.queue_priority)
        except AmiError as error:
            if not error.response:
                raise  # no answer: not connected, or it timed out
            # Asterisk answered that it has no such caller: it left before the leave event came.
            log.info("call %s: no longer in queue %s: %s", call_uuid, AGENT_QUEUE, error)
            if self._waiting is not None:
                self._waiting.pop(channel, None)
            raise NotQueued(call_uuid) from error
        log.info("call %s: raised to priority %d in queue %s", call_uuid, self._top_tier.queue_priority, AGENT_QUEUE)
        try:
            await self._ami.setvar(channel, "IVR_TIER", self._top_tier.name)
        except AmiError as error:  # raised all the same; only a later return from the queue forgets it
            log.warning("call %s: tier %s not kept on the channel: %s", call_uuid, self._top_tier.name, error)
        return self._top_tier.queue_priority

    async def close(self) -> None:
        self._task.cancel()
        self._ami.unsubscribe(self._events)


def _remember(entries: OrderedDict[str, Any], key: str, value: Any) -> None:
    """Newest last, at most DIRECTORY_SIZE entries (a real Asterisk's leave events free them too)."""
    entries.pop(key, None)
    entries[key] = value
    while len(entries) > DIRECTORY_SIZE:
        entries.popitem(last=False)


class AudioSocketTransport:
    """One AudioSocket connection as a voice pipeline's transport: its events in as frames, the
    output clock's frames out with `send_frame` (the output paces them), hang-up as the only
    telephony instruction. Anything that plays audio to a call goes this way (the gateway, the
    tests, bench/telephony.py)."""

    def __init__(self, audio: AudioSocketCall) -> None:
        self.audio = audio

    async def write_frame(self, pcm: bytes) -> None:
        await self.audio.send_frame(pcm)  # AudioOutput paces; queueing here again would escape its flush

    async def control(self, frame: Control) -> Frame | None:
        if frame.action == "hangup":
            await self.audio.hangup()
        return None

    async def frames(self) -> AsyncIterator[Frame]:
        async for event in self.audio:
            if isinstance(event, AudioIn):
                yield InputAudio(event.pcm, event.sample_rate)
            elif isinstance(event, DtmfIn):
                yield Keypress(event.digit)
            elif isinstance(event, HangupIn):
                yield Hangup("caller hung up")
                return
            else:
                yield Hangup(f"Asterisk reported {event.description}")
                return


class PhoneCall(AudioSocketTransport):
    """The sink of one call's pipeline: audio to the AudioSocket, control to AMI."""

    def __init__(self, gateway: Gateway, audio: AudioSocketCall, channel: ChannelInfo | None, call: CallStarted,
                 facts: CallFacts, tier: Tier) -> None:
        super().__init__(audio)
        self.gateway = gateway
        self.channel = channel
        self.call = call
        self.facts = facts
        self.tier = tier
        # What the gateway did with the call, for an outbound call's outcome (telephony/outcomes.py).
        self.handed_over = False
        self.callback_booked = False

    async def control(self, frame: Control) -> Frame | None:
        if frame.action == "handoff":
            return await self.gateway.hand_over(self, frame.details)
        if frame.action == "callback":
            return await self.gateway.book_callback(self, frame.details)
        return await super().control(frame)


class Gateway:
    def __init__(self, settings: GatewaySettings, engines: VoiceEngines, rules: PriorityRules,
                 ami: AmiClient | None) -> None:
        self.settings = settings
        self.engines = engines
        self.rules = rules
        self.ami = ami
        self.directory = ChannelDirectory(ami) if ami else None
        self.queues = QueueWatch(ami) if ami else None
        self.callers = CallerLookup(settings.risk_api_url, settings.risk_api_token)
        self.outcomes = QueueOutcomes(ami, self.callers) if ami else None
        self.waiting_calls = QueuedCalls(ami, rules.tiers[0]) if ami else None
        self.reporter = OutcomeReporter(settings.outbound_url, settings.outbound_token)
        self.server = AudioSocketServer(self.handle_call, settings.host, settings.port,
                                        max_calls=settings.max_calls, share_port=settings.share_port)
        self.handovers = 0
        self.callbacks = 0

    async def start(self) -> None:
        if self.directory is not None:
            self.directory.start()
        else:
            log.warning("AMI is off (ASTERISK_AMI_SECRET not set): no caller numbers, and callers who "
                        "want a person are offered a callback instead of a transfer")
        if not self.reporter.enabled:
            log.warning("outbound calls' outcomes are not reported to the dialler (OUTBOUND_URL and "
                        "OUTBOUND_GATEWAY_TOKEN not both set)")
        await self.server.start()

    async def handle_call(self, audio: AudioSocketCall) -> None:
        ami_session = self._ami_session()
        channel = await self._channel(audio.uuid)
        if channel is None and ami_session is not None and self._ami_session() == ami_session:
            # The dialplan raises the UserEvent before AudioSocket(); with the same AMI session up from
            # the connection until now it would have come: nothing of ours dialled this UUID.
            # (With AMI down or reconnecting it could have been missed: such calls are served.)
            log.warning("call %s: refused: AMI is up but no %s UserEvent announced this UUID", audio.uuid,
                        CORRELATION_EVENT)
            await audio.refuse()
            return
        fields = channel.fields if channel else {}
        outbound = channel is not None and channel.direction == "outbound"
        # Back from the agents' queue unanswered: the same call, queued `Handovers` times so far.
        queue_returns = _count(fields.get("Handovers")) if fields.get("QueueStatus") else 0
        if outbound:
            # An originated call's caller ID is the number we present: the customer is the one the
            # dialer named on the channel, and the number called is theirs on file.
            customer = await self.callers.dialled_customer(fields.get("CustomerId"))
            caller_number = customer.get("phone") if customer else None
        else:
            caller_number = channel.caller_number if channel else None
            customer = await self.callers.customer(caller_number)
        # A call back from the queue is not a caller ringing again: it keeps the tier it had.
        hours = None if outbound or queue_returns else self.callers.hours_since_last_call(caller_number)
        facts = CallFacts.from_customer_summary(customer, hours)
        tier = (self._tier_named(fields.get("Tier")) if queue_returns else None) or self.rules.tier_for(facts)
        opening = f"/{fields['Flow']}" if outbound and fields.get("Flow") and not queue_returns else None
        call = CallStarted(
            call_id=audio.uuid, sample_rate=TELEPHONE_RATE, caller_number=caller_number,
            salutation=customer.get("salutation") if customer else None,
            priority_tier=tier.handoff_priority, short_greeting=tier.short_greeting or tier.skip_menus,
            slow_speech="elderly" in facts.tags, channel="outbound" if outbound else "voice", opening=opening,
            queue_returns=queue_returns, customer_timezone=customer.get("timezone") if outbound and customer else None)
        log.info("call %s: channel=%s direction=%s tier=%s known_customer=%s queue_returns=%d", audio.uuid,
                 channel.channel if channel else None, "outbound" if outbound else "inbound", tier.name,
                 customer is not None, queue_returns)
        if caller_number and not (self.engines.recognizer and self.engines.recognizer.hears_names):
            # The network's number (or the one an outbound call dialled), from us, never from the
            # conversation: L1 without a name the caller cannot key (keypad only) or a recogniser
            # cannot be trusted with (Whisper).
            await self.callers.vouch_for_line(audio.uuid, call.channel, caller_number)
        phone = PhoneCall(self, audio, channel, call, facts, tier)
        result: CallResult | None = None
        call_metrics.call_began(call.channel)
        try:
            with log_context(call_id=audio.uuid):
                result = await run_call(self.engines, call, phone.frames(), phone)
        finally:
            call_metrics.call_ended(call.channel, result)
            if outbound:
                # Whatever ended the call; sent in the background, never holding up the teardown.
                replies = [reply for _, reply in result.turns.turns] if result else []
                outcome = conversation_outcome(replies, phone.handed_over, phone.callback_booked)
                self.reporter.report(audio.uuid, fields.get("OriginateId"), outcome)

    def _tier_named(self, name: str | None) -> Tier | None:
        try:
            return self.rules.tier(name) if name else None
        except KeyError:
            return None

    def _ami_session(self) -> int | None:
        """Which AMI session is up (None: none); a UserEvent can only be missed while it changes."""
        return self.ami.reconnects if self.ami is not None and self.ami.connected else None

    async def _channel(self, call_uuid: str) -> ChannelInfo | None:
        if self.directory is None:
            return None
        try:
            return await self.directory.channel_for(call_uuid, CHANNEL_LOOKUP_SECONDS)
        except AmiError as error:
            log.warning("call %s: %s", call_uuid, error)
            return None

    async def hand_over(self, phone: PhoneCall, handoff: dict[str, Any]) -> Frame | None:
        """Summary onto the channel, queue priority, redirect into the agents' queue; or, when the
        queue is saturated and the caller's tier allows it, decline so the bot offers a callback."""
        # What the caller asked for can raise the tier (a fraud report is an emergency).
        by_request = self.rules.tier_for(dataclasses.replace(phone.facts, intent=handoff.get("flow")))
        tier = max(phone.tier, by_request, key=lambda candidate: candidate.queue_priority)
        waiting = self.queues.waiting.get(AGENT_QUEUE, 0) if self.queues else 0
        if tier.callback_when_saturated and waiting >= self.rules.saturated_when_waiting:
            log.info("call %s: %d callers waiting, offering a callback (tier %s)", phone.audio.uuid, waiting,
                     tier.name)
            return TransferDeclined(f"{waiting} callers waiting for an agent")
        if self.ami is None or not self.ami.connected or phone.channel is None:
            log.error("call %s: no call control (AMI %s, channel %s): offering a callback instead of a transfer",
                      phone.audio.uuid, "connected" if self.ami and self.ami.connected else "down",
                      phone.channel.channel if phone.channel else "unknown")
            return TransferDeclined("no call control to transfer with")
        # Shielded: a caller hanging up mid-transfer cancels the call's pipeline, not the transfer's
        # bookkeeping (the Redirect may already be done).
        return await asyncio.shield(self._transfer(phone, handoff, tier))

    async def _transfer(self, phone: PhoneCall, handoff: dict[str, Any], tier: Tier) -> Frame | None:
        assert self.ami is not None and phone.channel is not None
        channel = phone.channel.channel
        # A call queued again keeps the summary and hand-over id already on its channel.
        variables = {} if handoff.get("requeue") else {
            "IVR_SUMMARY": one_line(handoff.get("summary", "")),
            "IVR_HANDOFF_ID": str(handoff.get("handoff_id") or ""), "IVR_FLOW": str(handoff.get("flow") or "")}
        variables |= {"IVR_QUEUE_PRIO": str(tier.queue_priority), "IVR_TIER": tier.name}
        try:
            for name, value in variables.items():
                await self.ami.setvar(channel, name, value)
            await self.ami.redirect(channel, HANDOVER_CONTEXT, HANDOVER_EXTEN)
        except AmiError as error:
            log.error("call %s: transfer failed (%s): offering a callback instead", phone.audio.uuid, error)
            return TransferDeclined(f"transfer failed: {error}")
        self.handovers += 1
        phone.handed_over = True
        if self.outcomes is not None and handoff.get("handoff_id"):
            self.outcomes.queued(channel, str(handoff["handoff_id"]))
        if self.waiting_calls is not None:
            self.waiting_calls.handed_over(phone.audio.uuid, channel)
        if self.directory is not None:
            self.directory.forget(phone.audio.uuid)  # if it comes back, its new UserEvent tells how
        log.info("call %s: handed over to queue %s at priority %d (tier %s)%s: %s", phone.audio.uuid,
                 AGENT_QUEUE, tier.queue_priority, tier.name, " again" if handoff.get("requeue") else "",
                 handoff.get("reason"))
        # The redirect took the channel out of AudioSocket(): this session is over.
        await phone.audio.hangup()
        return None

    async def book_callback(self, phone: PhoneCall, details: dict[str, Any]) -> Frame:
        number = phone.call.caller_number
        if not number:
            return CallbackBooked(None)
        scheduled = await asyncio.shield(self.callers.book_callback(
            phone.audio.uuid, phone.call.channel, number, str(details.get("preferred_time") or "尽快")))
        if scheduled is not None:
            self.callbacks += 1
            phone.callback_booked = True
            log.info("call %s: callback booked for %s", phone.audio.uuid, scheduled.isoformat())
        return CallbackBooked(scheduled)

    async def close(self) -> None:
        await self.server.close()
        for part in (self.directory, self.queues, self.outcomes, self.waiting_calls, self.callers, self.reporter):
            if part is not None:
                await part.close()
        if self.ami is not None:
            await self.ami.close()
        await self.engines.close()


class QueuedCall(BaseModel):
    """A call by its UUID (the conversation's id): in the body, in no URL or access log."""
    model_config = ConfigDict(extra="forbid")
    call_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")


def _refusal(status: int, code: str, message: str) -> HTTPException:
    return HTTPException(status, {"code": code, "message": message})


def health_app(gateway: Gateway) -> FastAPI:
    """`GET /health` for the stack's start-up check and for monitoring, `GET /ready` for readiness
    checks (both open, like /metrics with its own token); `POST /queue/priority` for the web server
    only (GATEWAY_DESK_TOKEN)."""
    app = FastAPI(title="phone gateway", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "calls": len(gateway.server.calls), "audiosocket_port": gateway.server.port,
                "speech_recognition": gateway.engines.recognizer is not None,
                "recognizer": gateway.engines.recognizer_state(),
                "ami_connected": gateway.ami.connected if gateway.ami else None,
                "handovers": gateway.handovers, "callbacks": gateway.callbacks,
                "outcomes_reported": gateway.reporter.reported,
                "handover_outcomes_unknown": gateway.outcomes.unknown if gateway.outcomes else 0}

    @app.get("/ready")
    def ready() -> JSONResponse:
        """For a load balancer or an orchestrator: 503 while the recogniser still loads (a caller
        who spoke then would wait for it); a recogniser that failed leaves the keypad: ready."""
        state = gateway.engines.recognizer_state()
        return JSONResponse({"ready": state != "loading", "recognizer": state}, 503 if state == "loading" else 200)

    @app.post("/queue/priority")
    async def raise_priority(body: QueuedCall) -> dict[str, Any]:
        """A supervisor moves a call waiting in the agents' queue to the front (the highest
        tier's priority); 404 for a call this gateway did not queue or that no longer waits."""
        if gateway.waiting_calls is None or gateway.ami is None or not gateway.ami.connected:
            raise _refusal(503, "ami_unavailable", "电话系统（Asterisk AMI）未连接，暂时无法调整排队优先级。")
        try:
            priority = await gateway.waiting_calls.raise_priority(body.call_id)
        except NotQueued:
            raise _refusal(404, "not_queued", "这通电话不在坐席队列中等待。") from None
        except AmiError as error:
            log.error("call %s: priority not raised: %s", body.call_id, error)
            raise _refusal(503, "ami_unavailable", "电话系统（Asterisk AMI）无响应，暂时无法调整排队优先级。") from None
        return {"queue": AGENT_QUEUE, "priority": priority}

    # Outermost last: no token → 401 before the body is read; then the size limit.
    app.add_middleware(BodyLimit, limit_for=lambda _path: MAX_CONTROL_BODY, refusal=_too_large)
    desk_token = gateway.settings.desk_token
    app.add_middleware(BearerGate, tokens=[desk_token] if desk_token else [], open_paths=("/health", "/ready"),
                       refusal={"detail": {"code": "unauthorized", "message": "需要网关令牌。"}})
    app.add_middleware(MetricsEndpoint, service="gateway", token=gateway.settings.metrics_token)
    return app


def _too_large(limit: int) -> dict[str, Any]:
    return {"detail": {"code": "too_large", "message": f"请求体超过 {limit} 字节。"}}


def _count(text: str | None) -> int:
    """A count from a channel variable; at least 1 (the call did come back from the queue)."""
    return max(1, int(text)) if text and text.isdigit() else 1


def one_line(text: str) -> str:
    """AMI is line based: a newline in a variable would end the action early."""
    return " ".join(str(text).split())


async def serve(settings: GatewaySettings) -> None:
    engines = VoiceEngines.load(load_voice_config(), settings.rasa_url)
    call_events = engines.call_events = StreamPublisher(SqlEventStore(events_url()), CALL)  # quality inspection
    await engines.synthesizer.prerender(engines.config.turns.prompts.fixed(), TELEPHONE_RATE)
    prerendering = await start_prerender(engines.config.kokoro)  # Kokoro's prompts, in the background
    rules = load_priority_rules(settings.priority_rules)
    ami = AmiClient(settings.ami) if settings.ami else None
    if ami is not None:
        await ami.connect(retry_in_background=True)
    gateway = Gateway(settings, engines, rules, ami)
    await gateway.start()
    async with serving_http(health_app(gateway), settings.health_host or settings.host, settings.health_port) as stop:
        await stop.wait()
    await gateway.close()
    await stop_prerender(prerendering)
    call_events.close()


def main() -> int:
    try:
        configure_logging("gateway")
        settings = GatewaySettings.from_env()
    except SettingsError as error:
        print(f"phone gateway: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
