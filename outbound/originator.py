"""Placing a call: the `Originator` interface and its AMI implementation.

`AmiOriginator` sends an Async `Originate` (telephony.ami.AmiClient) into the `ivr-outbound`
context with the channel variables the dialplan and the phone gateway read:

    IVR_FLOW          the flow that opens the call
    IVR_CUSTOMER_ID   the customer called (the gateway looks them up by id, not by caller ID)
    IVR_ORIGINATE_ID  the attempt id (the dialplan's UserEvent repeats it as OriginateId)
    IVR_CALL_UUID     the conversation id the call will have (the AudioSocket UUID, Rasa's sender):
                      the dialler's events in the quality stream and the call's share it
    IVR_CAMPAIGN      the campaign
    IVR_MACHINE       what an answering machine gets: hangup | message (the campaign's `machine:`)
    IVR_MACHINE_PROMPT  with `message`: the sound the dialplan plays to the machine

and waits for Asterisk's `OriginateResponse`, matched by the ActionID `originate()` returns
(Asterisk 22, recorded in ../shared/asterisk-sessions/originate-outbound.ami.txt):

    Event: OriginateResponse / ActionID / Response: Success|Failure / Channel / Context / Exten /
    Reason / Uniqueid (<unknown> on failure) / CallerIDNum / CallerIDName

`Reason` is the dial's last control frame: 4 answered, 5 busy, 3 rang out (no answer), 1 hung up
before answering, 8 congestion, 0 failed (no such endpoint, channel unavailable). The event may
reach us before `originate()` returns: early events wait in a small buffer.

What the dialler learns from `dial()`: `answered`, `no_answer`, `busy`, `failed`, `unknown` (the
Originate may have been placed but no response came: AMI dropped, timed out) or `not_sent`
(certainly nothing reached Asterisk). Only `not_sent` lets the attempt be dialled again.
The dial channel carries the number: it is never logged or stored.

Answering machines: the dialplan runs `AMD()` on the answered call; on MACHINE it raises
`UserEvent(IvrMachine, OriginateId: <attempt id>, Uuid: <IVR_CALL_UUID>, AmdCause: ...)` and never
reaches the bot.
The OriginateResponse (Success) may come before or after it; `on_machine` listeners hear of it
whichever way round, and its channel's Hangup is followed like an answered call's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from telephony.ami import AmiClient, AmiError, Event, consume_events

log = logging.getLogger(__name__)

OUTBOUND_CONTEXT = "ivr-outbound"
OUTBOUND_EXTEN = "s"
EARLY_EVENTS = 1000  # OriginateResponses that came before their originate() returned
ANSWERED_CALLS = 10000  # Uniqueids of answered calls whose Hangup we wait for
REASONS = {"4": "answered", "5": "busy", "3": "no_answer", "1": "no_answer", "8": "failed", "0": "failed"}
MACHINE_EVENT = "IvrMachine"  # the dialplan's UserEvent name (ivr_config/asterisk/extensions.conf)
CONVERSATION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # DialRequest's
REASON_TEXT = {"0": "failed (no such endpoint or channel unavailable)", "1": "hung up before answering",
               "3": "rang without an answer", "4": "answered", "5": "busy", "8": "congestion"}


MachineListener = Callable[[str, str, str], None]  # (attempt id, detail, conversation id or "")


@dataclass(frozen=True)
class DialRequest:
    attempt_id: str
    campaign_id: str
    flow: str
    customer_id: str
    number: str = field(repr=False)
    machine: str = "hangup"  # the campaign's machine behaviour: hangup | message
    machine_prompt: str = ""  # with `message`: the sound to play
    # The call's conversation id if answered (the dialplan takes it as its AudioSocket UUID): a new
    # random one per Originate, naming nothing about the customer.
    conversation_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class DialResult:
    result: str  # answered | no_answer | busy | failed | unknown | not_sent
    reason: str = ""
    action_id: str | None = None
    uniqueid: str | None = None


class Originator(Protocol):
    @property
    def ready(self) -> bool:
        """Whether a dial could be sent now (the dialler claims nothing otherwise)."""
        ...

    @property
    def description(self) -> str: ...

    async def dial(self, request: DialRequest) -> DialResult: ...

    def on_call_end(self, listener: Callable[[str], None]) -> None:
        """`listener(attempt_id)` when an answered call hangs up."""
        ...

    def on_machine(self, listener: MachineListener) -> None:
        """`listener(attempt_id, detail, conversation_id)` when the dialplan found an answering machine on
        a call; the conversation id is the call's `IVR_CALL_UUID` as the dialplan repeats it ("" if not
        one), so a dialler started after the Originate still knows the call."""
        ...

    async def close(self) -> None: ...


class NullOriginator:
    """No call control configured: the dialler plans and decides, and dials nothing."""

    def __init__(self, why: str) -> None:
        self.why = why

    @property
    def ready(self) -> bool:
        return False

    @property
    def description(self) -> str:
        return f"off ({self.why})"

    async def dial(self, request: DialRequest) -> DialResult:
        return DialResult("not_sent", self.why)

    def on_call_end(self, listener: Callable[[str], None]) -> None:
        pass

    def on_machine(self, listener: MachineListener) -> None:
        pass

    async def close(self) -> None:
        pass


@dataclass(frozen=True)
class DialSettings:
    channel: str  # e.g. "PJSIP/{number}@trunk": {number} is the customer's number
    caller_id: str | None = None
    ring_seconds: int = 30
    response_margin_seconds: float = 30.0  # how long after the ring time an OriginateResponse may come
    variables: Mapping[str, str] = field(default_factory=dict)  # extra channel variables (trunk needs)

    def channel_for(self, number: str) -> str:
        return self.channel.format(number=number)


class AmiOriginator:
    def __init__(self, client: AmiClient, settings: DialSettings) -> None:
        self.client = client
        self.settings = settings
        self._events = client.subscribe({"OriginateResponse", "Hangup", "UserEvent"})
        self._waiting: dict[str, asyncio.Future[Event]] = {}
        self._early: OrderedDict[str, Event] = OrderedDict()
        self._answered: OrderedDict[str, str] = OrderedDict()  # Uniqueid -> attempt id
        self._listeners: list[Callable[[str], None]] = []
        self._machine_listeners: list[MachineListener] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(consume_events(self._events, self._take, "originate responses"),
                                         name="originate-responses")

    @property
    def ready(self) -> bool:
        return self.client.connected

    @property
    def description(self) -> str:
        state = "connected" if self.client.connected else "not connected"
        return f"AMI {self.client.config.host}:{self.client.config.port} ({state})"

    def on_call_end(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def on_machine(self, listener: MachineListener) -> None:
        self._machine_listeners.append(listener)

    async def dial(self, request: DialRequest) -> DialResult:
        if not self.client.connected:
            # Checked with no await before the action: AmiClient refuses before sending anything.
            return DialResult("not_sent", "AMI not connected")
        variables = {"IVR_FLOW": request.flow, "IVR_CUSTOMER_ID": request.customer_id,
                     "IVR_ORIGINATE_ID": request.attempt_id, "IVR_CALL_UUID": request.conversation_id,
                     "IVR_CAMPAIGN": request.campaign_id,
                     "IVR_MACHINE": request.machine,
                     **({"IVR_MACHINE_PROMPT": request.machine_prompt} if request.machine == "message" else {}),
                     **self.settings.variables}
        try:
            action_id = await self.client.originate(
                self.settings.channel_for(request.number), OUTBOUND_CONTEXT, OUTBOUND_EXTEN,
                caller_id=self.settings.caller_id, variables=variables, timeout_ms=self.settings.ring_seconds * 1000)
        except AmiError as error:
            if error.response:  # Asterisk answered `Response: Error`: no call was placed
                return DialResult("failed", f"Asterisk refused the Originate: {error.response.get('Message', '')}",
                                  error.response.get("ActionID"))
            # A timeout or a dropped connection after sending: the call may be ringing.
            return DialResult("unknown", f"no answer to the Originate: {error}")
        event = self._early.pop(action_id, None)
        if event is None:
            future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
            self._waiting[action_id] = future
            try:
                event = await asyncio.wait_for(future, self.settings.ring_seconds
                                               + self.settings.response_margin_seconds)
            except asyncio.TimeoutError:
                return DialResult("unknown", "Originate queued, but no OriginateResponse came", action_id)
            finally:
                self._waiting.pop(action_id, None)
        return self._result(request, action_id, event)

    def _result(self, request: DialRequest, action_id: str, event: Event) -> DialResult:
        reason = event.get("Reason", "")
        uniqueid = event.get("Uniqueid")
        uniqueid = None if uniqueid in (None, "", "<unknown>") else uniqueid
        if event.get("Response") == "Success":
            result = "answered"
        else:
            result = REASONS.get(reason, "failed")
            result = "failed" if result == "answered" else result  # a Failure is never an answer
        if result == "answered" and uniqueid:
            self._follow_hangup(uniqueid, request.attempt_id)
        text = f"OriginateResponse {event.get('Response', '?')}, reason {reason}: {REASON_TEXT.get(reason, 'unknown')}"
        return DialResult(result, text, action_id, uniqueid)

    def _follow_hangup(self, uniqueid: str, attempt_id: str) -> None:
        self._answered[uniqueid] = attempt_id
        while len(self._answered) > ANSWERED_CALLS:
            self._answered.popitem(last=False)

    def _machine(self, event: Event) -> None:
        attempt = event.get("OriginateId", "")
        if not attempt:
            log.warning("%s UserEvent without an OriginateId: ignored", MACHINE_EVENT)
            return
        uniqueid = event.get("Uniqueid")
        if uniqueid:  # the OriginateResponse may never come: follow the machine's channel from here
            self._follow_hangup(uniqueid, attempt)
        cause = event.get("AmdCause", "")[:40] or "?"
        behaviour = event.get("Behaviour") if event.get("Behaviour") in ("hangup", "message") else "hangup"
        detail = f"answering machine (AMD {cause}), behaviour {behaviour}: the call never reached the bot"
        conversation_id = event.get("Uuid", "")
        if not CONVERSATION_ID.fullmatch(conversation_id):
            conversation_id = ""
        for listener in self._machine_listeners:
            try:
                listener(attempt, detail, conversation_id)
            except Exception:
                log.exception("machine listener failed")

    def _take(self, event: Event) -> None:
        if event.get("Event") == "Hangup":
            attempt = self._answered.pop(event.get("Uniqueid", ""), None)
            if attempt is not None:
                for listener in self._listeners:
                    try:
                        listener(attempt)
                    except Exception:
                        log.exception("call-end listener failed")
            return
        if event.get("Event") == "UserEvent":
            if event.get("UserEvent") == MACHINE_EVENT:
                self._machine(event)
            return  # other UserEvents (IvrCall) are the gateway's
        action_id = event.get("ActionID", "")
        future = self._waiting.get(action_id)
        if future is not None and not future.done():
            future.set_result(event)
        elif action_id:
            self._early[action_id] = event
            while len(self._early) > EARLY_EVENTS:
                self._early.popitem(last=False)

    async def close(self) -> None:
        self.client.unsubscribe(self._events)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
