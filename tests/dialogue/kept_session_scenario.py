"""Rasa's `EndpointConfig.request` against a real HTTP server on loopback, in Rasa's environment:
`python kept_session_scenario.py` prints, as one JSON line, how many TCP connections the calls
opened with Rasa's own session and with bot/rasa_launcher.py's kept one, and what the server saw.
The calls carry what Rasa's custom action calls do: the domain, the same dict call after call,
until another model's. tests/dialogue/test_kept_session.py runs it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from rasa.shared.core.domain import Domain
from rasa.utils.endpoints import EndpointConfig

from bot import rasa_launcher
from stack.services import ROOT

DOMAIN = Domain.load(ROOT / "bot" / "domain.yml").as_dict()
ANOTHER_DOMAIN = {"version": "3.1", "intents": ["greet"], "responses": {"utter_greet": [{"text": "您好"}]}}
BODIES: list[dict[str, Any]] = [{"next_action": "validate_bill_inquiry_form", "tracker": {"sender_id": "a"},
                                 "domain": DOMAIN},
                                {"next_action": "action_flow_engine", "tracker": {"sender_id": "b"}, "domain": DOMAIN},
                                {"domain": ANOTHER_DOMAIN},
                                {"call": "no domain"}]
CALLS = len(BODIES)


async def calls(session: Any) -> dict[str, Any]:
    """The CALLS calls (BODIES) through `session` (EndpointConfig.session's replacement, or Rasa's own)."""
    peers: set[Any] = set()
    headers: list[str | None] = []
    received: list[Any] = []

    async def answer(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        headers.append(request.headers.get("Authorization"))
        received.append(await request.json())
        return web.json_response({"events": [], "responses": [], "echo": len(received) - 1})

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
        replies = [await endpoint.request(json=body, method="post") for body in BODIES]
    finally:
        EndpointConfig.session = original  # type: ignore[method-assign]
        await rasa_launcher._close_kept_sessions()
        await runner.cleanup()
    return {"connections": len(peers), "headers": headers, "echoes": [reply["echo"] for reply in replies],
            "bodies_as_sent": received == BODIES, "domain_keys": len(DOMAIN)}


async def main() -> dict[str, Any]:
    return {"rasa": await calls(EndpointConfig.session), "kept": await calls(rasa_launcher._kept_session)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
