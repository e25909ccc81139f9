"""The scaled topology's lock store (bot/lock_store.py) inside Rasa's environment, against a real
Redis: `.venv/bin/python tests/scale/lock_scenarios.py <redis port> <password>` prints what each
scenario saw as one JSON line (tests/scale/test_lock_store.py checks it; the services' Python
cannot import Rasa). Two stores on one Redis are two Rasa processes; a ticket issued and never
released is a process killed mid-turn."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rasa.core.lock_store import InMemoryLockStore, LockError, LockStore, TicketLock
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from bot import lock_store, rasa_launcher
from bot.lock_store import AtomicRedisLockStore, ConversationBusy, TicketLost, local_releases, watch_releases
from bot.rasa_launcher import _lock_store_not_rasas_redis

POLL_SECONDS = 0.05
MAX_POLLS = 400  # 20 s


@contextmanager
def sent(client: Any) -> Iterator[list[str]]:
    """The commands `client` sends while in the block (a script's own calls run inside Redis)."""
    commands: list[str] = []
    execute = client.execute_command

    def counted(*args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return execute(*args, **options)

    client.execute_command = counted
    try:
        yield commands
    finally:
        del client.execute_command


async def until(holds: Callable[[], bool]) -> None:
    """Until `holds()`, looked at every POLL_SECONDS at most MAX_POLLS times (a bound, nothing timed)."""
    for _ in range(MAX_POLLS):
        if holds():
            return
        await asyncio.sleep(POLL_SECONDS)


async def killed_mid_turn(store: AtomicRedisLockStore, conversation: str, lifetime: float) -> None:
    """A turn that took its ticket (served at once) in a process that then died."""
    await store._issue(keys=[store.key_prefix + conversation], args=[conversation, lifetime, f"dead-{conversation}"])


async def served_one_at_a_time(processes: list[AtomicRedisLockStore], turns: int) -> dict[str, Any]:
    """`turns` turns of one conversation at once, spread over the processes, each holding the lock
    a while: how many were ever inside together, how many were served."""
    inside, most, served = 0, 0, 0

    async def turn(number: int) -> None:
        nonlocal inside, most, served
        async with processes[number % len(processes)].lock("together", 20, POLL_SECONDS):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(POLL_SECONDS)
            inside -= 1
            served += 1

    await asyncio.gather(*(turn(number) for number in range(turns)))
    return {"most_inside": most, "served": served}


async def refused(store: AtomicRedisLockStore, conversation: str,
                  meanwhile: Callable[[], Awaitable[Any]] | None = None) -> str | None:
    """The exception's name if the turn was refused; `meanwhile` runs once the turn waits."""
    async def take() -> None:
        async with store.lock(conversation, 20, POLL_SECONDS):
            pass

    waiting = asyncio.create_task(take())
    try:
        if meanwhile is not None:
            await until(lambda: waiting.done() or len(store.get_lock(conversation).tickets) >= 2)  # type: ignore
            await meanwhile()
        await waiting
    except (TicketLost, ConversationBusy) as error:
        return type(error).__name__
    return None


async def behind_a_slow_turn(store: LockStore) -> str:
    """A turn waiting behind one that outlasts the lock's lifetime (2 s): served, or its error."""
    async def slow() -> None:
        async with store.lock("slow", 2, 0.2):
            await asyncio.sleep(3)

    holder = asyncio.create_task(slow())
    await asyncio.sleep(0.1)
    try:
        async with store.lock("slow", 2, 0.2):
            outcome = "served"
    except LockError as error:
        outcome = type(error).__name__
    await holder
    return outcome


async def next_turn_once_released(store: LockStore, second_store: LockStore | None = None) -> dict[str, Any]:
    """A customer's second message while the first's turn runs, in one process (or the second in
    another, `second_store`), the lock polled once an hour: is the second served when the first
    gives the lock back (bounded wait)?"""
    first_done = asyncio.Event()
    order: list[str] = []

    async def turn(name: str, until: asyncio.Event | None = None) -> None:
        async with (store if until is not None else second_store or store).lock("two-messages", 20, 3600):
            order.append(name)
            if until is not None:
                await until.wait()

    first = asyncio.create_task(turn("first", first_done))
    await until(lambda: bool(order))  # the first holds the lock
    second = asyncio.create_task(turn("second"))
    await until(lambda: len(getattr(store.get_lock("two-messages"), "tickets", ())) == 2)  # the second's ticket
    waited = not second.done()
    first_done.set()
    await first
    try:
        await asyncio.wait_for(second, 20)
    except asyncio.TimeoutError:  # Python 3.10: not yet the builtin
        order.append("second still waiting")
    return {"waited": waited, "order": order,
            "left_watching": len(local_releases(second_store or store)._by_conversation)}


async def after_the_subscription_dropped(one: AtomicRedisLockStore, other: AtomicRedisLockStore) -> dict[str, Any]:
    """Redis drops both processes' subscriptions to the releases (as a restart would): what they
    logged, and whether a release wakes a turn waiting in another process once they are back."""
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    lock_store.log.addHandler(handler)
    level, resubscribe = lock_store.log.level, lock_store.RESUBSCRIBE_SECONDS
    lock_store.log.setLevel(logging.INFO)  # the return is logged at INFO
    lock_store.RESUBSCRIBE_SECONDS = POLL_SECONDS
    try:
        one.red.client_kill_filter(_type="pubsub")
        await until(lambda: sum("again" in line for line in logged) >= 2)  # both back
        woken = await next_turn_once_released(one, other)
    finally:
        lock_store.log.removeHandler(handler)
        lock_store.log.setLevel(level)
        lock_store.RESUBSCRIBE_SECONDS = resubscribe
    return {"logged": logged, "next_turn_once_released": woken}


async def watched_from_another_process(turn_store: AtomicRedisLockStore,
                                       reading_store: AtomicRedisLockStore) -> dict[str, Any]:
    """A desk's read watching a conversation in one process, the customer's turn (nobody waiting
    for its lock) in another; and a turn of a conversation nobody watches. What was published,
    and whether the read woke (bounded wait)."""
    published: list[str] = []
    subscription = turn_store._redis.pubsub()
    await subscription.subscribe(turn_store.key_prefix + "released")

    async def heard() -> None:
        while True:
            message = await subscription.get_message(ignore_subscribe_messages=True, timeout=1)
            if message:
                published.append(message["data"].decode())

    listening = asyncio.create_task(heard())
    async with turn_store.lock("nobody-watches"):
        pass
    await watch_releases(reading_store, "watched", 20)
    with local_releases(reading_store).watching("watched") as released:
        async with turn_store.lock("watched"):
            pass
        try:
            await asyncio.wait_for(released.wait(), 20)
            woken = True
        except asyncio.TimeoutError:  # Python 3.10: not yet the builtin
            woken = False
    await until(lambda: bool(published))  # the publication reaches this subscriber too
    listening.cancel()
    await subscription.reset()
    return {"woken": woken, "published": published}


async def scenarios(port: int, password: str) -> dict[str, Any]:
    settings = EndpointConfig(url="127.0.0.1", port=port, password=password, db=1, socket_timeout=5)
    one, other = AtomicRedisLockStore(endpoint_config=settings), AtomicRedisLockStore(endpoint_config=settings)
    red = one.red
    seen: dict[str, Any] = {}

    # Warmed (the scripts loaded into Redis), then one turn nobody waits for: what the process
    # sent Redis, on either client.
    async with one.lock("warm-up"):
        pass
    with sent(one._redis) as sent_async, sent(red) as sent_sync:
        async with one.lock("alone"):
            pass
    seen["commands"] = sent_async + sent_sync
    seen["left_behind"] = red.exists(one.key_prefix + "alone")
    async with one.lock("held", 20):  # as Rasa's own store reads it, and expiring with its ticket
        seen["held_tickets"] = [ticket.number for ticket in one.get_lock("held").tickets]  # type: ignore[union-attr]
        seen["held_key_ms_left"] = red.pttl(one.key_prefix + "held")

    # A ticket's call sent again (its reply lost on a broken connection) gives the same ticket.
    key = one.key_prefix + "sent-twice"
    seen["sent_twice"] = [await one._issue(keys=[key], args=["sent-twice", 20, "the-turn"]) for _ in range(2)]
    seen["sent_twice_tickets"] = [ticket.number for ticket in one.get_lock("sent-twice").tickets]  # type: ignore

    seen["together"] = await served_one_at_a_time([one, other], 8)

    # Rasa's step-by-step writers, inherited, would change a lock outside the scripts.
    seen["step_by_step_writes"] = {}
    for write, arguments in [("issue_ticket", ("held", 20)), ("save_lock", (TicketLock("held"),)),
                             ("delete_lock", ("held",)), ("finish_serving", ("held", 0)), ("cleanup", ("held", 0)),
                             ("update_lock", ("held",)), ("get_or_create_lock", ("held",))]:
        try:
            getattr(one, write)(*arguments)
            seen["step_by_step_writes"][write] = "done"
        except NotImplementedError:
            seen["step_by_step_writes"][write] = "refused"

    # The holder's process died; the turn behind it, issued with the same lifetime, keeps its
    # ticket alive while it waits and is served once the dead ticket expires.
    await killed_mid_turn(other, "dead-holder", 2)
    try:
        async with one.lock("dead-holder", 2, 0.2):
            seen["after_dead_holder"] = "served"
    except LockError as error:
        seen["after_dead_holder"] = type(error).__name__

    # The lock removed while a turn waits behind a live holder: its place is lost.
    await killed_mid_turn(other, "deleted", 20)
    seen["lock_deleted"] = await refused(one, "deleted",
                                         meanwhile=lambda: other._redis.delete(one.key_prefix + "deleted"))

    # Behind a holder that outlasts every poll the turn may wait.
    await killed_mid_turn(other, "busy", 20)
    lock_store.MAX_LOCK_WAITS = 2
    seen["busy"] = await refused(one, "busy")

    seen["next_turn_once_released"] = await next_turn_once_released(one)
    async with other.lock("warm-up"):  # the process's first turn subscribes it to the releases
        pass
    channel = one.key_prefix + "released"
    await until(lambda: red.pubsub_numsub(channel)[0][1] >= 2)  # both processes subscribed
    seen["next_turn_once_released_by_another_process"] = await next_turn_once_released(one, other)
    seen["after_the_subscription_dropped"] = await after_the_subscription_dropped(one, other)
    seen["watched_from_another_process"] = await watched_from_another_process(one, other)

    # One process, its locks in memory: as Rasa has it, and with the launcher's renewal.
    rasas = LockStore._acquire_lock
    seen["in_memory_rasa"] = await behind_a_slow_turn(InMemoryLockStore())
    LockStore._acquire_lock = rasa_launcher._acquire_lock_keeping_ticket  # type: ignore[method-assign]
    seen["in_memory"] = await behind_a_slow_turn(InMemoryLockStore())
    rasas_cleanup = LockStore.cleanup
    LockStore.cleanup = rasa_launcher._cleanup_waking_waiters  # type: ignore[method-assign]
    seen["in_memory_next_turn_once_released"] = await next_turn_once_released(InMemoryLockStore())
    LockStore._acquire_lock, LockStore.cleanup = rasas, rasas_cleanup  # type: ignore[method-assign]

    try:
        _lock_store_not_rasas_redis(EndpointConfig(url="127.0.0.1", type="redis", port=port, password=password))
    except RasaException as error:
        seen["rasas_redis"] = str(error)
    seen["configured"] = type(_lock_store_not_rasas_redis(EndpointConfig(
        url="127.0.0.1", type="bot.lock_store.AtomicRedisLockStore", port=port, password=password))).__name__
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(scenarios(int(sys.argv[1]), sys.argv[2]))))
