"""The one HTTP client of the risk-check API (docs/risk-api.md), shared by its Python callers:
the flow engine (bot/actions/risk_client.py), the phone gateway (telephony/gateway.py), the
dialler (outbound/directory.py) and the web server's agent desk (web/app.py).

Each caller brings its own role's token (the engine's, the gateway's, the dialler's, the
desk's): the API decides what a role may do. Failures come back as two exceptions a caller can
act on: `RiskApiUnavailable` (down, timing out, answering 5xx or not JSON: nothing may be assumed)
and `RiskApiRefused` (a 4xx with the API's own code and customer-safe Chinese message). httpx
only: no Rasa, so the gateway can import it without the action server's dependencies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from trust.http_pool import HttpPool

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
    """A pool of connections to the risk API (one per event loop) with one caller role's token."""

    def __init__(self, base_url: str, token: str, timeout_seconds: float = 5.0) -> None:
        self._pool = HttpPool(base_url, token, timeout_seconds)

    async def call(self, method: str, path: str, shown: str | None = None, **kwargs: Any) -> Any:
        """The JSON answer; `shown`: the path as logs may name it (without a session id in it)."""
        response = await self._request(method, path, shown, **kwargs)
        try:
            return response.json()
        except ValueError:
            log.warning("risk API %s %s answered what is not JSON", method, shown or path)
            raise RiskApiUnavailable(f"{method} {shown or path}: not JSON") from None

    async def listed(self, path: str, params: Mapping[str, Any]) -> tuple[list[Any], int]:
        """One page of a list route and the total it counts (its X-Total-Count header)."""
        response = await self._request("GET", path, None, params=params)
        try:
            page, total = response.json(), int(response.headers["x-total-count"])
        except (ValueError, KeyError):
            raise RiskApiUnavailable(f"GET {path}: no list with its total") from None
        if not isinstance(page, list):
            raise RiskApiUnavailable(f"GET {path}: not a list")
        return page, total

    async def _request(self, method: str, path: str, shown: str | None, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._pool.client().request(method, path, **kwargs)
        except httpx.HTTPError as error:
            log.warning("risk API %s %s failed: %s", method, shown or path, type(error).__name__)
            raise RiskApiUnavailable(f"{method} {shown or path}: {type(error).__name__}") from error
        if response.status_code >= 500:
            log.warning("risk API %s %s answered %s", method, shown or path, response.status_code)
            raise RiskApiUnavailable(f"{method} {shown or path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            detail = _detail(response)
            raise RiskApiRefused(response.status_code, str(detail.get("code", "error")),
                                 str(detail.get("message", "")))
        return response

    async def close(self) -> None:
        await self._pool.aclose()


def _detail(response: httpx.Response) -> dict[str, Any]:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):  # not JSON, or not an object
        return {}
    return detail if isinstance(detail, dict) else {"message": str(detail)}
