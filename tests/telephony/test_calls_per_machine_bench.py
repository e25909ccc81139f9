"""`make bench`'s calls-per-machine figures (bench/gateway_calls.py) run in `make test` on a few
short calls, so that the bench cannot rot unseen: real gateway processes, one and two on one
AudioSocket address, callers in a process of their own. No timing is asserted here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench import gateway_calls
from stack.services import Ports
from tests.conftest import SECRETS, Stack

pytestmark = pytest.mark.stack


@pytest.fixture
def ports(running_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Ports:
    """Fresh gateway ports beside the running assistant; the gateways on loopback, Whisper hearing."""
    for name in ("AUDIOSOCKET_HOST", "ASTERISK_AMI_HOST", "VOSK_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    return dataclasses.replace(Ports.free(), rasa=int(running_stack.rasa_url.rsplit(":", 1)[1]),
                               risk_api=int(running_stack.risk_url.rsplit(":", 1)[1]))


def test_the_bench_calls_one_and_two_gateway_processes_and_counts_their_frames_and_cpu(
        ports: Ports, tmp_path: Path) -> None:
    figures = gateway_calls.figures(ports, SECRETS, tmp_path, processes=(1, 2), call_counts=(3,), call_seconds=6.0)
    for count in (1, 2):
        [run] = figures[f"gateways_{count}"]["runs"]
        assert run["calls"] == 3 and run["calls_greeted"] == 3, run
        assert run["frames_sent"] >= 3 * 50, "every call heard at least a second of the bot"
        assert run["cpu_seconds_per_call_second"] > 0
        assert figures[f"gateways_{count}"]["held"] in (0, 3)
        # Measured once every gateway's Whisper workers had loaded the model (at their start).
        assert figures[f"gateways_{count}"]["recognizers"] == ["ready"] * count
    logs = [path.name for path in tmp_path.iterdir()]
    assert {"bench_gateway_1.log", "bench_gateway_2.log"} <= set(logs)
    assert "| 2 | 3 |" in gateway_calls.report(figures)


def test_the_bench_calls_with_a_spoken_request_count_what_whisper_heard(ports: Ports, tmp_path: Path) -> None:
    figures = gateway_calls.figures(ports, SECRETS, tmp_path, processes=(1,), call_counts=(2,), call_seconds=11.0,
                                    spoken=True, distinct_requests=2)
    [run] = figures["gateways_1"]["runs"]
    assert run["calls"] == 2 and run["calls_greeted"] == 2, run
    assert figures["gateways_1"]["recognizers"] == ["ready"]
    # Both requests reached Whisper through the gateway; the bench counts what it made of them.
    assert sum(run["recognitions"].values()) >= 2 and run["recognitions"]["recognised"] >= 1, run
    assert run["recognition_seconds_mean"] > 0
    assert "utterances recognised / empty / refused / failed" in gateway_calls.report(figures)
