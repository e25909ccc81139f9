"""The flow engine's client for the risk-check API (docs/risk-api.md), on the shared HTTP client
(risk_api_client) with the engine's role token.

Failures come back as two exceptions the engine can act on: `RiskApiUnavailable` (down,
timing out, answering 5xx: tell the customer nothing changed and hand off) and
`RiskApiRefused` (a 4xx with the API's own code and customer-safe Chinese message).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from ivr_config import environment
from risk_api_client import RiskApiHttp, RiskApiRefused, RiskApiUnavailable
from trust.env_secrets import require_secret
from trust.logs import session_ref

__all__ = ["RiskApiClient", "RiskApiRefused", "RiskApiUnavailable"]


# A turn's actions run within a second or two; an answer older than this is asked for again.
TURN_SESSION_SECONDS = 10.0
TURN_SESSIONS_KEPT = 4096  # conversations


class TurnSessions:
    """The risk API's answer about a conversation's verified session, shared by the actions of
    one turn (Rasa calls the action server several times for one customer message, and each
    action asked again: most of the action server's CPU under load).

    Keyed by the turn (`conversation.turn_key`: the customer message being answered and the
    identity slots as the tracker carries them): a new message asks afresh. Safe because a session
    changes only by expiring or by verification, and an action that verifies (this client then
    forgets the answer) or finds the session ended records it in those slots, which every later
    action of the turn receives, in whichever action-server process it runs (the scaled topology
    balances action calls across several); and the risk API checks the session itself on every
    read and action, so an answer kept a few hundred milliseconds can make the engine ask once
    more, never act beyond what the session allows.
    """

    def __init__(self, size: int = TURN_SESSIONS_KEPT, longest_seconds: float = TURN_SESSION_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.longest_seconds = longest_seconds
        self.clock = clock
        self._answers: OrderedDict[str, tuple[str, float, dict[str, Any] | None]] = OrderedDict()

    def get(self, session_id: str, turn: str) -> tuple[bool, dict[str, Any] | None]:
        """(True, answer) when this turn already asked; (False, None) otherwise."""
        kept = self._answers.get(session_id)
        if kept is None or kept[0] != turn or self.clock() - kept[1] > self.longest_seconds:
            return False, None
        return True, kept[2]

    def put(self, session_id: str, turn: str, answer: dict[str, Any] | None) -> None:
        self._answers[session_id] = (turn, self.clock(), answer)
        self._answers.move_to_end(session_id)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)

    def forget(self, session_id: str) -> None:
        self._answers.pop(session_id, None)


class RiskApiClient(RiskApiHttp):
    def __init__(self, base_url: str, token: str, timeout_seconds: float = 5.0) -> None:
        super().__init__(base_url, token, timeout_seconds)
        self.turn_sessions = TurnSessions()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RiskApiClient:
        """RISK_API_URL and the engine's RISK_API_TOKEN (a SecretError when missing)."""
        return cls(environment.text(env, "RISK_API_URL", "http://127.0.0.1:8400"),
                   require_secret("RISK_API_TOKEN", env))

    async def customer(self, customer_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/customers/{customer_id}")

    async def customer_by_phone(self, phone: str) -> dict[str, Any]:
        # A POST body, not the URL: no phone number in any access log.
        return await self.call("POST", "/customers/lookup", json={"phone": phone})

    async def session(self, session_id: str, turn: str | None = None) -> dict[str, Any] | None:
        """Who this conversation proved to be, and how far: the only source of identity.
        None when it has not verified or its verified session ended. With `turn`, an answer
        given earlier in the same turn (`TurnSessions`); without, always asked."""
        if turn is not None:
            known, answer = self.turn_sessions.get(session_id, turn)
            if known:
                return answer
        try:
            answer = await self.call("GET", f"/sessions/{session_id}", f"/sessions/{session_ref(session_id)}")
        except RiskApiRefused as refusal:
            if refusal.status != 404:
                raise
            answer = None
        if turn is not None:
            self.turn_sessions.put(session_id, turn, answer)
        return answer

    async def _verifying(self, session_id: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A verification may change the session (even one that timed out here may have passed
        there): the turn's kept answer goes, whatever the outcome."""
        try:
            return await self.call("POST", path, json=body)
        finally:
            self.turn_sessions.forget(session_id)

    async def verify_l1(self, phone: str, name: str, id_last4: str, session_id: str, channel: str) -> dict[str, Any]:
        body = {"phone": phone, "name": name, "id_last4": id_last4, "session_id": session_id,
                "channel": channel}
        return await self._verifying(session_id, "/verification/l1", body)

    async def l1_methods(self, session_id: str, channel: str) -> list[str]:
        """How this conversation may prove L1 now (`line_id6` only on a call whose line the phone
        gateway vouched for)."""
        body = {"session_id": session_id, "channel": channel}
        return list((await self.call("POST", "/verification/l1/methods", json=body))["methods"])

    async def verify_l1_line(self, id_last6: str, session_id: str, channel: str) -> dict[str, Any]:
        """L1 by the call's line: the risk API takes the number the phone gateway vouched for,
        never one from the engine."""
        body = {"id_last6": id_last6, "session_id": session_id, "channel": channel}
        return await self._verifying(session_id, "/verification/l1/line", body)

    async def send_otp(self, customer_id: str, session_id: str, channel: str) -> dict[str, Any]:
        body = {"customer_id": customer_id, "session_id": session_id, "channel": channel}
        return await self.call("POST", "/verification/otp", json=body)

    async def verify_l2(self, customer_id: str, code: str, session_id: str, channel: str) -> dict[str, Any]:
        body = {"customer_id": customer_id, "code": code, "session_id": session_id, "channel": channel}
        return await self._verifying(session_id, "/verification/l2", body)

    async def read(self, customer_id: str, read: str, session_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/customers/{customer_id}/{read}", params={"session_id": session_id})

    async def decide(self, customer_id: str, action: str, params: dict[str, Any], session_id: str,
                     channel: str) -> dict[str, Any]:
        body = {"action": action, "params": params, "session_id": session_id, "channel": channel}
        return await self.call("POST", f"/customers/{customer_id}/decisions", json=body)

    async def act(self, customer_id: str, action: str, decision_id: str, params: dict[str, Any],
                  session_id: str, channel: str, idempotency_key: str) -> dict[str, Any]:
        body = {"decision_id": decision_id, "params": params, "session_id": session_id, "channel": channel}
        return await self.call("POST", f"/customers/{customer_id}/actions/{action}", json=body,
                               headers={"Idempotency-Key": idempotency_key})

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Service records (tickets, promises, callbacks, preferences, handoffs)."""
        return await self.call("POST", path, json=body)
