"""How a service serves HTTP beside its own work (the dialler's loop, the quality inspection, the
phone gateway's calls) and stops: SIGINT or SIGTERM sets the service's stop event, the service
winds its work down, and the HTTP server stops last, answering the requests under way.

uvicorn left to itself takes SIGINT/SIGTERM for its server alone (`Server.capture_signals`, which
replaces the event loop's handlers): its health endpoint would go first and the service learn of
the signal only afterwards. Here it serves without touching the process's signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn that leaves the process's signals to the service it runs in."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving_http(app: Any, host: str, port: int, stop: asyncio.Event | None = None,
                       log_level: str = "warning") -> AsyncIterator[asyncio.Event]:
    """`app` served on host:port while the block runs; yields the stop event that SIGINT and
    SIGTERM set (`stop` when given: a test may set it itself). The server stops when the block
    ends, however it ends. The signal handlers stay until the event loop closes: a second signal
    during the service's last clean-up changes nothing."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    # log_config=None: uvicorn's lines go to the root logger, in the service's format (trust/log_format.py).
    server = _EmbeddedServer(uvicorn.Config(app, host=host, port=port, log_level=log_level, log_config=None))
    server_task = asyncio.create_task(server.serve(), name=f"http-{host}:{port}")
    try:
        yield stop
    finally:
        server.should_exit = True
        await server_task
