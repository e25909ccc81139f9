"""`python -m outbound` as the stack starts it: settings from the environment, the health endpoint
on loopback, dialling off without AMI (and saying so), on with it; a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ivr_config.environment import SettingsError
from outbound.service import OutboundSettings
from risk_api.app import create_app
from risk_api.config import Settings
from stack.services import free_port
from tests.risk_api.helpers import serve
from tests.telephony.peers import AmiPeer

ROOT = Path(__file__).resolve().parents[2]
DIALER_TOKEN = f"test-dialer-{uuid.uuid4().hex}"
BASE_ENV = {"RISK_API_TOKEN": DIALER_TOKEN, "OUTBOUND_NUMBER_KEY": "test-number-key-0123456789"}


@pytest.fixture(scope="module")
def risk_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("risk_api_for_service")
    settings = Settings(token=f"test-engine-{uuid.uuid4().hex}", role_tokens={"dialer": DIALER_TOKEN},
                        database_url=f"sqlite:///{workdir / 'risk.sqlite3'}", sms_outbox=workdir / "sms.jsonl")
    with serve(create_app(settings)) as base_url:
        yield base_url


def service_env(risk_api: str, tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ASTERISK_AMI_", "OUTBOUND_"))}
    return {**env, **BASE_ENV, "RISK_API_URL": risk_api, "PYTHONPATH": str(ROOT),
            "OUTBOUND_DATABASE_URL": f"sqlite:///{tmp_path / 'outbound.sqlite3'}",
            "OUTBOUND_HEALTH_PORT": str(port), **extra}


async def healthy(port: int, process: asyncio.subprocess.Process, queued: int = 0) -> dict:
    """The health answer once every campaign has been selected and at least `queued` attempts
    are in the queue (a campaign's selection is marked before its customers are queued)."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert process.returncode is None, "the service exited"
            try:
                answer = (await http.get(f"http://127.0.0.1:{port}/health", timeout=2)).json()
                if answer["campaigns"] and all(c["selected_on"] for c in answer["campaigns"].values()) \
                        and answer["attempts"].get("queued", 0) >= queued:
                    return answer
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the service did not become healthy")


async def stop(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stderr.decode()


async def test_without_ami_it_runs_plans_and_dials_nothing_and_says_so(risk_api: str, tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "outbound", cwd=ROOT, env=service_env(risk_api, tmp_path, port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        # The demo's due-soon and overdue customers, planned.
        health = await healthy(port, process, queued=80)
        assert health["dialling"] is False and health["dials"] == 0
        assert health["originator"] == "off (AMI not configured (ASTERISK_AMI_SECRET unset))"
        assert set(health["campaigns"]) == {"due_date_reminder", "overdue_reminder"}
        assert set(health["attempts"]) <= {"queued", "skipped"}
    finally:
        log = await stop(process)
    assert "dialling is OFF: AMI not configured (ASTERISK_AMI_SECRET unset)" in log
    assert not any(f"1990000{n:04d}" in log for n in range(1, 961)), "no phone number in the log"


async def test_with_ami_it_logs_in_and_is_ready_to_dial(risk_api: str, tmp_path: Path) -> None:
    peer = await AmiPeer().start()
    port = free_port()
    env = service_env(risk_api, tmp_path, port, ASTERISK_AMI_SECRET="s3cret", ASTERISK_AMI_PORT=str(peer.port),
                      OUTBOUND_DIAL_CHANNEL="PJSIP/{number}@trunk")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "outbound", cwd=ROOT, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert await peer.wait_for_login(timeout=60)
        health = await healthy(port, process)
        assert health["dialling"] is True and health["originator"].endswith("(connected)")
    finally:
        log = await stop(process)
        await peer.stop()
    assert "dialling through AMI 127.0.0.1" in log and "channel PJSIP/<number>@trunk" in log


def test_settings_come_from_the_environment_with_clear_errors() -> None:
    settings = OutboundSettings.from_env(BASE_ENV)
    assert settings.database_url == "sqlite:///var/outbound.sqlite3" and settings.health_port == 9094
    assert settings.dialling_off_reason() == "AMI not configured (ASTERISK_AMI_SECRET unset)"
    with_ami = OutboundSettings.from_env({**BASE_ENV, "ASTERISK_AMI_SECRET": "x"})
    assert "OUTBOUND_DIAL_CHANNEL unset" in (with_ami.dialling_off_reason() or "")
    assert "test-number-key" not in repr(settings) and DIALER_TOKEN not in repr(settings)
    for broken, message in (
            ({"OUTBOUND_NUMBER_KEY": ""}, "OUTBOUND_NUMBER_KEY is not set"),
            ({"RISK_API_TOKEN": ""}, "RISK_API_TOKEN is not set"),
            ({"OUTBOUND_NUMBER_KEY": "dev-only-outbound-number-key"}, "development value"),
            ({"OUTBOUND_DIAL_CHANNEL": "PJSIP/trunk"}, "must contain {number}"),
            ({"OUTBOUND_HEALTH_PORT": "99999"}, "OUTBOUND_HEALTH_PORT must be a port number"),
            ({"ASTERISK_AMI_SECRET": "x", "ASTERISK_AMI_PORT": "five"}, "ASTERISK_AMI_PORT must be a port number")):
        with pytest.raises(SettingsError, match=message):
            OutboundSettings.from_env({**BASE_ENV, **broken})
    development = {**BASE_ENV, "OUTBOUND_NUMBER_KEY": "dev-only-outbound-number-key", "IVR_ENV": "development"}
    assert OutboundSettings.from_env(development).number_key == b"dev-only-outbound-number-key"


def test_a_missing_setting_stops_the_service_with_exit_2() -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("OUTBOUND_NUMBER_KEY", "RISK_API_TOKEN")}
    done = subprocess.run([sys.executable, "-m", "outbound"], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 2 and "outbound: RISK_API_TOKEN is not set" in done.stderr
