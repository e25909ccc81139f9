"""Replays AMI sessions recorded from a real Asterisk, as panoramisk's tests replay theirs.

The recordings (`../shared/asterisk-sessions` beside the repository, as CI has it, or
`ASTERISK_SESSIONS_DIR`; see their README.md) hold the bytes a real Asterisk 22 and our
clients exchanged during real calls:
`>>> +S.SSSs` client -> Asterisk, `<<< +S.SSSs` Asterisk -> client, the message's lines, a
blank line; sessions start with `### session NAME: ...`; `#` lines at the top are comments.

`ReplayAmiPeer` plays Asterisk's side of one recorded session on 127.0.0.1: the banner, then in
recorded order it waits for each recorded client action and compares it with what the client
sent (all fields but ActionID and Secret), and sends what Asterisk sent, with recorded ActionIDs
replaced by the client's. Keep-alive Pings are timer-driven, so they are answered whenever they
come and the recorded ones are not waited for. Anything else the client does differently fails
the test with what differed (`check()`, on leaving `async with`), and the client gets an error
response at once instead of waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

RECORDINGS = Path(os.environ.get("ASTERISK_SESSIONS_DIR")
                  or Path(__file__).resolve().parents[3] / "shared" / "asterisk-sessions")
CLIENT = ">>>"  # client -> Asterisk
SERVER = "<<<"  # Asterisk -> client
BANNER_PREFIX = "Asterisk Call Manager/"
# Recorded gaps are replayed up to this long: enough for separate TCP segments, not real durations.
MAX_PAUSE_SECONDS = 0.01
UNCOMPARED_FIELDS = {"actionid", "secret"}  # the client's own ids; secrets are recorded as <secret>

_SESSION_LINE = re.compile(r"^### session ([^:]+)(?::\s*(.*))?$")
_MESSAGE_LINE = re.compile(rf"^({CLIENT}|{SERVER}) \+(\d+(?:\.\d+)?)s$")


@dataclass(frozen=True)
class Message:
    direction: str  # CLIENT or SERVER
    offset: float  # seconds since the scenario started
    lines: tuple[str, ...]  # as on the wire, without line endings
    where: str = ""  # file:line of a recorded message, for error messages

    @classmethod
    def from_wire(cls, data: bytes, direction: str, offset: float) -> Message:
        text = data.decode("utf-8").removesuffix("\r\n\r\n")
        return cls(direction, offset, tuple(text.split("\r\n")), "sent by the client")

    @property
    def headers(self) -> list[tuple[str, str]]:
        """`Key: Value` pairs in order; a key may repeat (`Variable`)."""
        pairs = []
        for line in self.lines:
            key, _, value = line.partition(":")
            pairs.append((key.strip(), value.removeprefix(" ")))  # `Key: Value`; more blanks are the value's
        return pairs

    def get(self, key: str) -> str | None:
        """The first value of `key` (AMI header names are case-insensitive)."""
        return next((value for name, value in self.headers if name.lower() == key.lower()), None)

    @property
    def fields(self) -> dict[str, str]:
        """The message as a dict, first value of each key."""
        result: dict[str, str] = {}
        for key, value in self.headers:
            result.setdefault(key, value)
        return result

    @property
    def action(self) -> str | None:
        return self.get("Action")

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def is_banner(self) -> bool:
        return self.direction == SERVER and len(self.lines) == 1 and self.lines[0].startswith(BANNER_PREFIX)

    def wire(self) -> bytes:
        if self.is_banner:
            return f"{self.lines[0]}\r\n".encode()  # the banner has no blank-line terminator
        return ("\r\n".join(self.lines) + "\r\n\r\n").encode()

    def describe(self) -> str:
        kind = f"Action {self.action}" if self.action else f"Event {self.event}" if self.event else self.lines[0]
        return f"{kind} ({self.direction} +{self.offset:.3f}s, {self.where})"


@dataclass(frozen=True)
class Session:
    name: str
    description: str
    messages: tuple[Message, ...]

    @property
    def banner(self) -> Message:
        banner = next((message for message in self.messages if message.is_banner), None)
        if banner is None:
            raise ValueError(f"session {self.name!r} has no '{BANNER_PREFIX}' banner")
        return banner

    def actions(self, name: str) -> list[Message]:
        return [message for message in self.messages
                if message.direction == CLIENT and (message.action or "").lower() == name.lower()]

    def events(self, name: str | None = None) -> list[Message]:
        return [message for message in self.messages if message.direction == SERVER and message.event
                and (name is None or message.event == name)]


def parse_recording(text: str, source: str) -> dict[str, Session]:
    """The sessions of one recording file, by name (`gateway`, `originator`, `control 1`, ...)."""
    sessions: dict[str, tuple[str, list[Message]]] = {}
    current: list[Message] | None = None
    header: tuple[str, float, int] | None = None  # the open message's direction, offset, line
    lines: list[str] = []

    def end_message() -> None:
        assert current is not None and header is not None
        if not lines:
            raise ValueError(f"{source}:{header[2]}: empty message")
        current.append(Message(header[0], header[1], tuple(lines), f"{source}:{header[2]}"))

    for number, line in enumerate(text.split("\n"), start=1):
        if header is not None:
            if line:
                lines.append(line)
                continue
            end_message()
            header, lines = None, []
        elif not line:
            continue
        elif match := _SESSION_LINE.match(line):
            current = []
            sessions[match.group(1).strip()] = (match.group(2) or "", current)
        elif current is None and line.startswith("#"):
            continue  # the comments at the top
        elif match := _MESSAGE_LINE.match(line):
            if current is None:
                raise ValueError(f"{source}:{number}: message before any '### session' line")
            header = (match.group(1), float(match.group(2)), number)
        else:
            raise ValueError(f"{source}:{number}: expected '>>> +S.SSSs' or '<<< +S.SSSs', got {line!r}")
    if header is not None:
        end_message()  # the last message may end with the file
    return {name: Session(name, description, tuple(messages)) for name, (description, messages) in sessions.items()}


def load_session(file_name: str, session: str) -> Session:
    path = RECORDINGS / file_name
    sessions = parse_recording(path.read_text(encoding="utf-8"), path.name)
    if session not in sessions:
        raise KeyError(f"{path.name} has no session {session!r} (it has {', '.join(sessions)})")
    return sessions[session]


def differences(recorded: Message, sent: Message) -> list[str]:
    """How an action the client sent differs from the recorded one (field names case-insensitive)."""
    def values(message: Message) -> dict[str, tuple[str, list[str]]]:
        result: dict[str, tuple[str, list[str]]] = {}
        for key, value in message.headers:
            result.setdefault(key.lower(), (key, []))[1].append(value)
        return result

    expected, got = values(recorded), values(sent)
    problems = []
    for key in sorted((expected.keys() | got.keys()) - UNCOMPARED_FIELDS):
        name, want = expected[key] if key in expected else (got[key][0], [])
        have = got[key][1] if key in got else []
        same = [v.lower() for v in want] == [v.lower() for v in have] if key == "action" else want == have
        if not same:
            problems.append(f"{name}: recorded {_shown(want)}, sent {_shown(have)}")
    return problems


def _shown(values: list[str]) -> str:
    return "nothing" if not values else repr(values[0]) if len(values) == 1 else repr(values)


@dataclass
class Pause:
    """The peer stops before sending the first `event` after it was set up, until `resume()`."""

    event: str
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    resumed: asyncio.Event = field(default_factory=asyncio.Event)

    def resume(self) -> None:
        self.resumed.set()


class ReplayAmiPeer:
    """Asterisk's side of one recorded AMI session, for one client connection on 127.0.0.1."""

    def __init__(self, session: Session, max_pause_seconds: float = MAX_PAUSE_SECONDS) -> None:
        self.session = session
        self.max_pause_seconds = max_pause_seconds
        self.sent: list[Message] = []  # what the peer sent, ActionIDs rewritten
        self.received: list[Message] = []  # every action the client sent, Pings too
        self.errors: list[str] = []
        self.port = 0
        pings = {message.get("ActionID") for message in session.actions("Ping")}
        # Pings and their responses are played out of band (see the module docstring).
        self._script = [message for message in session.messages if not message.is_banner
                        and (message.action or "").lower() != "ping"
                        and not (message.get("Response") and message.get("ActionID") in pings)]
        self._position = 0  # index in _script of the message being played
        self._action_ids: dict[str, str] = {}  # recorded ActionID -> the client's
        self._pauses: list[Pause] = []
        self._played = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._connection: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._started = time.monotonic()

    @classmethod
    def of(cls, file_name: str, session: str) -> ReplayAmiPeer:
        return cls(load_session(file_name, session))

    async def start(self) -> ReplayAmiPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._connection is not None:
            self._connection.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connection
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> ReplayAmiPeer:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.stop()
        self.check()  # a replay mismatch is the failure to report, even over the test's own error

    def check(self) -> None:
        """Fail with what differed from the recording, or with where the replay got stuck."""
        problems = list(self.errors)
        if not problems and not self._played.is_set():
            upcoming = next((message for message in self._script[self._position:] if message.direction == CLIENT), None)
            problems.append(f"the recording was not played to the end: it stopped at {self._current().describe()}"
                            + (f"; the client's next recorded action is {upcoming.describe()}" if upcoming else ""))
        if problems:
            raise AssertionError(f"replay of session {self.session.name!r} failed:\n  " + "\n  ".join(problems))

    async def played(self) -> None:
        """Until every recorded message was matched or sent."""
        await self._played.wait()

    def pause_before(self, event: str) -> Pause:
        pause = Pause(event)
        self._pauses.append(pause)
        return pause

    def sent_events(self) -> list[Message]:
        return [message for message in self.sent if message.event]

    # --- the connection ---------------------------------------------------------------------

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connection is not None:
            self.errors.append("the client connected a second time (it lost the first connection: see its log)")
            writer.close()
            return
        # Our own task: asyncio's stream server logs an error when the task it runs is cancelled.
        self._connection = asyncio.create_task(self._talk(reader, writer), name="replay-ami-peer")

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        actions: asyncio.Queue[Message | None] = asyncio.Queue()
        reading = asyncio.create_task(self._read(reader, actions))
        try:
            writer.write(self.session.banner.wire())
            await self._answer_the_rest(actions, played=await self._play(actions))
        except Exception as error:  # this task's exceptions would only be logged: make them fail the test
            self.errors.append(f"replaying failed near {self._current().describe()}: {error!r}")
        finally:
            reading.cancel()
            writer.close()

    async def _read(self, reader: asyncio.StreamReader, actions: asyncio.Queue[Message | None]) -> None:
        """Client messages to `actions` (None: the client left); Pings answered at once."""
        try:
            while True:
                message = Message.from_wire(await reader.readuntil(b"\r\n\r\n"), CLIENT,
                                            time.monotonic() - self._started)
                self.received.append(message)
                if (message.action or "").lower() == "ping":
                    self._respond(message, "Success", f"Ping: Pong\r\nTimestamp: {time.time():.6f}")
                else:
                    actions.put_nowait(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            actions.put_nowait(None)

    async def _play(self, actions: asyncio.Queue[Message | None]) -> bool:
        """The recording in order; False when the client did something else."""
        assert self._writer is not None
        previous = self.session.banner.offset
        for position, recorded in enumerate(self._script):
            self._position = position
            if recorded.direction == CLIENT:
                sent = await actions.get()
                if sent is None:
                    self.errors.append(f"the client disconnected; the recording expects {recorded.describe()}")
                    actions.put_nowait(None)  # still gone for _answer_the_rest
                    return False
                problems = differences(recorded, sent)
                if problems:
                    self.errors.append(f"{recorded.describe()}: the client sent {sent.action or sent.lines[0]} "
                                       "differing in " + "; ".join(problems))
                    self._respond(sent, "Error", f"Message: replay mismatch: {'; '.join(problems)}")
                    return False
                recorded_id, actual_id = recorded.get("ActionID"), sent.get("ActionID")
                if recorded_id and actual_id:
                    self._action_ids[recorded_id] = actual_id
            else:
                await asyncio.sleep(min(max(recorded.offset - previous, 0.0), self.max_pause_seconds))
                await self._pause_if_asked(recorded)
                message = self._with_client_action_ids(recorded)
                self.sent.append(message)
                self._writer.write(message.wire())
                await self._writer.drain()
            previous = recorded.offset
        self._position = len(self._script)
        self._played.set()
        return True

    async def _answer_the_rest(self, actions: asyncio.Queue[Message | None], played: bool) -> None:
        """A cut recording ends mid-session: the client may still close it with Logoff. After a
        mismatch, every action gets an error (the first mismatch is the one reported)."""
        while (sent := await actions.get()) is not None:
            if (sent.action or "").lower() == "logoff":
                self._respond(sent, "Goodbye", "Message: Thanks for all the fish.")
                return
            if played:
                self.errors.append(f"after the end of the recording the client sent {sent.action or sent.lines[0]}")
            self._respond(sent, "Error", "Message: replay mismatch: not in the recording at this point")

    def _current(self) -> Message:
        return self._script[min(self._position, len(self._script) - 1)]

    async def _pause_if_asked(self, message: Message) -> None:
        for pause in self._pauses:
            if pause.event == message.event and not pause.reached.is_set():
                pause.reached.set()
                await pause.resumed.wait()

    def _with_client_action_ids(self, recorded: Message) -> Message:
        lines = []
        for line in recorded.lines:
            key, _, value = line.partition(": ")
            if key.lower() == "actionid" and value in self._action_ids:
                line = f"{key}: {self._action_ids[value]}"
            lines.append(line)
        return Message(recorded.direction, recorded.offset, tuple(lines), recorded.where)

    def _respond(self, to: Message, status: str, body: str) -> None:
        """A response of our own (Pong, Goodbye, mismatch), written whole so it never splits another."""
        assert self._writer is not None
        action_id = to.get("ActionID")
        lines = [f"Response: {status}", *([f"ActionID: {action_id}"] if action_id else []), *body.split("\r\n")]
        message = Message(SERVER, time.monotonic() - self._started, tuple(lines), "the replay peer")
        self.sent.append(message)
        self._writer.write(message.wire())
