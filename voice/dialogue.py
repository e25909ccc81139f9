"""The dialogue core as the voice channel sees it: Rasa's trusted input channel
(`/webhooks/trusted/webhook`, bot/channels.py), with the gateway's own bearer token.

Every turn carries `metadata {channel: "voice", caller_number, priority_tier}` so the core
uses the voice wording, skips asking for a number it already has and ranks the hand-over.
The core's replies are texts plus custom payloads: `expect` (the question asked), `outcome`
(a flow ended, with the `flow`; `then`: the flow the conversation goes on with; `end_call`: the
conversation is over, hang up after the reply), `party` (who answered an outbound call: the
right-party check) and `handoff` (transfer to a human with a summary).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from trust.env_secrets import require_secret

log = logging.getLogger(__name__)


class DialogueUnavailable(Exception):
    """Rasa did not answer: the call is handed to a human rather than left in silence."""


@dataclass
class Reply:
    texts: list[str] = field(default_factory=list)
    expect: dict[str, Any] | None = None
    outcome: str | None = None
    flow: str | None = None  # the flow whose outcome it is
    then: str | None = None  # the flow that flow goes on with
    end_call: bool = False  # nothing more to say: the channel ends the call after the texts
    party: str | None = None
    handoff: dict[str, Any] | None = None

    @classmethod
    def from_messages(cls, messages: list[dict[str, Any]]) -> Reply:
        reply = cls()
        for message in messages:
            if message.get("text"):
                reply.texts.append(str(message["text"]))
            custom = message.get("custom") or {}
            if "expect" in custom:
                reply.expect = custom["expect"]
            if "outcome" in custom:
                reply.outcome, reply.flow, reply.then = custom["outcome"], custom.get("flow"), custom.get("then")
                reply.end_call = reply.end_call or bool(custom.get("end_call"))
            if "party" in custom:
                reply.party = custom["party"]
            if "handoff" in custom:
                reply.handoff = custom["handoff"]
        return reply


class DialogueClient:
    """One HTTP client shared by every call of a process."""

    def __init__(self, rasa_url: str, channel_token: str | None = None, timeout_seconds: float = 15.0) -> None:
        token = channel_token or require_secret("RASA_CHANNEL_TOKEN")
        self._http = httpx.AsyncClient(base_url=rasa_url, timeout=timeout_seconds,
                                       headers={"Authorization": f"Bearer {token}"})

    async def send(self, sender: str, text: str, metadata: dict[str, Any]) -> Reply:
        try:
            response = await self._http.post(
                "/webhooks/trusted/webhook", json={"sender": sender, "message": text, "metadata": metadata})
            response.raise_for_status()
            return Reply.from_messages(response.json())
        except (httpx.HTTPError, ValueError) as error:
            raise DialogueUnavailable(f"dialogue core did not answer ({type(error).__name__}: {error})") from error

    async def close(self) -> None:
        await self._http.aclose()
