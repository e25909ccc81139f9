"""How many agents are free in each Asterisk queue, for campaigns paced to them (`pacing.agents`).

A member is free when Asterisk says its device is not in use (Status 1, AST_DEVICE_NOT_INUSE) and
it is not paused. The count follows the queue's member events (QueueMemberAdded, QueueMemberRemoved,
QueueMemberStatus, QueueMemberPause) and is asked of Asterisk again (QueueStatus: its QueueMember
list) when the watch starts and after each AMI reconnect, since events sent while the connection was
down are lost. Until that answer, or while AMI is down, a queue's count is unknown: a campaign paced
to it dials nothing rather than guess.
"""

from __future__ import annotations

import asyncio
import logging

from telephony.ami import SESSION_RESUMED, AmiClient, Event, consume_events

log = logging.getLogger(__name__)

FREE_STATUS = "1"  # AST_DEVICE_NOT_INUSE
MEMBER_EVENTS = {"QueueMemberAdded", "QueueMemberRemoved", "QueueMemberStatus", "QueueMemberPause"}


def _member(event: Event) -> str:
    # Asterisk 12+ names a member by Interface (StateInterface for its device); QueueStatus's
    # list names it Location. The same member either way.
    return event.get("Interface") or event.get("Location") or event.get("StateInterface") or event.get("Name", "")


def _free(event: Event) -> bool:
    return event.get("Status") == FREE_STATUS and event.get("Paused", "0") == "0"


class AgentWatch:
    def __init__(self, ami: AmiClient, queues: set[str]) -> None:
        self._ami = ami
        self._queues = set(queues)
        self._free: dict[str, dict[str, bool]] = {}  # queue -> member -> free; a queue absent: unknown
        self._events = ami.subscribe(MEMBER_EVENTS | {SESSION_RESUMED})
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="agent-watch")

    def available(self, queue: str) -> int | None:
        """Agents free in `queue` now; None when not known (never synced, or AMI down)."""
        if not self._ami.connected or queue not in self._free:
            return None
        return sum(self._free[queue].values())

    async def _watch(self) -> None:
        if self._ami.connected:
            await self._resync()
        await consume_events(self._events, self._take, "agent watch")

    async def _take(self, event: Event) -> None:
        if event.get("Event") == SESSION_RESUMED:
            await self._resync()
            return
        queue = event.get("Queue", "")
        if queue not in self._free:
            return  # not watched, or not synced yet (the sync's list will say)
        if event.get("Event") == "QueueMemberRemoved":
            self._free[queue].pop(_member(event), None)
        else:  # Added, Status, Pause: each carries the member's Status and Paused (Asterisk 12+)
            self._free[queue][_member(event)] = _free(event)

    async def _resync(self) -> None:
        for queue in sorted(self._queues):
            listed = await self._ami.resync("QueueStatus", {"Queue": queue}, "QueueStatusComplete")
            if listed is None:
                log.warning("agents of queue %s unknown: Asterisk did not list them", queue)
                self._free.pop(queue, None)
                continue
            self._free[queue] = {_member(event): _free(event) for event in listed
                                 if event.get("Event") == "QueueMember" and event.get("Queue") == queue}
            log.info("queue %s: %d of %d agents free", queue, sum(self._free[queue].values()), len(self._free[queue]))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._ami.unsubscribe(self._events)
