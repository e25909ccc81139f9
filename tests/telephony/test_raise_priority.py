"""A supervisor moves a call waiting in the agents' queue up (issue 17): the gateway's
`POST /queue/priority`, served on loopback, with the web server's token, against the AMI peer
(tests/telephony/peers.py). The call is handed over as the gateway hands any call over (a real
AudioSocket connection, Setvar and Redirect over AMI); the queue's events are the ones a real
Asterisk 22 sent for a caller waiting in that queue (../shared/asterisk-sessions)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from bench.audiosocket_peer import AudioSocketPeer
from ivr_config.environment import SettingsError
from stack.services import free_port
from telephony.ami import AmiClient, AmiConfig, ChannelInfo
from telephony.audiosocket import AudioSocketCall, AudioSocketServer
from telephony.gateway import AGENT_QUEUE, Gateway, GatewaySettings, PhoneCall, health_app
from telephony.priority import CallFacts, load_priority_rules
from tests.telephony.peers import AmiPeer
from tests.telephony.replay import load_session
from tests.waiting import BOUND_SECONDS, until, within
from trust.serving import serving_http
from voice.call import VoiceEngines
from voice.config import load_voice_config
from voice.dialogue import DialogueClient
from voice.frames import CallStarted
from voice.tts import Synthesizer

DESK_TOKEN = "a-gateway-desk-token-for-tests"
# The caller waiting in the recorded queue-abandon scenario, and the events Asterisk sent for it.
RECORDED = load_session("inbound-queue-abandon.ami.txt", "gateway")
(JOINED,) = (event.fields for event in RECORDED.events("QueueCallerJoin"))
(LEFT,) = (event.fields for event in RECORDED.events("QueueCallerLeave"))
CHANNEL = JOINED["Channel"]


@dataclasses.dataclass
class Rig:
    gateway: Gateway
    ami: AmiPeer
    url: str
    audio_server: AudioSocketServer
    connected: asyncio.Queue[AudioSocketCall]

    async def emit(self, fields: dict[str, str]) -> None:
        await self.ami.emit(fields["Event"], **{key: value for key, value in fields.items() if key != "Event"})

    async def hand_over(self) -> str:
        """A call on a real AudioSocket connection, handed to the agents' queue by the gateway."""
        peer = await AudioSocketPeer("127.0.0.1", self.audio_server.port, uuid.uuid4()).connect()
        audio = await within(self.connected.get())
        rules = self.gateway.rules
        channel = ChannelInfo(audio.uuid, CHANNEL, JOINED["CallerIDNum"], None, JOINED["Uniqueid"],
                              JOINED["Linkedid"], "inbound", {})
        phone = PhoneCall(self.gateway, audio, channel, CallStarted(call_id=audio.uuid), CallFacts(), rules.default)
        declined = await within(self.gateway.hand_over(phone, {"handoff_id": "H-1", "summary": "想找人工",
                                                             "flow": "human_handoff", "reason": "客户要求"}))
        assert declined is None, declined
        await within(peer.closed_by_server.wait())  # the redirect took the call out of AudioSocket()
        return audio.uuid

    async def until_waiting(self, channel: str) -> None:
        """Until the gateway has read Asterisk's QueueCallerJoin for the channel."""
        waiting_calls = self.gateway.waiting_calls
        assert waiting_calls is not None
        await until(lambda: waiting_calls.waiting(channel))

    async def raise_priority(self, call_id: str, token: str = DESK_TOKEN) -> httpx.Response:
        async with httpx.AsyncClient(timeout=BOUND_SECONDS) as http:
            return await http.post(f"{self.url}/queue/priority", json={"call_id": call_id},
                                   headers={"Authorization": f"Bearer {token}"} if token else {})


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    peer = await AmiPeer().start()
    ami_config = AmiConfig(host="127.0.0.1", port=peer.port, username="ivr-bot", secret="s3cret",
                           action_timeout_seconds=BOUND_SECONDS)
    settings = GatewaySettings(host="127.0.0.1", port=0, rasa_url="http://127.0.0.1:9", risk_api_url="http://127.0.0.1:9",
                               risk_api_token="unused-risk-token", ami=ami_config, desk_token=DESK_TOKEN)
    config = load_voice_config()
    engines = VoiceEngines(config, None, Synthesizer(config.tts), DialogueClient("http://127.0.0.1:9", "unused"))
    ami = AmiClient(ami_config)
    await ami.connect()
    gateway = Gateway(settings, engines, load_priority_rules(), ami)
    connected: asyncio.Queue[AudioSocketCall] = asyncio.Queue()
    finished = asyncio.Event()

    async def answer(audio: AudioSocketCall) -> None:
        await connected.put(audio)
        await finished.wait()

    port = free_port()
    try:
        async with AudioSocketServer(answer, "127.0.0.1", 0) as audio_server, \
                serving_http(health_app(gateway), "127.0.0.1", port):
            url = f"http://127.0.0.1:{port}"
            await within(_until_up(url))
            yield Rig(gateway, peer, url, audio_server, connected)
            finished.set()
    finally:
        await gateway.close()
        await peer.stop()


async def _until_up(url: str) -> None:
    async with httpx.AsyncClient(timeout=BOUND_SECONDS) as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.05)


async def test_a_waiting_call_is_moved_up_with_the_highest_tiers_priority(rig: Rig) -> None:
    call_id = await rig.hand_over()
    handed_over = len(rig.ami.actions)  # the hand-over's Setvars and Redirect
    assert [action["Action"] for action in rig.ami.actions_named("Redirect")] == ["Redirect"]
    await rig.emit(JOINED)
    await rig.until_waiting(CHANNEL)
    raised = await rig.raise_priority(call_id)
    assert raised.status_code == 200, raised.text
    top = load_priority_rules().tiers[0]
    assert raised.json() == {"queue": AGENT_QUEUE, "priority": top.queue_priority}
    sent = [{key: value for key, value in action.items() if key != "ActionID"}
            for action in rig.ami.actions[handed_over:] if action["Action"] != "Ping"]  # keep-alives come any time
    assert sent == [
        {"Action": "QueueChangePriorityCaller", "Queue": "agents", "Caller": CHANNEL,
         "Priority": str(top.queue_priority), "Immediate": "yes"},
        # Back from the queue unanswered, the call's UserEvent names this tier: it waits again as raised.
        {"Action": "Setvar", "Channel": CHANNEL, "Variable": "IVR_TIER", "Value": top.name}]
    again = await rig.raise_priority(call_id)  # a second click: the same, harmlessly
    assert again.status_code == 200 and len(rig.ami.actions_named("QueueChangePriorityCaller")) == 2


async def test_a_call_not_held_not_yet_queued_or_gone_from_the_queue_is_not_found(rig: Rig) -> None:
    unknown = await rig.raise_priority(str(uuid.uuid4()))
    assert unknown.status_code == 404 and unknown.json()["detail"]["code"] == "not_queued"
    call_id = await rig.hand_over()
    redirected = await rig.raise_priority(call_id)  # Redirect done, but Asterisk has not queued it yet
    assert redirected.status_code == 404, redirected.text
    await rig.emit(JOINED)
    await rig.emit(LEFT)  # the caller hung up waiting (the recording's abandon)
    await rig.emit({**JOINED, "Channel": "PJSIP/caller-00000099"})  # after the leave: its events are read
    await rig.until_waiting("PJSIP/caller-00000099")
    left = await rig.raise_priority(call_id)
    assert left.status_code == 404, left.text
    assert rig.ami.actions_named("QueueChangePriorityCaller") == []


async def test_asterisk_saying_the_caller_is_gone_is_not_found(rig: Rig) -> None:
    call_id = await rig.hand_over()
    await rig.emit(JOINED)
    await rig.until_waiting(CHANNEL)
    rig.ami.failing_actions["QueueChangePriorityCaller"] = "Unable to change priority caller on queue: No such caller"
    gone = await rig.raise_priority(call_id)
    assert gone.status_code == 404 and gone.json()["detail"]["code"] == "not_queued"


async def test_ami_down_is_a_clear_503(rig: Rig) -> None:
    call_id = await rig.hand_over()
    await rig.emit(JOINED)
    await rig.until_waiting(CHANNEL)
    rig.ami.silent_actions.add("QueueChangePriorityCaller")  # Asterisk hung: no answer
    rig.gateway.ami.config = dataclasses.replace(rig.gateway.ami.config, action_timeout_seconds=0.2)  # type: ignore[union-attr]
    hung = await rig.raise_priority(call_id)
    assert hung.status_code == 503 and hung.json()["detail"]["code"] == "ami_unavailable", hung.text
    await rig.ami.stop()  # Asterisk went down
    await until(lambda: not rig.gateway.ami.connected)  # type: ignore[union-attr]
    down = await rig.raise_priority(call_id)
    assert down.status_code == 503 and "AMI" in down.json()["detail"]["message"]


async def test_only_the_web_servers_token_may_ask_and_a_huge_or_malformed_body_is_refused(rig: Rig) -> None:
    for token in ("", "wrong-token-of-the-same-len", DESK_TOKEN + "x"):
        assert (await rig.raise_priority("a-call", token)).status_code == 401
    async with httpx.AsyncClient(base_url=rig.url, timeout=BOUND_SECONDS,
                                 headers={"Authorization": f"Bearer {DESK_TOKEN}"}) as http:
        assert (await http.post("/queue/priority", content=b"x" * 5000)).status_code == 413
        for bad in ({}, {"call_id": ""}, {"call_id": "a b"}, {"call_id": "x" * 65}, {"call_id": 7},
                    {"call_id": "a", "more": 1}):
            assert (await http.post("/queue/priority", json=bad)).status_code == 422, bad
        assert (await http.post("/queue/priority", content=b"{not json")).status_code == 422
        assert (await http.get("/health")).status_code == 200
    async with httpx.AsyncClient(timeout=BOUND_SECONDS) as http:
        assert (await http.get(f"{rig.url}/health")).status_code == 200, "the health check stays open"
    assert rig.ami.actions_named("QueueChangePriorityCaller") == []


def test_the_desk_token_is_a_secret_refused_as_a_development_value_outside_development(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_API_TOKEN", "a-risk-token-for-tests")
    monkeypatch.delenv("IVR_ENV", raising=False)
    for other in ("OUTBOUND_GATEWAY_TOKEN", "METRICS_TOKEN"):  # `make test` exports development values
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv("GATEWAY_DESK_TOKEN", "dev-only-gateway-desk-token")
    with pytest.raises(SettingsError, match="GATEWAY_DESK_TOKEN"):
        GatewaySettings.from_env()
    monkeypatch.setenv("IVR_ENV", "development")
    assert GatewaySettings.from_env().desk_token == "dev-only-gateway-desk-token"
    monkeypatch.delenv("GATEWAY_DESK_TOKEN")
    assert GatewaySettings.from_env().desk_token is None
