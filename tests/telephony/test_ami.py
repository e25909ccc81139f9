"""AmiClient and ChannelDirectory against AmiPeer, a fake Asterisk Manager on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ivr_config.environment import SettingsError
from telephony.ami import AmiClient, AmiConfig, AmiError, AmiLoginError, ChannelDirectory
from tests.telephony.peers import AmiPeer
from tests.waiting import BOUND_SECONDS, until, within


def config_for(peer: AmiPeer, secret: str = "s3cret", **overrides: float) -> AmiConfig:
    settings = {"reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.4, "keepalive_seconds": 0.3,
                "action_timeout_seconds": 1.0, **overrides}
    return AmiConfig(host="127.0.0.1", port=peer.port, username="ivr-bot", secret=secret, **settings)


@pytest.fixture
async def client(peer: AmiPeer) -> AsyncIterator[AmiClient]:
    ami = AmiClient(config_for(peer))
    await ami.connect()
    yield ami
    await ami.close()


async def test_login_sends_username_and_secret(peer: AmiPeer, client: AmiClient) -> None:
    (login,) = peer.actions_named("Login")
    assert login["Username"] == "ivr-bot" and login["Secret"] == "s3cret"
    assert login["ActionID"]
    assert client.connected


async def test_login_failure_is_a_clear_error(peer: AmiPeer) -> None:
    ami = AmiClient(config_for(peer, secret="wrong"))
    with pytest.raises(AmiLoginError, match=r"'ivr-bot' at 127\.0\.0\.1:\d+ refused: Authentication failed"):
        await ami.connect()
    assert not ami.connected
    assert peer.connections_accepted == 1, "a refused login is not retried"


async def test_unreachable_manager_is_a_clear_error(peer: AmiPeer) -> None:
    await peer.stop()
    with pytest.raises(AmiError, match="cannot reach Asterisk AMI at 127.0.0.1"):
        await AmiClient(config_for(peer)).connect()


def test_config_from_env_requires_the_secret() -> None:
    with pytest.raises(SettingsError, match="ASTERISK_AMI_SECRET"):
        AmiConfig.from_env({"ASTERISK_AMI_HOST": "10.0.0.5"})
    config = AmiConfig.from_env({"ASTERISK_AMI_HOST": "10.0.0.5", "ASTERISK_AMI_PORT": "5039",
                                 "ASTERISK_AMI_USERNAME": "bot", "ASTERISK_AMI_SECRET": "pa55-w0rd"})
    assert (config.host, config.port, config.username, config.secret) == ("10.0.0.5", 5039, "bot", "pa55-w0rd")
    assert "pa55-w0rd" not in repr(config)


async def test_redirect_sends_the_documented_fields(peer: AmiPeer, client: AmiClient) -> None:
    response = await client.redirect("PJSIP/softphone-00000001", "ivr-handover", "agents", 1)
    (redirect,) = peer.actions_named("Redirect")
    assert redirect["Channel"] == "PJSIP/softphone-00000001"
    assert (redirect["Context"], redirect["Exten"], redirect["Priority"]) == ("ivr-handover", "agents", "1")
    assert response["Response"] == "Success" and response["ActionID"] == redirect["ActionID"]


async def test_setvar_getvar_hangup_and_queue_priority_fields(peer: AmiPeer, client: AmiClient) -> None:
    peer.variables[("PJSIP/a-1", "IVR_SUMMARY")] = "客户挂失手机"
    await client.setvar("PJSIP/a-1", "IVR_QUEUE_PRIO", "10")
    assert await client.getvar("PJSIP/a-1", "IVR_SUMMARY") == "客户挂失手机"
    assert await client.getvar("PJSIP/a-1", "UNSET") is None
    await client.queue_change_priority_caller("agents", "PJSIP/a-1", 10)
    await client.hangup("PJSIP/a-1")
    (setvar,) = peer.actions_named("Setvar")
    assert (setvar["Channel"], setvar["Variable"], setvar["Value"]) == ("PJSIP/a-1", "IVR_QUEUE_PRIO", "10")
    (change,) = peer.actions_named("QueueChangePriorityCaller")
    assert (change["Queue"], change["Caller"], change["Priority"], change["Immediate"]) == (
        "agents", "PJSIP/a-1", "10", "yes")
    assert peer.actions_named("Hangup")[0]["Channel"] == "PJSIP/a-1"


async def test_originate_returns_the_action_id_of_the_later_response_event(peer: AmiPeer,
                                                                           client: AmiClient) -> None:
    events = client.subscribe({"OriginateResponse"})
    action_id = await client.originate("PJSIP/13900000001@trunk", "ivr-outbound", "s", caller_id="4008001234",
                                       variables={"IVR_FLOW": "due_date_reminder", "IVR_CUSTOMER_ID": "C100001"})
    (originate,) = peer.actions_named("Originate")
    assert originate["ActionID"] == action_id
    assert (originate["Channel"], originate["Context"], originate["Exten"]) == (
        "PJSIP/13900000001@trunk", "ivr-outbound", "s")
    assert originate["Async"] == "true" and originate["Timeout"] == "30000"
    assert sorted(originate["Variable"].split("|")) == ["IVR_CUSTOMER_ID=C100001", "IVR_FLOW=due_date_reminder"]
    await peer.emit("OriginateResponse", ActionID=action_id, Response="Success", Channel="PJSIP/trunk-02")
    event = await within(events.get())
    assert event["ActionID"] == action_id and event["Response"] == "Success"


async def test_error_response_raises_with_asterisk_message(peer: AmiPeer, client: AmiClient) -> None:
    peer.failing_actions["Redirect"] = "Channel specified does not exist"
    with pytest.raises(AmiError, match="Redirect failed: Channel specified does not exist") as caught:
        await client.redirect("PJSIP/gone-1", "ivr-handover", "agents")
    assert caught.value.response["Response"] == "Error"
    assert client.connected  # an error response is no reason to drop the session


async def test_unanswered_action_times_out(peer: AmiPeer, client: AmiClient) -> None:
    peer.silent_actions.add("Hangup")
    with pytest.raises(AmiError, match=r"Hangup: no response within 1 s"):
        await client.hangup("PJSIP/a-1")


async def test_events_reach_asyncio_subscribers(peer: AmiPeer, client: AmiClient) -> None:
    only_hangups = client.subscribe({"Hangup"})
    everything = client.subscribe()
    await peer.emit("DTMFEnd", Channel="PJSIP/a-1", Digit="5", Direction="Received")
    await peer.emit("Hangup", Channel="PJSIP/a-1", Cause="16", **{"Cause-txt": "Normal Clearing"})
    hangup = await within(only_hangups.get())
    assert hangup == {"Event": "Hangup", "Channel": "PJSIP/a-1", "Cause": "16", "Cause-txt": "Normal Clearing"}
    first, second = [await within(everything.get()) for _ in range(2)]
    assert (first["Event"], first["Digit"], second["Event"]) == ("DTMFEnd", "5", "Hangup")
    assert only_hangups.empty()


async def test_actions_while_disconnected_fail_fast(peer: AmiPeer, client: AmiClient) -> None:
    await peer.stop()
    await until(lambda: not client.connected)
    with pytest.raises(AmiError, match="not connected"):
        await client.redirect("PJSIP/a-1", "ivr-handover", "agents")
    assert not peer.actions_named("Redirect"), "refused at once, not sent into a dead session"


async def test_ami_reconnects_with_backoff_after_the_connection_drops(peer: AmiPeer) -> None:
    waits: list[float] = []

    async def recorded_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    client = AmiClient(config_for(peer), sleep=recorded_sleep)
    await client.connect()
    try:
        await peer.stop()  # Asterisk goes down: clients dropped, connections refused
        await until(lambda: len(waits) >= 6)
        assert not client.connected
        # Backoff 0.05 s doubling to the 0.4 s cap (the delays asked for: no wall-clock measure).
        assert waits[:6] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
        await peer.start()  # back on the same port
        assert await peer.wait_for_login()
        await until(lambda: client.connected)
        assert client.reconnects == 1
        assert len(peer.actions_named("Login")) == 2
        await client.setvar("PJSIP/a-1", "X", "1")
        events = client.subscribe({"UserEvent"})
        await peer.emit("UserEvent", UserEvent="IvrCall", Uuid="u-1", Channel="PJSIP/a-1")
        assert (await within(events.get()))["Uuid"] == "u-1"
    finally:
        await client.close()


async def test_dropped_connection_fails_pending_actions_and_recovers(peer: AmiPeer, client: AmiClient) -> None:
    peer.silent_actions.add("Redirect")
    pending = asyncio.create_task(client.redirect("PJSIP/a-1", "ivr-handover", "agents"))
    await peer.wait_for_action("Redirect")
    await peer.drop_connections()  # TCP drop while Asterisk keeps listening
    with pytest.raises(AmiError, match="Redirect: connection lost"):
        await within(pending)
    assert await peer.wait_for_login()
    await until(lambda: client.connected)


async def test_keepalive_pings_an_idle_connection(peer: AmiPeer, client: AmiClient) -> None:
    pings = await peer.wait_for_action("Ping", count=2)
    assert len(pings) >= 2
    assert client.connected and client.reconnects == 0


async def test_channel_for_uuid_gives_caller_number(peer: AmiPeer, client: AmiClient) -> None:
    directory = ChannelDirectory(client)
    directory.start()
    try:
        call_uuid = "6b1c3f9e-aaaa-4bbb-8ccc-000000000001"
        waiting = asyncio.create_task(directory.channel_for(call_uuid, timeout=BOUND_SECONDS))
        await asyncio.sleep(0.05)  # the bot may ask before the event comes in
        await peer.emit("UserEvent", Channel="PJSIP/softphone-00000007", ChannelState="6", ChannelStateDesc="Up",
                        CallerIDNum="19900000001", CallerIDName="<unknown>", Uniqueid="1700000000.7",
                        Linkedid="1700000000.7", UserEvent="IvrCall", Uuid="6b1c3f9e-aaaa-4bbb-8ccc-000000000001",
                        Direction="inbound")
        info = await waiting
        assert (info.channel, info.caller_number, info.caller_name) == ("PJSIP/softphone-00000007", "19900000001", None)
        assert info.unique_id == "1700000000.7" and info.direction == "inbound"
        again = await directory.channel_for("6b1c3f9e-aaaa-4bbb-8ccc-000000000001", timeout=0.1)
        assert again == info
        await peer.emit("Hangup", Channel="PJSIP/softphone-00000007", Uniqueid="1700000000.7")
        await until(lambda: directory.known(info.uuid) is None)
        with pytest.raises(AmiError, match="no IvrCall UserEvent for call 6b1c3f9e"):
            await directory.channel_for("6b1c3f9e-aaaa-4bbb-8ccc-000000000001", timeout=0.3)
    finally:
        await directory.close()


async def test_other_user_events_do_not_confuse_the_directory(peer: AmiPeer, client: AmiClient) -> None:
    directory = ChannelDirectory(client)
    directory.start()
    try:
        await peer.emit("UserEvent", UserEvent="SomethingElse", Uuid="u-2", Channel="PJSIP/x-1")
        with pytest.raises(AmiError):
            await directory.channel_for("u-2", timeout=0.3)
    finally:
        await directory.close()


async def test_a_gateway_started_before_asterisk_connects_once_asterisk_is_up(peer: AmiPeer) -> None:
    port = peer.port
    await peer.stop()
    client = AmiClient(config_for(peer))
    await client.connect(retry_in_background=True)
    assert not client.connected
    restarted = await AmiPeer(port=port).start()
    try:
        assert await restarted.wait_for_login()
        await until(lambda: client.connected)  # the peer saw the Login before the client read its answer
    finally:
        await client.close()
        await restarted.stop()
