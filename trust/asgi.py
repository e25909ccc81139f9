"""ASGI guards the HTTP services put in front of their routes, so that a refusal (no credential,
body too large) happens before any handler reads or parses a body. Plain ASGI, no framework:
any service wraps its app with them."""
from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Refusal = Callable[[int], dict[str, Any]]


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    payload = json.dumps(body, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class BodyLimit:
    """413 for a body over its route's limit, declared or streamed, before any handler reads it.

    Bodies here are small, so the whole body is read (up to the limit) and handed on.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int], refusal: Refusal) -> None:
        self.app = app
        self.limit_for = limit_for
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await send_json(send, 413, self.refusal(limit))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_json(send, 413, self.refusal(limit))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        handed_on = False

        async def replay() -> Message:
            nonlocal handed_on
            if handed_on:
                return await receive()
            handed_on = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def bearer_matches(authorization: bytes, tokens: Collection[bytes]) -> bool:
    """`Authorization: Bearer <one of tokens>`; no token: False."""
    scheme, _, presented = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    # Compare with every token, not stopping at a match: the time says nothing of which.
    return sum(hmac.compare_digest(presented.strip(), token) for token in tokens) == 1


class BearerGate:
    """401 unless the request carries one of the service's bearer tokens; outside `BodyLimit`,
    so an unauthenticated client cannot make the service read a body at all. Which caller may
    use which route is still the routes' own check."""

    def __init__(self, app: ASGIApp, tokens: Collection[str], open_paths: Collection[str],
                 refusal: dict[str, Any]) -> None:
        self.app = app
        self.tokens = [token.encode() for token in tokens]
        self.open_paths = frozenset(open_paths)
        self.refusal = refusal

    def _authenticated(self, scope: Scope) -> bool:
        return bearer_matches(_header(scope, b"authorization") or b"", self.tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._authenticated(scope):
            await self.app(scope, receive, send)
            return
        await send_json(send, 401, self.refusal, headers=((b"www-authenticate", b"Bearer"),))
