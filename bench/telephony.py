"""AudioSocket load: N concurrent calls over loopback, audio paced in and echoed back out.

The server (telephony.audiosocket with an echo handler) runs in this process; the echo goes out
the way the gateway's speech does: the voice pipeline's AudioOutput on its 20 ms clock writes
each frame to the call (telephony.gateway.AudioSocketTransport). The Asterisk side
(bench/audiosocket_peer.AudioSocketPeer, one per call, streaming 20 ms frames) runs in a child
process so that CPU and memory figures are the server's alone. Per call count it reports:

- late_frame_ratio: outbound frames AudioOutput wrote more than one frame period after their deadline;
- inbound_jitter_p95_ms: |inter-arrival gap - 20 ms| of inbound frames at the server, p95;
- cpu_seconds_per_call_second: server process CPU time / (calls x seconds);
- rss_kib_per_call: growth of the server's resident memory while the calls run, per call;
- peer_process_cpu_share: CPU of the simulated Asterisk side per second of audio (1.0 = a core).

Bounded: each run streams `seconds` of audio and gives up after twice that plus 20 s.
Run: `PYTHONPATH=. python -m bench.telephony [seconds]`.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.audiosocket_peer import AudioSocketPeer
from bench.stats import percentile
from telephony.audiosocket import OUTBOUND_FRAME_BYTES, AudioSocketCall, AudioSocketServer
from telephony.gateway import AudioSocketTransport
from voice.audio import FRAME_SECONDS
from voice.frames import CallStarted, Hangup, InputAudio, OutputAudio
from voice.output import AudioOutput
from voice.pipeline import Pipeline

SETTLE_SECONDS = 0.5


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _peers_process(port: int, calls: int, seconds: float, results: Any) -> None:
    """Child process: `calls` peers streaming `seconds` of audio each, then hanging up."""
    async def run() -> int:
        peers = [await AudioSocketPeer("127.0.0.1", port).connect() for _ in range(calls)]
        pcm = b"\x10\x00" * (OUTBOUND_FRAME_BYTES // 2) * int(seconds / FRAME_SECONDS)
        await asyncio.gather(*(peer.stream(pcm) for peer in peers))
        await asyncio.sleep(SETTLE_SECONDS)  # let the echo drain
        for peer in peers:
            await peer.send_hangup()
        await asyncio.gather(*(peer.wait_closed_by_server(5) for peer in peers))
        return sum(len(peer.audio()) for peer in peers)

    results.put(asyncio.run(run()))


class Echo:
    """A call handler that says back what it hears, through the gateway's output path; keeps each
    call's inbound arrival times and its AudioOutput (frames sent, late frames)."""

    def __init__(self) -> None:
        self.arrivals: list[list[float]] = []
        self.outputs: list[AudioOutput] = []

    async def __call__(self, call: AudioSocketCall) -> None:
        times: list[float] = []
        self.arrivals.append(times)
        transport = AudioSocketTransport(call)
        output = AudioOutput(transport)
        self.outputs.append(output)
        pipeline = Pipeline([output])
        loop = asyncio.get_running_loop()
        try:
            await pipeline.send(CallStarted(call.uuid))
            async for frame in transport.frames():
                if isinstance(frame, InputAudio):
                    times.append(loop.time())
                    await pipeline.send(OutputAudio(frame.pcm, frame.sample_rate, ""))
                elif isinstance(frame, Hangup):
                    await pipeline.send(frame)
        finally:
            await pipeline.close()


async def _measure(calls: int, seconds: float) -> dict[str, float]:
    echo = Echo()
    server = AudioSocketServer(echo, port=0, max_calls=calls)  # the bench sets its own load, above the default cap
    await server.start()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_peers_process, args=(server.port, calls, seconds, results), daemon=True)
    rss_before, cpu_before, peer_cpu_before = rss_kib(), cpu_seconds(), cpu_seconds(resource.RUSAGE_CHILDREN)
    rss_peak = rss_before
    child.start()
    deadline = time.monotonic() + 2 * seconds + 20
    try:
        while child.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            rss_peak = max(rss_peak, rss_kib())
        cpu_used = cpu_seconds() - cpu_before
        if child.is_alive():
            raise TimeoutError(f"{calls} calls did not finish within {2 * seconds + 20:g} s")
        frames_heard = results.get(timeout=5)
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        await server.close()
    peer_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - peer_cpu_before
    sent = sum(output.frames_sent for output in echo.outputs)
    late = sum(output.late_frames for output in echo.outputs)
    jitter = [abs((later - earlier) - FRAME_SECONDS) * 1000
              for times in echo.arrivals for earlier, later in zip(times, times[1:], strict=False)]
    return {
        "calls": calls,
        "seconds": seconds,
        "frames_sent": sent,
        "frames_heard_by_peers": frames_heard,
        "late_frame_ratio": round(late / sent, 5) if sent else 0.0,
        "inbound_jitter_p95_ms": round(percentile(jitter, 0.95), 3) if jitter else 0.0,
        "cpu_seconds_per_call_second": round(cpu_used / (calls * seconds), 5),
        "rss_kib_per_call": round((rss_peak - rss_before) / calls, 1),
        # The simulated Asterisk side; when it saturates a core, inbound timing suffers too.
        "peer_process_cpu_share": round(peer_cpu / seconds, 3),
    }


def figures(calls: Sequence[int] = (10, 50, 100), seconds: float = 10.0) -> dict[str, Any]:
    """One measurement per call count, each in a fresh event loop."""
    return {"audiosocket": [asyncio.run(_measure(count, seconds)) for count in calls]}


if __name__ == "__main__":
    print(json.dumps(figures(seconds=float(sys.argv[1]) if len(sys.argv) > 1 else 10.0), indent=2))
