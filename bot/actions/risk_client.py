"""The flow engine's client for the risk-check API (docs/risk-api.md).

Failures come back as two exceptions the engine can act on: `RiskApiUnavailable` (down,
timing out, answering 5xx: tell the customer nothing changed and hand off) and
`RiskApiRefused` (a 4xx with the API's own code and customer-safe Chinese message).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx

from trust.logs import session_ref

log = logging.getLogger(__name__)


class RiskApiUnavailable(RuntimeError):
    """The API could not be reached or failed; nothing may be assumed about the account."""


class RiskApiRefused(RuntimeError):
    """The API answered 4xx: `code` says why, `message` may be said to the customer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class RiskApiClient:
    def __init__(self, base_url: str, token: str, timeout_seconds: float = 5.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_seconds,
        )

    @classmethod
    def from_environment(cls) -> RiskApiClient:
        token = os.environ.get("RISK_API_TOKEN")
        if not token:
            raise RuntimeError("RISK_API_TOKEN is not set: the action server cannot call the risk API")
        return cls(os.environ.get("RISK_API_URL", "http://127.0.0.1:8400"), token)

    async def _call(self, method: str, path: str, shown: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """`shown`: the path as logs may name it (without a session id in it)."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            log.warning("risk API %s %s failed: %s", method, shown or path, type(error).__name__)
            raise RiskApiUnavailable(f"{method} {shown or path}: {type(error).__name__}") from error
        if response.status_code >= 500:
            log.warning("risk API %s %s answered %s", method, shown or path, response.status_code)
            raise RiskApiUnavailable(f"{method} {shown or path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            detail = _detail(response)
            raise RiskApiRefused(response.status_code, detail.get("code", "error"), detail.get("message", ""))
        return response.json()

    async def customer(self, customer_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/customers/{customer_id}")

    async def customer_by_phone(self, phone: str) -> dict[str, Any]:
        # A POST body, not the URL: no phone number in any access log.
        return await self._call("POST", "/customers/lookup", json={"phone": phone})

    async def session(self, session_id: str) -> dict[str, Any] | None:
        """Who this conversation proved to be, and how far: the only source of identity.
        None when it has not verified or its verified session ended."""
        try:
            return await self._call("GET", f"/sessions/{session_id}", f"/sessions/{session_ref(session_id)}")
        except RiskApiRefused as refusal:
            if refusal.status == 404:
                return None
            raise

    async def verify_l1(self, phone: str, name: str, id_last4: str, session_id: str, channel: str) -> dict[str, Any]:
        body = {"phone": phone, "name": name, "id_last4": id_last4, "session_id": session_id,
                "channel": channel}
        return await self._call("POST", "/verification/l1", json=body)

    async def send_otp(self, customer_id: str, session_id: str, channel: str) -> dict[str, Any]:
        body = {"customer_id": customer_id, "session_id": session_id, "channel": channel}
        return await self._call("POST", "/verification/otp", json=body)

    async def verify_l2(self, customer_id: str, code: str, session_id: str, channel: str) -> dict[str, Any]:
        body = {"customer_id": customer_id, "code": code, "session_id": session_id, "channel": channel}
        return await self._call("POST", "/verification/l2", json=body)

    async def read(self, customer_id: str, read: str, session_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/customers/{customer_id}/{read}", params={"session_id": session_id})

    async def decide(self, customer_id: str, action: str, params: dict[str, Any], session_id: str,
                     channel: str) -> dict[str, Any]:
        body = {"action": action, "params": params, "session_id": session_id, "channel": channel}
        return await self._call("POST", f"/customers/{customer_id}/decisions", json=body)

    async def act(self, customer_id: str, action: str, decision_id: str, params: dict[str, Any],
                  session_id: str, channel: str, idempotency_key: str) -> dict[str, Any]:
        body = {"decision_id": decision_id, "params": params, "session_id": session_id, "channel": channel}
        return await self._call("POST", f"/customers/{customer_id}/actions/{action}", json=body,
                                headers={"Idempotency-Key": idempotency_key})

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Service records (tickets, promises, callbacks, preferences, handoffs)."""
        return await self._call("POST", path, json=body)


def _detail(response: httpx.Response) -> dict[str, Any]:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {"message": str(detail)}
