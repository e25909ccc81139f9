"""A service on `trust.serving` for tests/unit/test_serving.py, which signals it:

    python -m tests.unit.http_service PORT

`GET /health` answers at once; `GET /slow` prints `slow request in` and answers only once the
stop signal came (a request under way when the service is told to stop). After the signal the
service's own work asks its health endpoint (`health while stopping: <status>`), as the dialler
drains while its endpoint still answers; then `stopped`.
"""

from __future__ import annotations

import asyncio
import sys

import httpx
from fastapi import FastAPI

from trust.serving import serving_http


async def main(port: int) -> None:
    stop = asyncio.Event()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        print("slow request in", flush=True)
        await stop.wait()
        return {"answered": "after the stop signal"}

    async with serving_http(app, "127.0.0.1", port, stop):
        print("serving", flush=True)
        await stop.wait()
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/health", timeout=30)
        print(f"health while stopping: {answer.status_code}", flush=True)
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
