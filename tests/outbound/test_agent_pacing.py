"""Campaigns that hand customers to people are paced to the agents free in Asterisk's queue.

The member events are the ones a real Asterisk 22 sent (QueueMemberAdded / QueueMemberStatus /
QueueMemberRemoved of ../shared/asterisk-sessions, their fields as recorded), sent by the fake
Asterisk Manager; the queue's member list (QueueStatus) is what the fake has. The dialler runs
over a real queue database with a scripted originator, at a fixed clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, timedelta

import pytest

from outbound.agents import AgentWatch
from outbound.campaigns import AgentPacing, CampaignError, load_campaign
from outbound.compliance import Compliance
from outbound.dialer import Dialer, DialerSettings
from outbound.queue import Queue
from telephony.ami import AmiClient
from tests.outbound.helpers import (
    NUMBER_KEY,
    FixedClock,
    Person,
    ScriptedOriginator,
    SyntheticDirectory,
    china,
    make_campaign,
)
from tests.telephony.peers import AmiPeer
from tests.telephony.replay import load_session
from tests.telephony.test_ami import config_for
from tests.waiting import until, within

HANDOVER = "inbound-dtmf-handover-agent-answers.ami.txt"
TODAY = date(2026, 3, 10)


def recorded(event: str) -> dict[str, str]:
    """The first `event` the real Asterisk sent the gateway in the hand-over recording."""
    (first, *_) = load_session(HANDOVER, "gateway").events(event)
    return first.fields


def member(name: str, status: str = "1", paused: str = "0") -> dict[str, str]:
    """A member as the recording's QueueMemberStatus shows one, its interface and state changed."""
    fields = dict(recorded("QueueMemberStatus"))
    interface = f"Local/{name}@test-agent/n"
    return {**fields, "MemberName": name, "Interface": interface, "StateInterface": interface,
            "Status": status, "Paused": paused}


@pytest.fixture
async def watched() -> AsyncIterator[tuple[AmiPeer, AmiClient, AgentWatch]]:
    peer = await AmiPeer(members={"agents": [member("a1"), member("a2"), member("a3", status="2")]}).start()
    client = AmiClient(config_for(peer, action_timeout_seconds=2.0))
    await client.connect()
    watch = AgentWatch(client, {"agents"})
    watch.start()
    try:
        yield peer, client, watch
    finally:
        await watch.close()
        await client.close()
        await peer.stop()


async def test_the_free_agents_are_counted_from_the_queue_and_follow_its_member_events(
        watched: tuple[AmiPeer, AmiClient, AgentWatch]) -> None:
    peer, _, watch = watched
    await until(lambda: watch.available("agents") == 2)  # a3 is in a call (Status 2)
    assert watch.available("vip") is None, "a queue not watched is unknown"
    fields = {key: value for key, value in member("a1", paused="1").items() if key != "Event"}
    await peer.emit("QueueMemberPause", **fields)
    await until(lambda: watch.available("agents") == 1)
    await peer.emit("QueueMemberStatus", **{k: v for k, v in member("a3").items() if k != "Event"})
    await until(lambda: watch.available("agents") == 2)  # a3's call ended
    added = {**recorded("QueueMemberAdded"), "Queue": "agents"}
    added.pop("Event", None)
    await peer.emit("QueueMemberAdded", **added)  # the recording's stand-in agent, free
    await until(lambda: watch.available("agents") == 3)
    removed = {**recorded("QueueMemberRemoved"), "Queue": "agents"}
    removed.pop("Event", None)
    await peer.emit("QueueMemberRemoved", **removed)
    await until(lambda: watch.available("agents") == 2)


async def test_while_ami_is_down_nobody_knows_and_after_it_the_queue_is_asked_again(
        watched: tuple[AmiPeer, AmiClient, AgentWatch]) -> None:
    peer, client, watch = watched
    await until(lambda: watch.available("agents") == 2)
    await peer.drop_connections()
    await until(lambda: not client.connected)
    assert watch.available("agents") is None
    peer.members = {"agents": [member("a1"), member("a2", paused="1")]}  # changed while we were away
    await until(lambda: client.connected and watch.available("agents") == 1)


@pytest.fixture
def rig(tmp_path) -> tuple[Queue, ScriptedOriginator, FixedClock, SyntheticDirectory]:
    clock = FixedClock(china(TODAY, 10))
    directory = SyntheticDirectory(clock)
    for n in range(8):
        directory.add(Person(f"C20000{n}", f"1990000100{n}", TODAY + timedelta(days=3)))
    queue = Queue(f"sqlite:///{tmp_path / 'outbound.sqlite3'}")
    queue.prepare()
    return queue, ScriptedOriginator(clock, script=lambda request, nth: "answered"), clock, directory


async def test_two_free_agents_at_one_and_a_half_calls_each_allow_three_calls_and_unknown_allows_none(
        rig: tuple[Queue, ScriptedOriginator, FixedClock, SyntheticDirectory]) -> None:
    queue, originator, clock, directory = rig
    free: dict[str, int | None] = {"agents": None}
    campaign = make_campaign("transfer_offer", agent_pacing=AgentPacing("agents", 1.5))
    dialer = Dialer(queue=queue, campaigns={campaign.id: campaign}, compliance=Compliance(), directory=directory,
                    originator=originator, clock=clock, number_key=NUMBER_KEY,
                    settings=DialerSettings(owner="pacing-test"), agents_free=free.get)
    dialer.start()
    try:
        await dialer.tick()
        await within(dialer.drain())
        assert originator.sent == [] and "unknown" in dialer.agent_paced_out[campaign.id]
        free["agents"] = 2
        await dialer.tick()
        await within(dialer.drain())
        assert len(originator.sent) == 3, "floor(2 × 1.5): the answered calls are still up"
        await dialer.tick()
        await within(dialer.drain())
        assert len(originator.sent) == 3, "not a fourth until one ends"
        originator.hang_up(originator.sent[0].attempt_id)
        await dialer.tick()
        await within(dialer.drain())
        assert len(originator.sent) == 4 and campaign.id not in dialer.agent_paced_out
        free["agents"] = 0  # every agent busy: nothing more, and the health says why
        await dialer.tick()
        assert len(originator.sent) == 4 and "no agent free" in dialer.agent_paced_out[campaign.id]
    finally:
        await dialer.close()


def test_a_campaign_file_names_its_queue_and_a_sane_number_of_calls_per_agent(tmp_path) -> None:
    from flowspec.model import repository_flowset
    from outbound.campaigns import CAMPAIGNS_DIR

    flows = repository_flowset()
    source = (CAMPAIGNS_DIR / "overdue_reminder.yaml").read_text(encoding="utf-8")
    for pacing, error in (("  agents: {queue: agents, calls_per_agent: 1.5}\n", None),
                          ("  agents: {queue: agents, calls_per_agent: 5}\n", "calls_per_agent"),
                          ("  agents: {queue: 'a b', calls_per_agent: 1}\n", "queue")):
        path = tmp_path / "overdue_reminder.yaml"
        path.write_text(source.replace("pacing:\n", "pacing:\n" + pacing, 1), encoding="utf-8")
        if error is None:
            assert load_campaign(path, flows).agent_pacing == AgentPacing("agents", 1.5)
        else:
            with pytest.raises(CampaignError, match=error):
                load_campaign(path, flows)
    assert replace(make_campaign(), agent_pacing=None).agent_pacing is None
