"""The flow engine's client for the risk-check API (docs/risk-api.md), on the shared HTTP client
(risk_api_client) with the engine's role token.

Failures come back as two exceptions the engine can act on: `RiskApiUnavailable` (down,
timing out, answering 5xx: tell the customer nothing changed and hand off) and
`RiskApiRefused` (a 4xx with the API's own code and customer-safe Chinese message).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ivr_config import environment
from risk_api_client import RiskApiHttp, RiskApiRefused, RiskApiUnavailable
from trust.env_secrets import require_secret
from trust.logs import session_ref

__all__ = ["RiskApiClient", "RiskApiRefused", "RiskApiUnavailable"]


class RiskApiClient(RiskApiHttp):
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

    async def session(self, session_id: str) -> dict[str, Any] | None:
        """Who this conversation proved to be, and how far: the only source of identity.
        None when it has not verified or its verified session ended."""
        try:
            return await self.call("GET", f"/sessions/{session_id}", f"/sessions/{session_ref(session_id)}")
        except RiskApiRefused as refusal:
            if refusal.status == 404:
                return None
            raise

    async def verify_l1(self, phone: str, name: str, id_last4: str, session_id: str, channel: str) -> dict[str, Any]:
        body = {"phone": phone, "name": name, "id_last4": id_last4, "session_id": session_id,
                "channel": channel}
        return await self.call("POST", "/verification/l1", json=body)

    async def l1_methods(self, session_id: str, channel: str) -> list[str]:
        """How this conversation may prove L1 now (`line_id6` only on a call whose line the phone
        gateway vouched for)."""
        body = {"session_id": session_id, "channel": channel}
        return list((await self.call("POST", "/verification/l1/methods", json=body))["methods"])

    async def verify_l1_line(self, id_last6: str, session_id: str, channel: str) -> dict[str, Any]:
        """L1 by the call's line: the risk API takes the number the phone gateway vouched for,
        never one from the engine."""
        body = {"id_last6": id_last6, "session_id": session_id, "channel": channel}
        return await self.call("POST", "/verification/l1/line", json=body)

    async def send_otp(self, customer_id: str, session_id: str, channel: str) -> dict[str, Any]:
        body = {"customer_id": customer_id, "session_id": session_id, "channel": channel}
        return await self.call("POST", "/verification/otp", json=body)

    async def verify_l2(self, customer_id: str, code: str, session_id: str, channel: str) -> dict[str, Any]:
        body = {"customer_id": customer_id, "code": code, "session_id": session_id, "channel": channel}
        return await self.call("POST", "/verification/l2", json=body)

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
