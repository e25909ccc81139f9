"""The live-agent relay's long-polling read (bot/channels.py `LiveAgentRelay`), run in Rasa's own
environment with Rasa's in-memory tracker and lock stores (a turn's release signalled as
bot/rasa_launcher.py has Rasa signal it). Prints one JSON line for test_live_agent_relay.py.
Every wait here is bounded; none is measured."""

from __future__ import annotations

import asyncio
import json
import sys
from types import SimpleNamespace
from typing import Any

from rasa.core.lock_store import InMemoryLockStore, LockStore
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot import rasa_launcher
from bot.channels import LiveAgentRelay
from bot.lock_store import local_releases

SENDER = "conversation-under-test"
BOUND_SECONDS = 10  # far beyond any answer here: reaching it means the read never woke


def rasa() -> SimpleNamespace:
    return SimpleNamespace(lock_store=InMemoryLockStore(), tracker_store=InMemoryTrackerStore(Domain.empty()))


async def start(agent: SimpleNamespace) -> int:
    tracker = DialogueStateTracker.from_events(SENDER, [ActionExecuted("action_listen"), UserUttered("转人工")])
    await agent.tracker_store.save(tracker)
    return len(tracker.events)


async def customer_writes(agent: SimpleNamespace, text: str) -> None:
    tracker = await agent.tracker_store.retrieve(SENDER)
    tracker.update(UserUttered(text))
    await agent.tracker_store.save(tracker)


async def customer_turn(agent: SimpleNamespace, text: str) -> None:
    """The customer's line as a Rasa turn stores it: under the conversation's lock."""
    async with agent.lock_store.lock(SENDER):
        await customer_writes(agent, text)


def still_watched(agent: SimpleNamespace) -> int:
    return len(local_releases(agent.lock_store)._by_conversation)


async def read(relay: LiveAgentRelay, agent: SimpleNamespace, after: int, wait: Any) -> dict[str, Any]:
    answer = await asyncio.wait_for(relay.handle(agent, {"sender": SENDER, "do": "read", "after": after,
                                                         "wait": wait}), BOUND_SECONDS)
    return {"status": answer.status, **json.loads(answer.body)}


async def woken() -> dict[str, Any]:
    """A waiting read answers when the customer's turn in this process gives the conversation's
    lock back (no re-look would come in time)."""
    agent, relay = rasa(), LiveAgentRelay(lambda: None, "webchat", recheck_seconds=3600)
    length = await start(agent)
    waiting = asyncio.create_task(read(relay, agent, length, 20))
    for _ in range(20):  # let the read look once and start waiting
        await asyncio.sleep(0)
    waited = not waiting.done()
    await customer_turn(agent, "我的账单不对")
    answer = await waiting
    return {"waited": waited, "answer": answer, "length": length, "left_waiting": still_watched(agent)}


async def heard_elsewhere() -> dict[str, Any]:
    """The line stored with no turn releasing a lock here (Redis down, another process): the
    read's re-look finds it."""
    agent, relay = rasa(), LiveAgentRelay(lambda: None, "webchat", recheck_seconds=0.01)
    length = await start(agent)
    waiting = asyncio.create_task(read(relay, agent, length, 20))
    await asyncio.sleep(0.05)
    await customer_writes(agent, "还在吗")
    answer = await waiting
    return {"answer": answer, "length": length, "left_waiting": still_watched(agent)}


async def at_once_and_run_out() -> dict[str, Any]:
    agent, relay = rasa(), LiveAgentRelay(lambda: None, "webchat", recheck_seconds=3600)
    length = await start(agent)
    already = await read(relay, agent, 0, 20)  # lines after 0 exist: no wait
    ran_out = await read(relay, agent, length, 0.01)
    malformed = [(await relay.handle(agent, {"sender": SENDER, "do": "read", "wait": wait})).status
                 for wait in (-1, 26, "5", True, None)]
    unknown = (await relay.handle(agent, {"sender": "nobody", "do": "read", "wait": 0.01})).status
    return {"already": already, "ran_out": ran_out, "length": length, "malformed": malformed,
            "unknown": unknown, "left_waiting": still_watched(agent)}


async def beside_a_turn() -> dict[str, Any]:
    """A read while a turn of the conversation holds its lock (the desk reads the conversation the
    moment the customer's line is stored, while Rasa may still be in that turn or the next)."""
    agent, relay = rasa(), LiveAgentRelay(lambda: None, "webchat", recheck_seconds=3600)
    length = await start(agent)
    turn_done = asyncio.Event()

    async def turn() -> None:
        async with agent.lock_store.lock(SENDER):
            await turn_done.wait()

    holding = asyncio.create_task(turn())
    await asyncio.sleep(0)
    try:
        answer: dict[str, Any] | str = await read(relay, agent, 0, 0)
    except asyncio.TimeoutError:  # Python 3.10: not yet the builtin
        answer = "still waiting for the turn's lock"
    turn_done.set()
    await holding
    return {"answer": answer, "length": length}


SCENARIOS = {f.__name__: f for f in (woken, heard_elsewhere, at_once_and_run_out, beside_a_turn)}

if __name__ == "__main__":
    LockStore.cleanup = rasa_launcher._cleanup_waking_waiters  # type: ignore[method-assign]  # as Rasa runs here
    print(json.dumps(asyncio.run(SCENARIOS[sys.argv[1]]()), ensure_ascii=False))
