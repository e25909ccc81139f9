"""One pooled HTTP client per service called and per event loop: the connections stay open
across requests (a desk page that asks the risk API three times pays for one connection), and a
client is never used from a loop it does not belong to (httpx's connections are bound to one)."""

from __future__ import annotations

import asyncio

import httpx

# No cap on connections: each open conversation on a desk holds one long-poll to Rasa.
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=32)


class HttpPool:
    def __init__(self, base_url: str, token: str | None, timeout: float) -> None:
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> httpx.AsyncClient:
        """The pooled client of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(base_url=self._base_url, headers=self._headers,
                                             timeout=self._timeout, limits=LIMITS)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None
