"""A loopback stand-in for the Asterisk Manager, written from the protocol documentation, not from
our code (the AudioSocket one is bench/audiosocket_peer.py).

`AmiPeer` is a fake Asterisk Manager speaking the AMI text protocol as documented at
docs.asterisk.org (Configuration/Interfaces/Asterisk-Manager-Interface-AMI/AMI-v2-Specification):
a banner line `Asterisk Call Manager/X.Y.Z`, then `Key: Value` lines separated by CRLF, a message
ended by an empty line; actions carry `Action:` and `ActionID:`, responses `Response:`,
`ActionID:`, `Message:`, events `Event:`. Login answers `Authentication accepted` or `Response:
Error` / `Authentication failed`; Getvar answers with `Variable:` and `Value:`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from tests.waiting import BOUND_SECONDS


@dataclass
class AmiSession:
    writer: asyncio.StreamWriter
    username: str | None = None


@dataclass
class AmiPeer:
    """A fake Asterisk Manager on 127.0.0.1 (port 0 picks a free one)."""

    users: dict[str, str] = field(default_factory=lambda: {"ivr-bot": "s3cret"})
    variables: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, name) -> value
    failing_actions: dict[str, str] = field(default_factory=dict)  # action name -> error message
    silent_actions: set[str] = field(default_factory=set)  # actions never answered
    held_actions: set[str] = field(default_factory=set)  # answered only on release_held()
    queues: dict[str, list[str]] = field(default_factory=dict)  # queue -> channels waiting (QueueStatus)
    members: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # queue -> its members' fields
    port: int = 0
    version: str = "9.0.0"
    actions: list[dict[str, str]] = field(default_factory=list)
    connections_accepted: int = 0
    _server: asyncio.Server | None = None
    _sessions: list[AmiSession] = field(default_factory=list)
    _held: list[tuple[asyncio.StreamWriter, bytes]] = field(default_factory=list)

    async def start(self) -> AmiPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every client (as if Asterisk went down)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.drop_connections()

    async def drop_connections(self) -> None:
        for session in list(self._sessions):
            session.writer.close()
        self._sessions.clear()

    async def release_held(self) -> None:
        """Answer the held actions now (Asterisk's reply arriving late)."""
        held, self._held = self._held, []
        for writer, answer in held:
            writer.write(answer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    def logged_in_sessions(self) -> int:
        return sum(1 for session in self._sessions if session.username)

    def actions_named(self, name: str) -> list[dict[str, str]]:
        return [action for action in self.actions if action.get("Action", "").lower() == name.lower()]

    async def wait_for_action(self, name: str, count: int = 1, timeout: float = BOUND_SECONDS) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.actions_named(name)) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.actions_named(name)

    async def wait_for_login(self, count: int = 1, timeout: float = BOUND_SECONDS) -> bool:
        deadline = time.monotonic() + timeout
        while self.logged_in_sessions() < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.logged_in_sessions() >= count

    async def emit(self, event: str, **fields: str) -> None:
        """Send an event to every logged-in client."""
        lines = [f"Event: {event}"] + [f"{key}: {value}" for key, value in fields.items()]
        for session in self._sessions:
            if session.username:
                session.writer.write(_message(lines))
                with contextlib.suppress(ConnectionError):
                    await session.writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        session = AmiSession(writer)
        self._sessions.append(session)
        writer.write(f"Asterisk Call Manager/{self.version}\r\n".encode())
        try:
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                action = _parse(block.decode())
                self.actions.append(action)
                answer = _message(self._answer(session, action))
                if action.get("Action") in self.held_actions:
                    self._held.append((writer, answer))
                    continue
                writer.write(answer + self._list_events(session, action))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if session in self._sessions:
                self._sessions.remove(session)
            writer.close()

    def _answer(self, session: AmiSession, action: dict[str, str]) -> list[str]:
        name = action.get("Action", "")
        action_id = [f"ActionID: {action['ActionID']}"] if "ActionID" in action else []
        if name.lower() == "login":
            if self.users.get(action.get("Username", "")) == action.get("Secret"):
                session.username = action["Username"]
                return ["Response: Success", *action_id, "Message: Authentication accepted"]
            return ["Response: Error", *action_id, "Message: Authentication failed"]
        if not session.username:
            return ["Response: Error", *action_id, "Message: Permission denied"]
        if name in self.silent_actions:
            return []
        if name in self.failing_actions:
            return ["Response: Error", *action_id, f"Message: {self.failing_actions[name]}"]
        if name.lower() == "ping":
            return ["Response: Success", *action_id, "Ping: Pong", f"Timestamp: {time.time():.6f}"]
        if name.lower() == "getvar":
            value = self.variables.get((action.get("Channel", ""), action.get("Variable", "")), "")
            return ["Response: Success", *action_id, f"Variable: {action.get('Variable', '')}", f"Value: {value}"]
        if name.lower() == "originate":
            return ["Response: Success", *action_id, "Message: Originate successfully queued"]
        if name.lower() == "queuestatus":
            return ["Response: Success", *action_id, "EventList: start", "Message: Queue status will follow"]
        return ["Response: Success", *action_id, "Message: OK"]


    def _list_events(self, session: AmiSession, action: dict[str, str]) -> bytes:
        """QueueStatus's list after its response (docs.asterisk.org, AMI Actions/QueueStatus and
        the QueueParams/QueueEntry/QueueStatusComplete events): per queue its parameters and one
        entry per waiting caller, each with the action's ActionID, then the completion."""
        if action.get("Action", "").lower() != "queuestatus" or not session.username:
            return b""
        action_id = [f"ActionID: {action['ActionID']}"] if "ActionID" in action else []
        wanted = action.get("Queue")
        listed = 0
        out = b""
        for queue in dict.fromkeys([*self.queues, *self.members]):
            if wanted and queue != wanted:
                continue
            channels = self.queues.get(queue, [])
            out += _message(["Event: QueueParams", f"Queue: {queue}", "Max: 0", "Strategy: ringall",
                             f"Calls: {len(channels)}", "Holdtime: 0", "TalkTime: 0", "Completed: 0", "Abandoned: 0",
                             "ServiceLevel: 0", "ServicelevelPerf: 0.0", "Weight: 0", *action_id])
            listed += 1
            for member in self.members.get(queue, []):
                out += _message(["Event: QueueMember", f"Queue: {queue}",
                                 *(f"{key}: {value}" for key, value in member.items() if key not in ("Event", "Queue")),
                                 *action_id])
                listed += 1
            for position, channel in enumerate(channels, start=1):
                out += _message(["Event: QueueEntry", f"Queue: {queue}", f"Position: {position}",
                                 f"Channel: {channel}", "Uniqueid: 1700000000.1", "CallerIDNum: <unknown>",
                                 "CallerIDName: <unknown>", "Wait: 5", "Priority: 0", *action_id])
                listed += 1
        return out + _message(["Event: QueueStatusComplete", *action_id, "EventList: Complete",
                               f"ListItems: {listed}"])


def _message(lines: list[str]) -> bytes:
    return ("".join(f"{line}\r\n" for line in lines) + "\r\n").encode() if lines else b""


def _parse(block: str) -> dict[str, str]:
    """One action; repeated keys (Originate's `Variable:`) are joined with '|'."""
    fields: dict[str, str] = {}
    for line in block.split("\r\n"):
        if ": " in line:
            key, value = line.split(": ", 1)
            fields[key] = f"{fields[key]}|{value}" if key in fields else value
    return fields
