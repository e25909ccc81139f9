"""The scaled topology's lock store: Rasa's ticket lock on Redis, each step one atomic script.

Rasa's `RedisLockStore` takes and releases a turn's lock in seven synchronous round trips (get,
set, get to issue a ticket and find it served; get, set, get, delete to release it), each of
which blocks the Rasa process's event loop while Redis answers (about 7 % of a scaled Rasa
process's samples), and it issues a ticket by get-modify-set: two processes taking a ticket for
one conversation at once can both get the same number and run its turns together. Here issuing
a ticket (and whether it is served at once), a waiting ticket's renewal (and whether it is served
now) and the release are each one Lua script, atomic in Redis, awaited on an asyncio client: two
round trips for a turn nobody waits for, none of them blocking the loop.

A waiting turn keeps its ticket alive at every poll (only a holder that stops, a process killed
mid-turn, loses its ticket) and waits at most MAX_LOCK_WAITS polls. It looks again as soon as the
turn ahead gives the lock back: a release with turns left waiting is published on Redis, and
every process wakes its turns waiting on that conversation. The tickets' expiries are
Redis's clock, so processes on machines whose clocks differ agree on them, and the lock's key
expires with its last ticket instead of staying behind a killed process. The lock is stored as
Rasa stores it, so `RedisLockStore.get_lock` reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, NoReturn

import redis.asyncio
from rasa.core.lock_store import LOCK_LIFETIME, LockError, LockStore, RedisLockStore
from rasa.utils.endpoints import EndpointConfig
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

# A turn waits at most this many polls (1 s each) for the turns ahead of it: a few dead tickets' lifetimes.
MAX_LOCK_WAITS = 3 * int(LOCK_LIFETIME)

# Rasa's format, {"conversation_id": …, "tickets": ["{\"number\": 0, \"expires\": …}", …]}, each
# ticket with the token of the turn that took it (Rasa reads past it).
_TICKETS = """
local function now()
  local time = redis.call('TIME')
  return tonumber(time[1]) + tonumber(time[2]) / 1000000
end

local function live_tickets(lock, at)
  local tickets = {}
  for _, encoded in ipairs(lock.tickets) do
    local ticket = cjson.decode(encoded)
    if ticket.expires >= at then tickets[#tickets + 1] = ticket end
  end
  return tickets
end

-- The key lives as long as its last ticket: a lock every ticket of which expired is gone.
local function save(key, conversation_id, tickets, at)
  if #tickets == 0 then
    redis.call('DEL', key)
    return
  end
  local encoded, last_expiry = {}, at
  for i, ticket in ipairs(tickets) do
    encoded[i] = cjson.encode({number = ticket.number, expires = ticket.expires, token = ticket.token})
    last_expiry = math.max(last_expiry, ticket.expires)
  end
  redis.call('SET', key, cjson.encode({conversation_id = conversation_id, tickets = encoded}),
             'PX', math.ceil((last_expiry - at) * 1000) + 1)
end
"""

# KEYS[1] the lock, ARGV: conversation id, lifetime (s), the turn's token. Returns {ticket, 1 if
# served now else 0}; the token's ticket if it has one already (the call sent again).
_ISSUE = _TICKETS + """
local at = now()
local stored = redis.call('GET', KEYS[1])
local tickets = stored and live_tickets(cjson.decode(stored), at) or {}
local mine
for _, ticket in ipairs(tickets) do
  if ticket.token == ARGV[3] then mine = ticket end
end
if not mine then
  mine = {number = 0, expires = at + tonumber(ARGV[2]), token = ARGV[3]}
  if #tickets > 0 then mine.number = tickets[#tickets].number + 1 end
  tickets[#tickets + 1] = mine
  save(KEYS[1], ARGV[1], tickets, at)
end
if tickets[1].number == mine.number then return {mine.number, 1} end
return {mine.number, 0}
"""

# KEYS[1] the lock, ARGV: ticket, lifetime (s). Renews the ticket; 1 served now, 0 waiting, -1 gone.
_RENEW = _TICKETS + """
local stored = redis.call('GET', KEYS[1])
if not stored then return -1 end
local at, lock, mine = now(), cjson.decode(stored), tonumber(ARGV[1])
local tickets = live_tickets(lock, at)
for _, ticket in ipairs(tickets) do
  if ticket.number == mine then
    ticket.expires = at + tonumber(ARGV[2])
    save(KEYS[1], lock.conversation_id, tickets, at)
    if tickets[1].number == mine then return 1 end
    return 0
  end
end
return -1
"""

# KEYS[1] the lock, KEYS[2] the releases' channel, KEYS[3] the conversation's watch, ARGV: ticket.
# Removes it (and the expired ones); with a turn left waiting or someone watching the conversation
# (`watch_releases`), tells the processes which conversation it was. Returns the tickets left.
_RELEASE = _TICKETS + """
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
local at, lock, left = now(), cjson.decode(stored), {}
for _, ticket in ipairs(live_tickets(lock, at)) do
  if ticket.number ~= tonumber(ARGV[1]) then left[#left + 1] = ticket end
end
save(KEYS[1], lock.conversation_id, left, at)
if #left > 0 or redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PUBLISH', KEYS[2], lock.conversation_id) end
return #left
"""
RESUBSCRIBE_SECONDS = 1.0  # after Redis dropped the releases' subscription (waits poll meanwhile)
LISTEN_SECONDS = 1.0
WATCH_MARGIN_MS = 1000  # a watch outlives its reader's wait by this much


class _Release:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.waiters = 0


class LocalReleases:
    """Wakes this process's turns waiting on a conversation the moment a turn of it gives the
    lock back, instead of at their next poll (a second: a customer's second message sent while the
    first is answered waited for it). A release in this process wakes them at once; one in another
    process through Redis (`AtomicRedisLockStore`)."""

    def __init__(self) -> None:
        self._by_conversation: dict[str, _Release] = {}  # only conversations a turn waits on

    @contextmanager
    def watching(self, conversation_id: str) -> Iterator[asyncio.Event]:
        """Set once a turn of the conversation is released here; enter it before looking at the
        lock, so a release between the look and the wait still wakes the wait."""
        release = self._by_conversation.setdefault(conversation_id, _Release())
        release.waiters += 1
        try:
            yield release.event
        finally:
            release.waiters -= 1
            if not release.waiters and self._by_conversation.get(conversation_id) is release:
                del self._by_conversation[conversation_id]

    def released(self, conversation_id: str) -> None:
        release = self._by_conversation.pop(conversation_id, None)
        if release is not None:
            release.event.set()


def local_releases(store: LockStore) -> LocalReleases:
    """The releases of `store`'s turns in this process, kept on the store (an in-memory store's
    are signalled by the launcher's `LockStore.cleanup`, `AtomicRedisLockStore`'s by itself)."""
    releases: LocalReleases = store.__dict__.setdefault("releases", LocalReleases())
    return releases


async def watch_releases(store: LockStore, conversation_id: str, seconds: float) -> None:
    """For the next `seconds`, a turn of the conversation that gives its lock back in another
    process sharing `store` signals this process's `local_releases` too (every change of a
    conversation is made under its lock); in one process they are signalled anyway."""
    if isinstance(store, AtomicRedisLockStore) and seconds > 0:
        with contextlib.suppress(redis.exceptions.RedisError):  # Redis down: the reader's own re-look finds it
            await store.watch(conversation_id, seconds)


async def wait_for_release(released: asyncio.Event, poll_seconds: float) -> None:
    """Until `released` is set or the poll's time is up."""
    with contextlib.suppress(asyncio.TimeoutError):  # Python 3.10: not yet the builtin
        await asyncio.wait_for(released.wait(), poll_seconds)


class ConversationBusy(LockError):
    """A turn waited MAX_LOCK_WAITS polls for the turns of its conversation ahead of it."""


class TicketLost(LockError):
    """A waiting turn's ticket (or the whole lock) was gone from the lock store: its place in the
    conversation's queue is lost, and the turn is refused rather than run out of order."""


class AtomicRedisLockStore(RedisLockStore):
    """`lock_store: type: bot.lock_store.AtomicRedisLockStore` with `RedisLockStore`'s settings."""

    def __init__(self, endpoint_config: EndpointConfig | None = None, **settings: Any) -> None:
        if endpoint_config is not None:
            settings = {"host": endpoint_config.url, **endpoint_config.kwargs, **settings}
        super().__init__(**settings)
        connection = self.red.connection_pool.connection_kwargs  # the settings as Rasa's client took them
        # Once again on a broken connection: redis-py's asyncio pool (4.6) hands out a connection
        # Redis closed (a restart) without noticing. Every step may run twice: a turn's ticket is
        # found by its token, a renewal or a release done twice is done once.
        self._redis = redis.asyncio.Redis(
            **{name: connection[name] for name in ("host", "port", "db", "username", "password", "socket_timeout")},
            ssl=bool(settings.get("use_ssl")), ssl_certfile=settings.get("ssl_certfile"),
            ssl_keyfile=settings.get("ssl_keyfile"), ssl_ca_certs=settings.get("ssl_ca_certs"),
            retry=Retry(NoBackoff(), 1), retry_on_error=[redis.exceptions.ConnectionError])
        self._issue = self._redis.register_script(_ISSUE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._released_channel = self.key_prefix + "released"
        self._listening: asyncio.Task[None] | None = None

    def _not_atomic(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("RedisLockStore's step-by-step lock writes are not atomic across processes; "
                                  "a turn takes the conversation's lock with `lock()`")

    # Rasa's own paths take a turn's lock with `lock()` alone; its other writers would change the
    # lock outside the scripts (another process's ticket lost or given twice), so they are refused.
    issue_ticket = update_lock = get_or_create_lock = finish_serving = cleanup = _not_atomic  # type: ignore[assignment]
    save_lock = delete_lock = _not_atomic  # type: ignore[assignment]

    async def _listen_for_releases(self) -> None:
        """Wakes this process's waiting turns when another process releases their conversation;
        subscribes again after Redis dropped it (waits poll meanwhile; the drop and the return are
        logged once each, not at every attempt while Redis is away)."""
        dropped = False
        while True:
            try:
                async with self._redis.pubsub() as subscription:
                    await subscription.subscribe(self._released_channel)
                    if dropped:
                        log.info("lock store: subscribed to the releases again")
                        dropped = False
                    while True:  # read with a timeout of its own: a blocking read ends at socket_timeout
                        message = await subscription.get_message(ignore_subscribe_messages=True,
                                                                 timeout=LISTEN_SECONDS)
                        conversation_id = message.get("data") if message else None
                        if isinstance(conversation_id, bytes):
                            local_releases(self).released(conversation_id.decode())
            except (redis.exceptions.RedisError, OSError) as error:
                if not dropped:
                    log.warning("lock store: the subscription to the releases dropped (%s): a waiting turn "
                                "looks again only at its poll until it is back", type(error).__name__)
                    dropped = True
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    def _watch_key(self, conversation_id: str) -> str:
        return self.key_prefix + "watched:" + conversation_id

    async def watch(self, conversation_id: str, seconds: float) -> None:
        """Have every process publish the conversation's releases for the next `seconds` (a
        watch is never removed early: another process's reader may be watching too)."""
        self._keep_listening()
        await self._redis.set(self._watch_key(conversation_id), 1, px=int(seconds * 1000) + WATCH_MARGIN_MS)

    def _keep_listening(self) -> None:
        """Subscribed from the process's first turn on, so that a turn that has to wait finds the
        subscription up."""
        if (self._listening is None or self._listening.done()
                or self._listening.get_loop() is not asyncio.get_running_loop()):
            self._listening = asyncio.create_task(self._listen_for_releases())

    @asynccontextmanager
    async def lock(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME,  # type: ignore[override]
                   wait_time_in_seconds: float = 1) -> AsyncIterator[None]:
        """The conversation's turn, once the turns ahead of it are done (Rasa's callers use
        nothing the lock yields)."""
        key = self.key_prefix + conversation_id
        self._keep_listening()
        ticket: int | None = None
        try:
            waits = 0
            while True:
                # Watched before each look at the lock: a release between the look and the wait wakes it.
                with local_releases(self).watching(conversation_id) as released:
                    if ticket is None:
                        ticket, served = await self._issue(keys=[key], args=[conversation_id, lock_lifetime,
                                                                             uuid.uuid4().hex])
                    else:
                        served = await self._renew(keys=[key], args=[ticket, lock_lifetime])
                        if served < 0:
                            raise TicketLost("the waiting turn's ticket is gone from the lock store")
                    if served:
                        break
                    if waits == MAX_LOCK_WAITS:
                        raise ConversationBusy("could not acquire the conversation's lock")
                    waits += 1
                    await wait_for_release(released, wait_time_in_seconds)
            yield
        finally:
            try:
                if ticket is not None:
                    await self._release(keys=[key, self._released_channel, self._watch_key(conversation_id)],
                                        args=[ticket])
            finally:
                local_releases(self).released(conversation_id)
