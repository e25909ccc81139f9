"""The widget's socket.io rooms shared by several Rasa processes over Redis, in JSON only.

With several Rasa processes behind the balancer, a customer's websocket is open on one of them,
while the line meant for it (an agent's, from the desk's relay) may be written on another. Each
process emits here first (its own sockets, Redis not needed) and publishes the emit on a Redis
channel; the other processes deliver it to their sockets in the room.

python-socketio's own AsyncRedisManager (5.8) pickles what it publishes and unpickles what it
reads: whoever can publish on that Redis would run code in every Rasa process. Here a message is
a JSON object or nothing: anything else read from the channel (a pickle, bytes that are not JSON,
a JSON value that is not an object, an unknown method, an oversized payload) is logged by its
size and dropped, never decoded further; an emit whose data JSON cannot carry is refused before
it is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError
from socketio.asyncio_manager import AsyncManager
from socketio.asyncio_pubsub_manager import AsyncPubSubManager

from ivr_config.environment import port_number
from trust.env_secrets import require_secret

log = logging.getLogger(__name__)
CHANNEL = "xiaoan-webchat"
MAX_MESSAGE_BYTES = 256 * 1024  # a bot message is a few kB; socket payloads are capped at 16 kB
METHODS = frozenset({"emit", "callback", "disconnect", "close_room"})  # what AsyncPubSubManager sends
CONNECT_TIMEOUT_SECONDS = 5.0
PUBLISH_TIMEOUT_SECONDS = 5.0  # a publish waits no longer on a Redis that stopped answering
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0


def encoded(message: Mapping[str, Any]) -> bytes:
    """The message as compact JSON; TypeError/ValueError for anything JSON cannot carry."""
    return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def decoded(payload: Any) -> dict[str, Any] | None:
    """A pub/sub message as read from Redis, if it is one of ours: a JSON object with a known
    method. Never unpickled."""
    if not isinstance(payload, bytes | str) or len(payload) > MAX_MESSAGE_BYTES:
        return None
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(message, dict) or message.get("method") not in METHODS:
        return None
    return message


class JsonRedisManager(AsyncPubSubManager):
    """AsyncPubSubManager over Redis pub/sub, JSON in and out (see the module's docstring)."""

    name = "json-redis"

    def __init__(self, host: str, port: int, password: str, channel: str = CHANNEL) -> None:
        self._options: dict[str, Any] = {"host": host, "port": port, "password": password,
                                         "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
                                         "socket_keepalive": True}
        # Two clients: a publish gives up after PUBLISH_TIMEOUT_SECONDS, while the subscriber
        # waits for messages with no read timeout (with one it would drop its subscription when
        # the channel is quiet for that long).
        self.redis = aioredis.Redis(**self._options, socket_timeout=PUBLISH_TIMEOUT_SECONDS)
        self.refused = 0
        super().__init__(channel=channel)

    async def emit(self, event: str, data: Any, namespace: str | None = None, room: str | None = None,
                   skip_sid: Any = None, callback: Any = None, **kwargs: Any) -> None:
        if callback is not None or kwargs.get("ignore_queue"):  # acknowledgements: the library's way
            await super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                               callback=callback, **kwargs)
            return
        namespace = namespace or "/"
        payload = encoded({"method": "emit", "event": event, "data": data, "namespace": namespace,
                           "room": room, "skip_sid": skip_sid, "callback": None, "host_id": self.host_id})
        # This process's sockets first: a customer connected here gets the line even with Redis down.
        await AsyncManager.emit(self, event, data, namespace, room=room, skip_sid=skip_sid)
        await self._send(payload)

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("host_id") == self.host_id and message.get("callback") is None:
            return  # published by this process, which delivered it to its own sockets already
        await super()._handle_emit(message)

    async def _publish(self, data: dict[str, Any]) -> None:
        await self._send(encoded(data))

    async def _send(self, payload: bytes) -> None:
        try:
            await self.redis.publish(self.channel, payload)
        except (RedisError, OSError) as error:
            # Only the other processes' sockets miss this message; the turn goes on.
            log.warning("socket.io over Redis: a message for the other Rasa processes was not sent (%s)",
                        type(error).__name__)

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:  # type: ignore[override]
        """Decoded messages only (the library's `_thread` then never unpickles); resubscribes
        after Redis goes away, waiting longer each time (at most MAX_RETRY_SECONDS)."""
        delay = FIRST_RETRY_SECONDS
        while True:
            subscriber = aioredis.Redis(**self._options)
            pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                delay = FIRST_RETRY_SECONDS
                async for raw in pubsub.listen():
                    if raw.get("type") != "message":
                        continue
                    message = decoded(raw.get("data"))
                    if message is None:
                        self.refused += 1
                        size = len(raw["data"]) if isinstance(raw.get("data"), bytes | str) else 0
                        log.warning("socket.io over Redis: refused a message that is not one of ours "
                                    "(%d bytes; only JSON objects are read, never pickles)", size)
                        continue
                    yield message
            except (RedisError, OSError) as error:
                log.warning("socket.io over Redis: subscription lost (%s), again in %.1f s",
                            type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
            finally:
                await pubsub.reset()
                await subscriber.close()


def shared_rooms(env: Mapping[str, str] = os.environ) -> JsonRedisManager | None:
    """The rooms over the lock store's Redis (REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, as
    bot/endpoints.scaled.yml reads them) when REDIS_HOST is set; None: this process's memory."""
    host = env.get("REDIS_HOST", "").strip()
    if not host:
        return None
    return JsonRedisManager(host, port_number(env, "REDIS_PORT", 6379), require_secret("REDIS_PASSWORD", env))
