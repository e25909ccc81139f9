"""trust.serving: a real service process on loopback (tests/unit/http_service.py) stops on SIGINT
and SIGTERM: its own work winds down while its HTTP endpoint still answers, a request under way
is answered, then the server stops and the process exits 0. Bounded in time, never timed."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from stack.services import free_port

ROOT = Path(__file__).resolve().parents[2]
BOUND_SECONDS = 60  # generous: a loaded machine is slow, never this slow


async def line_saying(process: asyncio.subprocess.Process, expected: str) -> None:
    assert process.stdout is not None
    for _ in range(20):  # a bound: the service prints a handful of lines
        line = (await asyncio.wait_for(process.stdout.readline(), BOUND_SECONDS)).decode().strip()
        if line == expected:
            return
        assert line, f"the service ended before printing {expected!r}"
    raise AssertionError(f"no {expected!r} from the service")


async def healthy(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert process.returncode is None, "the service exited"
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health", timeout=5)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the service did not answer")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_the_work_then_the_server_and_the_process_exits_0(signum: signal.Signals) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.unit.http_service", str(port), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await line_saying(process, "serving")
        await healthy(port, process)
        async with httpx.AsyncClient() as http:
            under_way = asyncio.create_task(http.get(f"http://127.0.0.1:{port}/slow", timeout=BOUND_SECONDS))
            await line_saying(process, "slow request in")
            process.send_signal(signum)
            answer = await asyncio.wait_for(under_way, BOUND_SECONDS)
        assert answer.status_code == 200 and answer.json() == {"answered": "after the stop signal"}
        # The work saw the signal first and the server still answered it: uvicorn took no signal.
        await line_saying(process, "health while stopping: 200")
        await line_saying(process, "stopped")
        _, stderr = await asyncio.wait_for(process.communicate(), BOUND_SECONDS)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
