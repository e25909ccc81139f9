"""The one HTTP client of the risk-check API (docs/risk-api.md), shared by its Python callers:
the flow engine (bot/actions/risk_client.py) and the phone gateway (telephony/gateway.py).

Each caller brings its own role's token (the engine's, the gateway's): the API decides what a
role may do. Failures come back as two exceptions a caller can act on: `RiskApiUnavailable`
(down, timing out, answering 5xx: nothing may be assumed) and `RiskApiRefused` (a 4xx with the
API's own code and customer-safe Chinese message). httpx only: no Rasa, so the gateway can
import it without the action server's dependencies.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

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


class RiskApiHttp:
    """One connection pool to the risk API with one caller role's token."""

    def __init__(self, base_url: str, token: str, timeout_seconds: float = 5.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_seconds,
        )

    async def call(self, method: str, path: str, shown: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """The JSON answer; `shown`: the path as logs may name it (without a session id in it)."""
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

    async def close(self) -> None:
        await self._http.aclose()


def _detail(response: httpx.Response) -> dict[str, Any]:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {"message": str(detail)}
