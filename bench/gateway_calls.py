"""Calls per machine: concurrent phone calls into 1 and into n real gateway processes.

The gateways are `python -m telephony.gateway` as `make run SCALE=n` starts them: one AudioSocket
address shared by SO_REUSEPORT (the kernel spreads the calls), the real assistant behind them.
The Asterisk side runs in a process of its own (bench/audiosocket_peer.AudioSocketPeer, one per
call): each call streams 20 ms frames of telephone-line noise (pink, 20 dB below speech) on
absolute deadlines, presses a key once the bot has spoken (a turn to Rasa and its reply), and
hangs up after CALL_SECONDS. No caller speech: these are the calls "without recognition" (the
keypad), so what is measured is the gateway's own cost — transport, noise suppression, both VADs,
barge-in and turn detection, playback — not a recogniser's.

Per gateway count and call count:
- late_frame_ratio: the bot's audio frames sent more than a frame period after their deadline,
  from the gateways' own counters (`ivr_gateway_late_frames_total` / `…frames_sent_total`);
- cpu_seconds_per_call_second: CPU of the gateway processes / (calls × CALL_SECONDS);
- calls_greeted: calls whose peer heard at least a second of the bot's speech.
`held`: the most calls with late frames ≤ LATE_FRAME_TARGET, up to the first count that failed.

With `spoken` (the calls "with recognition"): each call is SPOKEN_CALL_SECONDS long and the
caller says one held-out request (Kokoro's voice at 8 kHz over the same line noise) at a moment
drawn uniformly from the call after the greeting: one request every ~20 s per call, all heard by
Whisper in the gateways' worker pools. Then also, from the gateways' counters: requests
recognised, refused by admission control (`busy`: the caller is asked again and offered the
keypad) or failed, and the recognition wall time; a count holds only if at most
MAX_REFUSED_SHARE of the utterances were refused or failed.

Each gateway count is measured once every gateway's Whisper workers have loaded the model (they
start loading with the gateway, as in production): their loading is not what is measured.

Bounded: a fixed number of calls, each CALL_SECONDS long; the peer process gives up after
PEER_BOUND_SECONDS.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import samples as clips
from bench.audiosocket_peer import AudioSocketPeer
from bench.spoken_requests import requests
from stack.services import Ports, Running, Secrets, Service, phone_gateway, started
from voice.audio import FRAME_SECONDS, TELEPHONE_RATE, frame_bytes
from voice.config import load_voice_config

CALL_COUNTS = (10, 20, 30, 40, 50, 60, 70)
SPOKEN_CALL_COUNTS = (5, 10, 15, 20, 25, 30, 40)
SPOKEN_CALL_SECONDS = 26.0
SPEAK_FROM_SECONDS = 6.0  # after the greeting; the request ends before the call does
MAX_REFUSED_SHARE = 0.05
CALL_SECONDS = 16.0
KEY_PRESS_AFTER_SECONDS = 6.0  # the greeting is over by then; the key is a turn to Rasa
LINE_NOISE_SNR_DB = 20.0
LATE_FRAME_TARGET = 0.01
GREETED_BYTES = TELEPHONE_RATE * 2  # a second of the bot's speech
PEER_SLACK_SECONDS = 60.0  # the callers' process gives up this long after its calls should have ended
DRAIN_BOUND_SECONDS = 60.0  # every call's end counted by its gateway
READY_BOUND_SECONDS = 180.0  # for every gateway's Whisper workers to load the model at start


def spoken_requests(count: int | None = None) -> list[bytes]:
    """The first `count` (None: all) held-out requests of bench/spoken_requests.py in Kokoro's
    voice at 8 kHz (rendered once, about a CPU-second each, cached under var/test-audio/)."""
    return [clips.natural_speech(text) for text, _ in requests()[:count]]


def _caller_process(port: int, calls: int, seconds: float, results: Any, speech: Sequence[bytes] = ()) -> None:
    """Child process: `calls` callers, their connections spread over one frame period (real
    arrivals are not in step), each streaming line noise with one key press (or, with `speech`,
    saying one of those requests at a random moment after the greeting), then hanging up."""
    size = frame_bytes(TELEPHONE_RATE)
    noise = clips.scaled(clips.noise("pink", seconds, TELEPHONE_RATE), -LINE_NOISE_SNR_DB)
    key_press_frame = int(min(KEY_PRESS_AFTER_SECONDS, seconds / 2) / FRAME_SECONDS)
    draw = random.Random(calls)

    def line_of(number: int) -> bytes:
        if not speech:
            return noise
        said = speech[number % len(speech)]
        latest = seconds - len(said) / 2 / TELEPHONE_RATE - 1.0
        at = draw.uniform(SPEAK_FROM_SECONDS, max(SPEAK_FROM_SECONDS, latest))
        return clips.mix(noise, clips.silence(at) + said)[:len(noise)]

    async def call(number: int) -> int:
        line = line_of(number)
        await asyncio.sleep(number * (2 * FRAME_SECONDS + FRAME_SECONDS / calls))
        peer = await AudioSocketPeer("127.0.0.1", port, uuid.uuid4()).connect()
        start = time.monotonic()
        for index in range(int(seconds / FRAME_SECONDS)):
            await asyncio.sleep(max(0.0, start + index * FRAME_SECONDS - time.monotonic()))
            await peer.send(0x10, line[index * size:(index + 1) * size])
            if index == key_press_frame and not speech:
                await peer.send_dtmf("1")
        await peer.send_hangup()
        await peer.close()
        return len(peer.audio_bytes())

    async def run() -> list[int]:
        return await asyncio.wait_for(asyncio.gather(*(call(number) for number in range(calls))),
                                      seconds + PEER_SLACK_SECONDS)

    results.put(asyncio.run(run()))


def _result_of(child: multiprocessing.process.BaseProcess, results: Any, seconds: float) -> list[int]:
    bound = seconds + PEER_SLACK_SECONDS + 30
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            return list(results.get(timeout=1))
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(f"the callers' process exited with {child.exitcode} before its calls ended"
                                   ) from None
    raise TimeoutError(f"the callers' process took more than {bound:g} s")


RECOGNITION_OUTCOMES = ("recognised", "empty", "busy", "failed")


def _counters(health_urls: Sequence[str], token: str) -> dict[str, float]:
    """The gateways' frame counters, active calls and recognitions, summed over the processes."""
    totals = {"ivr_gateway_frames_sent_total": 0.0, "ivr_gateway_late_frames_total": 0.0,
              "ivr_gateway_calls_active": 0.0, "ivr_recognition_seconds_sum": 0.0,
              "ivr_recognition_seconds_count": 0.0, **{outcome: 0.0 for outcome in RECOGNITION_OUTCOMES}}
    for url in health_urls:
        answer = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        answer.raise_for_status()
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                if sample.name == "ivr_recognitions_total":
                    totals[sample.labels["outcome"]] += sample.value
                elif sample.name in totals:
                    totals[sample.name] += sample.value
    return totals


def _measure(ports: Ports, running: Running, names: Sequence[str], health_urls: Sequence[str], calls: int,
             token: str, seconds: float, speech: Sequence[bytes] = ()) -> dict[str, Any]:
    before, cpu_before = _counters(health_urls, token), running.cpu_seconds()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_caller_process, args=(ports.audiosocket, calls, seconds, results, speech),
                            daemon=True)
    child.start()
    try:
        heard = _result_of(child, results, seconds)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    deadline = time.monotonic() + DRAIN_BOUND_SECONDS
    while (after := _counters(health_urls, token))["ivr_gateway_calls_active"]:
        if time.monotonic() > deadline:  # their frames are counted when they end: the figures would be short
            raise TimeoutError(f"{after['ivr_gateway_calls_active']:.0f} calls still open {DRAIN_BOUND_SECONDS:g} s "
                               "after their callers hung up")
        time.sleep(0.25)
    cpu_after = running.cpu_seconds()
    sent = after["ivr_gateway_frames_sent_total"] - before["ivr_gateway_frames_sent_total"]
    late = after["ivr_gateway_late_frames_total"] - before["ivr_gateway_late_frames_total"]
    cpu = sum(cpu_after[name] - cpu_before[name] for name in names)
    figures = {
        "calls": calls,
        "calls_greeted": sum(1 for heard_bytes in heard if heard_bytes >= GREETED_BYTES),
        "frames_sent": int(sent),
        "late_frame_ratio": round(late / sent, 5) if sent else 0.0,
        "cpu_seconds_per_call_second": round(cpu / (calls * seconds), 4),
    }
    if speech:
        counted = {outcome: int(after[outcome] - before[outcome]) for outcome in RECOGNITION_OUTCOMES}
        timed = after["ivr_recognition_seconds_count"] - before["ivr_recognition_seconds_count"]
        spent = after["ivr_recognition_seconds_sum"] - before["ivr_recognition_seconds_sum"]
        figures.update(recognitions=counted, recognition_seconds_mean=round(spent / timed, 2) if timed else None)
    return figures


def _refused_share(run: dict[str, Any]) -> float:
    """Of the utterances sent to the recogniser, the share refused for lack of capacity or failed.
    (A request can make more than one utterance: a pause inside it, or speech over the greeting.)"""
    counted = run.get("recognitions")
    if counted is None:
        return 0.0
    return (counted["busy"] + counted["failed"]) / max(1, sum(counted.values()))


def _held(runs: Sequence[dict[str, Any]]) -> int:
    """Calls held up to the first count that failed: a later pass is luck, not capacity."""
    held = 0
    for run in runs:
        if (run["late_frame_ratio"] > LATE_FRAME_TARGET or run["calls_greeted"] < run["calls"]
                or _refused_share(run) > MAX_REFUSED_SHARE):
            break
        held = run["calls"]
    return held


def _until_recognizers_ready(health_urls: Sequence[str]) -> list[str]:
    """Each gateway's Whisper workers load the model at start, in the background: the calls are
    measured once every gateway's has ("ready"), or could not ("failed"), or the bound has passed
    (its loading would take the CPU of the calls measured, and their first requests would wait).
    The gateways' recogniser states, as their /health gives them."""
    deadline = time.monotonic() + READY_BOUND_SECONDS
    while True:
        states = [httpx.get(f"{url}/health", timeout=10).json()["recognizer"] for url in health_urls]
        if "loading" not in states or time.monotonic() > deadline:
            return states
        time.sleep(0.25)


def _without_prerender(gateway: Service) -> Service:
    return replace(gateway, env={**gateway.env, "KOKORO_PRERENDER_AT_START": "0"})


def figures(ports: Ports, keys: Secrets, log_dir: Path, processes: Sequence[int] = (1, 2),
            call_counts: Sequence[int] | None = None, call_seconds: float | None = None,
            spoken: bool = False, distinct_requests: int | None = None) -> dict[str, Any]:
    """`ports`: the running assistant's (Rasa, risk API); each gateway count gets a fresh
    AudioSocket address and health ports. Call counts go up until one fails. `spoken`: the
    callers say a request each (recognition; `distinct_requests` of them, None: all), else they
    press a key."""
    speech = spoken_requests(distinct_requests) if spoken else []
    call_counts = call_counts or (SPOKEN_CALL_COUNTS if spoken else CALL_COUNTS)
    call_seconds = call_seconds or (SPOKEN_CALL_SECONDS if spoken else CALL_SECONDS)
    results: dict[str, Any] = {}
    for count in processes:
        gateway_ports = replace(ports, audiosocket=Ports.free().audiosocket)
        health_ports = [Ports.free().gateway_health for _ in range(count)]
        # No Kokoro rendering in the background competing for the CPU (prompts not yet rendered
        # are spoken by espeak-ng, as a fresh gateway's are).
        gateways = tuple(_without_prerender(phone_gateway(gateway_ports, keys, f"bench_gateway_{rank}", port,
                                                          share_port=count > 1))
                         for rank, port in enumerate(health_ports, start=1))
        names = [gateway.name for gateway in gateways]
        urls = [f"http://127.0.0.1:{port}" for port in health_ports]
        with started([gateways], log_dir) as running:
            recognizers = _until_recognizers_ready(urls)
            runs = []
            for calls in call_counts:
                runs.append(_measure(gateway_ports, running, names, urls, calls, keys.metrics, call_seconds, speech))
                if _held(runs) < calls:
                    break  # more calls would only fail further
        results[f"gateways_{count}"] = {"runs": runs, "held": _held(runs), "recognizers": recognizers}
    first, last = results[f"gateways_{processes[0]}"], results[f"gateways_{processes[-1]}"]
    results["processes"] = list(processes)
    results["held_ratio"] = round(last["held"] / first["held"], 2) if first["held"] else None
    results["call_seconds"] = call_seconds
    results["spoken"] = spoken
    return results


def report(figures: dict[str, Any]) -> str:
    """The section of docs/benchmarks.md (with `spoken`, its sub-section on recognition)."""
    spoken = figures.get("spoken", False)
    rows = []
    for count in figures["processes"]:
        for run in figures[f"gateways_{count}"]["runs"]:
            row = (f"| {count} | {run['calls']} | {100 * run['late_frame_ratio']:.2f} % | "
                   f"{run['cpu_seconds_per_call_second']:.4f} s | {run['calls_greeted']} |")
            if spoken:
                counted = run["recognitions"]
                mean = run["recognition_seconds_mean"]
                row += (f" {counted['recognised']} / {counted['empty']} / {counted['busy']} / {counted['failed']} | "
                        f"{'-' if mean is None else f'{mean:.2f} s'} |")
            rows.append(row)
    held = " / ".join(str(figures[f"gateways_{count}"]["held"]) for count in figures["processes"])
    processes = " / ".join(map(str, figures["processes"]))
    if spoken:
        whisper = load_voice_config().whisper  # the settings the gateways ran with
        return ("### With recognition\n\n"
                f"The same, with {figures['call_seconds']:g} s calls in which the caller says one held-out request "
                "(Kokoro's voice, 8 kHz, over the line noise)\nat a random moment after the greeting, about one "
                "request every 20 s per call, each heard by Whisper base in the\ngateway's worker pool "
                f"(`whisper.workers` {whisper.workers}, {whisper.threads_per_worker} threads, `max_in_flight` "
                f"{whisper.max_in_flight}, at a lower\npriority than the calls), measured once every gateway's "
                "workers had loaded the model (they load it as\nthe gateway starts). A count "
                "holds when late frames ≤ 1 %, every caller was greeted and at most\n"
                f"{MAX_REFUSED_SHARE:.0%} of the utterances were refused by admission control (the caller is asked "
                "again and offered\nthe keypad) or failed.\n\n"
                f"Calls held with recognition, {processes} gateway processes: **{held}** "
                f"(ratio {figures['held_ratio']}).\n\n"
                "| gateway processes | concurrent calls | late frames | gateway CPU per call-second (its Whisper "
                "workers included) | calls greeted | utterances recognised / empty / refused / failed | "
                "recognition wall time, mean |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n")
    return ("## Calls per machine\n\n"
            "Concurrent calls into real gateway processes (`python -m telephony.gateway`, one AudioSocket address\n"
            "shared by SO_REUSEPORT as `make run SCALE=n` starts them) and the real assistant, from an Asterisk\n"
            f"stand-in in its own process: {figures['call_seconds']:g} s calls of line noise with one key press (a "
            "turn to Rasa),\nno caller speech, so no recognition (bench/gateway_calls.py). Everything runs on this "
            "machine:\nthe callers, Rasa and the other services take their share of the two cores too.\n\n"
            f"Calls held with late frames ≤ 1 %, {processes} gateway processes: "
            f"**{held}** (ratio {figures['held_ratio']}; target ≥ 30 on this 2-core machine).\n\n"
            "| gateway processes | concurrent calls | late frames (target ≤ 1 %) | gateway CPU per call-second | "
            "calls greeted |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n")
