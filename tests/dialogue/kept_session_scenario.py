"""Rasa's `EndpointConfig.request` against a real HTTP server on loopback, in Rasa's environment:
`python kept_session_scenario.py` prints, as one JSON line, how many TCP connections three calls
opened with Rasa's own session and with bot/rasa_launcher.py's kept one, and what the server saw.
tests/dialogue/test_kept_session.py runs it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from rasa.utils.endpoints import EndpointConfig

from bot import rasa_launcher

CALLS = 3


async def calls(session: Any) -> dict[str, Any]:
    """Three calls through `session` (EndpointConfig.session's replacement, or Rasa's own)."""
    peers: set[Any] = set()
    headers: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        headers.append(request.headers.get("Authorization"))
        return web.json_response({"events": [], "responses": [], "echo": await request.json()})

    app = web.Application()
    app.router.add_post("/webhook", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint = EndpointConfig(f"http://127.0.0.1:{port}/webhook", headers={"Authorization": "Bearer action-token"})
    original = EndpointConfig.session
    EndpointConfig.session = session  # type: ignore[method-assign]
    try:
        replies = [await endpoint.request(json={"call": number}, method="post") for number in range(CALLS)]
    finally:
        EndpointConfig.session = original  # type: ignore[method-assign]
        await rasa_launcher._close_kept_sessions()
        await runner.cleanup()
    return {"connections": len(peers), "headers": headers, "echoes": [reply["echo"]["call"] for reply in replies]}


async def main() -> dict[str, Any]:
    return {"rasa": await calls(EndpointConfig.session), "kept": await calls(rasa_launcher._kept_session)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
