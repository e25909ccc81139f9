"""Call control over the Asterisk Manager Interface, as asyncio coroutines over `asterisk-ami`.

Why wrap `asterisk-ami` (0.1.7) rather than replace it: it speaks the wire protocol correctly
(banner, `Key: Value` blocks, ActionID matching) and the brief asks for it. What it does not do
well is handled here, on the asyncio side:

* It runs one reader thread per connection and calls our callbacks on that thread; an exception
  escaping a callback becomes `NameError: traceback` and kills the reader. Every callback here
  only hands data to the event loop with `call_soon_threadsafe` and never raises.
* Its `AutoReconnect` thread blocks on futures and pings every 0.5 s; instead a supervisor task
  here pings every `keepalive_seconds` and reconnects with exponential backoff
  (`reconnect_min_seconds` doubling up to `reconnect_max_seconds`), logging in again each time.
* Its socket timeout doubles as a read timeout: a connection silent for that long is reported
  as disconnected. We set it to three keepalive periods, so only a dead peer trips it.
* Its connection-lost path does not fail pending actions; we fail them with `AmiError`.

Actions while disconnected raise `AmiError("not connected")` at once rather than waiting: a
caller on the line is better served by the bot's fallback than by a silent wait.

Call correlation (`ChannelDirectory`): the dialplan raises
`UserEvent(IvrCall,Uuid: ${IVR_UUID},Direction: ...)` just before `AudioSocket(${IVR_UUID},...)`.
Asterisk adds the channel snapshot to a UserEvent (Channel, CallerIDNum, CallerIDName, Uniqueid,
Linkedid, ...), so the event maps the AudioSocket UUID to the channel and the caller's number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asterisk.ami import AMIClient, SimpleAction
from asterisk.ami.action import Action

from ivr_config import environment
from ivr_config.environment import SettingsError
from voice.clock import Sleep

log = logging.getLogger(__name__)

CORRELATION_EVENT = "IvrCall"  # the UserEvent name the dialplan raises before AudioSocket
# Not an Asterisk event: dispatched after each reconnect, so that a watcher of Asterisk's state
# asks for it again: the events sent while the connection was down are lost.
SESSION_RESUMED = "IvrAmiSessionResumed"
EVENT_QUEUE_SIZE = 1000
RESYNC_TRIES = 5  # a list action after a reconnect (resync), before the watcher says it does not know
DIRECTORY_SIZE = 10000  # remembered calls; a real Asterisk also sends Hangup to free entries


class AmiError(Exception):
    """An AMI action failed, timed out, or the manager is unreachable."""

    def __init__(self, message: str, response: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.response = dict(response or {})


class AmiLoginError(AmiError):
    """Asterisk refused the username/secret."""


@dataclass(frozen=True)
class AmiConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "ivr-bot"
    secret: str = field(default="", repr=False)
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0
    keepalive_seconds: float = 10.0
    action_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AmiConfig:
        """ASTERISK_AMI_HOST / _PORT / _USERNAME / _SECRET; the secret is required."""
        secret = environment.text(env, "ASTERISK_AMI_SECRET")
        if not secret:
            raise SettingsError("ASTERISK_AMI_SECRET is not set: put the secret of the [ivr-bot] user of "
                                "manager.conf in the gateway's environment")
        return cls(host=environment.text(env, "ASTERISK_AMI_HOST", "127.0.0.1"),
                   port=environment.port_number(env, "ASTERISK_AMI_PORT", 5038),
                   username=environment.text(env, "ASTERISK_AMI_USERNAME", "ivr-bot"), secret=secret)


Response = dict[str, str]
Event = dict[str, str]


@dataclass(frozen=True)
class _Pending:
    name: str
    future: asyncio.Future[Response]
    session: AMIClient


async def _end_session(session: AMIClient) -> None:
    """Stop an asterisk-ami session and its reader thread.

    `AMIClient.disconnect()` only closes the socket, which on Linux does not wake a thread blocked
    in recv(); it would then wait for the socket timeout. Shutting the socket down first wakes it.
    """
    with contextlib.suppress(OSError, AttributeError):
        session._socket.shutdown(socket.SHUT_RDWR)  # asterisk-ami 0.1.7 keeps its socket here
    await asyncio.to_thread(session.disconnect)


class AmiClient:
    """One supervised AMI session; actions are coroutines, events go to asyncio queues."""

    def __init__(self, config: AmiConfig, sleep: Sleep = asyncio.sleep) -> None:
        self.config = config
        self._sleep = sleep  # the reconnect backoff's waits (tests check the delays, not the wall clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: AMIClient | None = None
        self._pending: dict[str, _Pending] = {}
        self._resyncs: dict[tuple[Any, ...], asyncio.Future[list[Event] | None]] = {}  # asked now, by list
        self._subscribers: dict[asyncio.Queue[Event], frozenset[str] | None] = {}
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._session is not None

    async def connect(self, retry_in_background: bool = False) -> None:
        """Connect and log in once, then keep the session up in the background. An unreachable
        Asterisk raises, or with `retry_in_background` is retried by the supervisor (a gateway
        starting before Asterisk); refused credentials always raise."""
        self._loop = asyncio.get_running_loop()
        self._closing = False
        try:
            await self._open_session()
        except AmiLoginError:
            raise
        except AmiError as error:
            if not retry_in_background:
                raise
            log.warning("%s; retrying in the background", error)
            self._lost.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="ami-supervisor")

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(OSError):
                session.send(Action("Logoff"))
            await _end_session(session)
        self._fail_pending(None, "client closed")

    # --- events -------------------------------------------------------------------------------

    def subscribe(self, event_names: set[str] | None = None, maxsize: int = EVENT_QUEUE_SIZE) -> asyncio.Queue[Event]:
        """A queue receiving events (`{"Event": name, ...fields}`), all or only `event_names`."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._subscribers[queue] = frozenset(event_names) if event_names is not None else None
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.pop(queue, None)

    def _dispatch(self, event: Event) -> None:
        for queue, names in self._subscribers.items():
            if names is not None and event.get("Event") not in names:
                continue
            if queue.full():
                queue.get_nowait()  # a slow subscriber loses its oldest event, not the newest
                log.warning("AMI subscriber queue full; dropped its oldest event")
            queue.put_nowait(event)

    # --- actions ------------------------------------------------------------------------------

    async def action(self, name: str, fields: Mapping[str, Any] | None = None,
                     variables: Mapping[str, str] | None = None, timeout: float | None = None) -> Response:
        """Send any action; the response as a dict, or AmiError on `Response: Error`/timeout."""
        if self._session is None:
            raise AmiError(f"{name}: not connected to Asterisk at {self.config.host}:{self.config.port}")
        return await self._send(self._session, name, fields, variables, timeout)

    async def list_action(self, name: str, fields: Mapping[str, Any] | None, complete_event: str,
                          timeout: float | None = None) -> list[Event]:
        """A list action (QueueStatus, Status…): the events Asterisk sends for it, each carrying
        its ActionID, up to `complete_event`. AmiError when not connected, refused or not complete
        within the timeout."""
        if self._session is None:
            raise AmiError(f"{name}: not connected to Asterisk at {self.config.host}:{self.config.port}")
        action_id = f"ivr-{uuid.uuid4().hex}"
        replies = self.subscribe()  # before sending: the list may follow the response at once
        wait = timeout if timeout is not None else self.config.action_timeout_seconds
        try:
            async with asyncio.timeout(wait):
                await self._send(self._session, name, fields, action_id=action_id)
                items: list[Event] = []
                while True:
                    event = await replies.get()
                    if event.get("ActionID") != action_id:
                        continue
                    if event.get("Event") == complete_event:
                        return items
                    items.append(event)
        except TimeoutError:
            raise AmiError(f"{name}: the list did not end with {complete_event} within {wait:g} s") from None
        finally:
            self.unsubscribe(replies)

    async def resync(self, name: str, fields: Mapping[str, Any] | None, complete_event: str) -> list[Event] | None:
        """A list action that syncs a watcher's state, at start or after a reconnect (what changed
        while the connection was down); None when Asterisk never answered (a connection lost
        meanwhile brings another SESSION_RESUMED, hence another resync). Watchers asking the same
        while one is asked share its answer: after a reconnect Asterisk is asked once, not once
        per watcher."""
        key = (name, tuple(sorted((fields or {}).items())), complete_event)
        asked = self._resyncs.get(key)
        if asked is None:
            asked = self._resyncs[key] = asyncio.ensure_future(self._ask_until_answered(name, fields, complete_event))
            asked.add_done_callback(lambda _: self._resyncs.pop(key, None))
        return await asyncio.shield(asked)  # a watcher cancelled does not cancel the others' answer

    async def _ask_until_answered(self, name: str, fields: Mapping[str, Any] | None,
                                  complete_event: str) -> list[Event] | None:
        """Asked again on failure (Asterisk busy just after a restart), `reconnect_min_seconds`
        doubling, up to RESYNC_TRIES tries while connected."""
        delay = self.config.reconnect_min_seconds
        for attempt in range(1, RESYNC_TRIES + 1):
            try:
                return await self.list_action(name, fields, complete_event)
            except AmiError as error:
                if attempt == RESYNC_TRIES or not self.connected:
                    log.error("%s to sync with Asterisk failed (%d tries): %s", name, attempt, error)
                    return None
                log.warning("%s to sync with Asterisk failed (try %d, again in %.1f s): %s", name, attempt,
                            delay, error)
            await self._sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max_seconds)
        return None

    async def _send(self, session: AMIClient, name: str, fields: Mapping[str, Any] | None = None,
                    variables: Mapping[str, str] | None = None, timeout: float | None = None,
                    action_id: str | None = None) -> Response:
        assert self._loop is not None
        action_id = action_id or f"ivr-{uuid.uuid4().hex}"
        action = SimpleAction(name, **{key: value for key, value in (fields or {}).items() if value is not None})
        action.keys["ActionID"] = action_id
        action.variables = dict(variables or {})
        future: asyncio.Future[Response] = self._loop.create_future()
        self._pending[action_id] = _Pending(name, future, session)
        try:
            session.send_action(action, callback=self._threadsafe_response_callback(action_id))
        except OSError as error:
            self._pending.pop(action_id, None)
            self._connection_lost(session, error)
            raise AmiError(f"{name}: sending failed: {error}") from error
        wait = timeout if timeout is not None else self.config.action_timeout_seconds
        try:
            response = await asyncio.wait_for(future, wait)
        except asyncio.TimeoutError:
            raise AmiError(f"{name}: no response within {wait:g} s") from None
        finally:
            self._pending.pop(action_id, None)
        if response.get("Response", "").lower() == "error":
            raise AmiError(f"{name} failed: {response.get('Message', 'no message')}", response)
        return response

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> Response:
        return await self.action("Redirect", {"Channel": channel, "Context": context, "Exten": exten,
                                              "Priority": priority})

    async def hangup(self, channel: str, cause: int | None = None) -> Response:
        return await self.action("Hangup", {"Channel": channel, "Cause": cause})

    async def setvar(self, channel: str, variable: str, value: str) -> Response:
        return await self.action("Setvar", {"Channel": channel, "Variable": variable, "Value": value})

    async def getvar(self, channel: str, variable: str) -> str | None:
        """The value, or None when empty/unset (AMI does not tell the two apart)."""
        response = await self.action("Getvar", {"Channel": channel, "Variable": variable})
        return response.get("Value") or None

    async def queue_change_priority_caller(self, queue: str, channel: str, priority: int,
                                           immediate: bool = True) -> Response:
        return await self.action("QueueChangePriorityCaller", {
            "Queue": queue, "Caller": channel, "Priority": priority, "Immediate": "yes" if immediate else "no"})

    async def originate(self, channel: str, context: str, exten: str, priority: int = 1,
                        caller_id: str | None = None, variables: Mapping[str, str] | None = None,
                        timeout_ms: int = 30000, async_: bool = True) -> str:
        """Start an outbound call; returns the ActionID that the later OriginateResponse carries."""
        fields = {"Channel": channel, "Context": context, "Exten": exten, "Priority": priority,
                  "Timeout": timeout_ms, "CallerID": caller_id, "Async": "true" if async_ else "false"}
        # A synchronous Originate answers only once the callee picks up or the dial times out.
        wait = self.config.action_timeout_seconds + (0 if async_ else timeout_ms / 1000)
        response = await self.action("Originate", fields, variables, timeout=wait)
        return response["ActionID"]

    # --- connection ---------------------------------------------------------------------------

    async def _open_session(self) -> None:
        config = self.config
        session = AMIClient(address=config.host, port=config.port, timeout=config.keepalive_seconds * 3)
        session.add_listener(on_disconnect=self._threadsafe_disconnect_callback(session))
        session.add_event_listener(self._threadsafe_event_callback())
        try:
            await asyncio.to_thread(session.connect)
        except OSError as error:
            raise AmiError(f"cannot reach Asterisk AMI at {config.host}:{config.port}: {error}") from error
        try:
            await self._send(session, "Login", {"Username": config.username, "Secret": config.secret})
        except AmiError as error:
            await _end_session(session)
            if error.response:
                raise AmiLoginError(f"AMI login as {config.username!r} at {config.host}:{config.port} refused: "
                                    f"{error.response.get('Message', 'no reason given')}", error.response) from None
            raise
        self._session = session
        self._lost.clear()
        log.info("AMI connected to %s:%d as %s", config.host, config.port, config.username)

    async def _supervise(self) -> None:
        config = self.config
        while not self._closing:
            try:
                await asyncio.wait_for(self._lost.wait(), config.keepalive_seconds)
            except asyncio.TimeoutError:
                session = self._session
                try:
                    await self.action("Ping", timeout=config.keepalive_seconds)
                except AmiError as error:
                    if session is not None:
                        self._connection_lost(session, f"keepalive failed: {error}")
                continue
            delay = config.reconnect_min_seconds
            while not self._closing:
                await self._sleep(delay)
                try:
                    await self._open_session()
                except AmiError as error:
                    delay = min(delay * 2, config.reconnect_max_seconds)
                    log.warning("AMI reconnect failed (next try in %.1f s): %s", delay, error)
                    continue
                self.reconnects += 1
                self._dispatch({"Event": SESSION_RESUMED})
                break

    def _connection_lost(self, session: AMIClient, error: object) -> None:
        self._fail_pending(session, f"connection lost ({error})")
        if session is not self._session:
            return  # an old or not yet logged-in session's reader thread finishing
        self._session = None
        self._lost.set()
        if self._loop is not None:
            self._loop.create_task(_end_session(session))
        if not self._closing:
            log.warning("AMI connection to %s:%d lost: %s", self.config.host, self.config.port, error)

    def _fail_pending(self, session: AMIClient | None, reason: str) -> None:
        """Fail the actions sent on `session` (all when None)."""
        for action_id, pending in list(self._pending.items()):
            if session is None or pending.session is session:
                del self._pending[action_id]
                if not pending.future.done():
                    pending.future.set_exception(AmiError(f"{pending.name}: {reason}"))

    # --- callbacks run on asterisk-ami's reader thread: hand over to the loop, never raise -----

    def _to_loop(self, function: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(function, *args)

    def _threadsafe_response_callback(self, action_id: str) -> Any:
        def on_response(response: Any) -> None:
            try:
                data = {"Response": response.status, **response.keys}
                if response.follows:
                    data["Output"] = "\n".join(response.follows)
                self._to_loop(self._resolve, action_id, data)
            except Exception:  # an escaping exception would kill the reader thread
                log.exception("AMI response callback failed")
        return on_response

    def _resolve(self, action_id: str, response: Response) -> None:
        pending = self._pending.get(action_id)
        if pending is not None and not pending.future.done():
            pending.future.set_result(response)

    def _threadsafe_event_callback(self) -> Any:
        def on_event(event: Any, source: Any = None) -> None:
            try:
                self._to_loop(self._dispatch, {"Event": event.name, **event.keys})
            except Exception:  # see above
                log.exception("AMI event callback failed")
        return on_event

    def _threadsafe_disconnect_callback(self, session: AMIClient) -> Any:
        def on_disconnect(source: Any = None, error: object = None) -> None:
            try:
                self._to_loop(self._connection_lost, session, error or "closed by Asterisk")
            except Exception:  # see above
                log.exception("AMI disconnect callback failed")
        return on_disconnect


@dataclass(frozen=True)
class ChannelInfo:
    """What the dialplan's `UserEvent(IvrCall, ...)` told us about an AudioSocket call."""

    uuid: str
    channel: str
    caller_number: str | None
    caller_name: str | None
    unique_id: str | None
    linked_id: str | None
    direction: str  # "inbound" or "outbound"
    fields: dict[str, str]  # the whole event, e.g. IVR_* values the dialplan added


class ChannelDirectory:
    """Maps AudioSocket call UUIDs to AMI channels from the dialplan's IvrCall UserEvents."""

    def __init__(self, client: AmiClient, max_entries: int = DIRECTORY_SIZE) -> None:
        self._client = client
        self._max_entries = max_entries
        self._by_uuid: OrderedDict[str, ChannelInfo] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[ChannelInfo]]] = {}
        self._queue: asyncio.Queue[Event] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._queue = self._client.subscribe({"UserEvent", "Hangup"})
        self._task = asyncio.create_task(self._consume(), name="ami-channel-directory")

    async def close(self) -> None:
        if self._queue is not None:
            self._client.unsubscribe(self._queue)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def known(self, call_uuid: str) -> ChannelInfo | None:
        """The channel of a call whose UserEvent has come in and which has not hung up."""
        return self._by_uuid.get(call_uuid)

    async def channel_for(self, call_uuid: str, timeout: float) -> ChannelInfo:
        """The channel of an AudioSocket call; AmiError if its UserEvent does not come in time."""
        if call_uuid in self._by_uuid:
            return self._by_uuid[call_uuid]
        future: asyncio.Future[ChannelInfo] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(call_uuid, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise AmiError(f"no {CORRELATION_EVENT} UserEvent for call {call_uuid} within {timeout:g} s "
                           "(is the dialplan's UserEvent before AudioSocket, and the AMI user allowed "
                           "read=user?)") from None
        finally:
            waiters = self._waiters.get(call_uuid, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(call_uuid, None)

    def forget(self, call_uuid: str) -> None:
        """The call left AudioSocket (handed over): a return must wait for its new UserEvent."""
        self._by_uuid.pop(call_uuid, None)

    def record(self, event: Event) -> None:
        """Take in one AMI event (the consumer task does this; public for direct feeding)."""
        if event.get("Event") == "Hangup":
            for key in [key for key, info in self._by_uuid.items() if info.channel == event.get("Channel")]:
                del self._by_uuid[key]
            return
        if event.get("Event") != "UserEvent" or event.get("UserEvent") != CORRELATION_EVENT:
            return
        call_uuid = event.get("Uuid", "")
        if not call_uuid or not event.get("Channel"):
            # Field names only: the event carries the caller's number.
            log.warning("%s UserEvent without Uuid or Channel (fields: %s)", CORRELATION_EVENT, ", ".join(event))
            return
        info = ChannelInfo(
            uuid=call_uuid, channel=event["Channel"],
            caller_number=_known(event.get("CallerIDNum")), caller_name=_known(event.get("CallerIDName")),
            unique_id=event.get("Uniqueid"), linked_id=event.get("Linkedid"),
            direction=event.get("Direction") or "inbound", fields=dict(event))
        self._by_uuid[call_uuid] = info
        while len(self._by_uuid) > self._max_entries:
            self._by_uuid.popitem(last=False)
        for future in self._waiters.pop(call_uuid, []):
            if not future.done():
                future.set_result(info)

    async def _consume(self) -> None:
        assert self._queue is not None
        await consume_events(self._queue, self.record, "channel directory")


async def consume_events(events: asyncio.Queue[Event], handle: Callable[[Event], Awaitable[None] | None],
                         watcher: str) -> None:
    """Hand each event to `handle`, for ever. An event it fails on is logged (its name and the
    error's type only: the fields carry callers' numbers) and the next one is handled: one odd
    event must not end the watch for the life of the process."""
    while True:
        event = await events.get()
        try:
            handled = handle(event)
            if handled is not None:
                await handled
        except Exception as error:
            log.error("%s: a %s event failed (%s); going on with the next", watcher, event.get("Event", "?"),
                      type(error).__name__)


def _known(value: str | None) -> str | None:
    """Asterisk writes `<unknown>` for an absent caller ID."""
    return None if value in (None, "", "<unknown>") else value
