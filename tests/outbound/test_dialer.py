"""The dialler's planning and its behaviour when the risk API or the originator is not there."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from flowspec.model import load_flowset
from outbound.campaigns import CAMPAIGNS_DIR, load_campaign
from outbound.compliance import Compliance
from outbound.dialer import Dialer, DialerSettings
from outbound.queue import Queue
from tests.outbound.helpers import (
    NUMBER_KEY,
    FixedClock,
    Person,
    ScriptedOriginator,
    SyntheticDirectory,
    china,
    make_campaign,
)

TUESDAY = date(2026, 3, 10)


def rig(db_url: str, campaigns: dict, clock: FixedClock, directory: SyntheticDirectory,
        originator: ScriptedOriginator | None = None) -> tuple[Dialer, Queue, ScriptedOriginator]:
    queue = Queue(db_url)
    queue.prepare()
    originator = originator or ScriptedOriginator(clock)
    dialer = Dialer(queue=queue, campaigns=campaigns, compliance=Compliance(), directory=directory,
                    originator=originator, clock=clock, number_key=NUMBER_KEY, settings=DialerSettings(owner="t"))
    dialer.start()
    return dialer, queue, originator


def customers(clock: FixedClock, count: int = 3) -> SyntheticDirectory:
    directory = SyntheticDirectory(clock)
    for n in range(count):
        directory.add(Person(f"C10000{n}", f"1990000000{n}", TUESDAY + timedelta(days=3)))
    return directory


async def test_a_csv_with_ids_the_risk_api_does_not_know_refuses_the_campaign(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("customer_id\nC100000\nC999998\nC100001\nC999999\n", encoding="utf-8")
    shipped = (CAMPAIGNS_DIR / "due_date_reminder.yaml").read_text(encoding="utf-8")
    (tmp_path / "listed.yaml").write_text(
        shipped.replace("id: due_date_reminder", "id: listed").replace("due_in_days: 3", "customer_ids_csv: list.csv"),
        encoding="utf-8")
    campaign = load_campaign(tmp_path / "listed.yaml", load_flowset())
    clock = FixedClock(china(TUESDAY, 10))
    dialer, queue, originator = rig(db_url, {"listed": campaign}, clock, customers(clock))
    await dialer.tick()
    await dialer.drain()
    state = queue.campaign_states()["listed"]
    assert state["state"] == "refused"
    assert f"{tmp_path / 'list.csv'} line 3: C999998" in state["error"]
    assert f"{tmp_path / 'list.csv'} line 5: C999999" in state["error"]
    assert queue.members() == [] and originator.sent == [], "nobody of the list is called"
    # Fixed and loaded again: planned and called.
    (tmp_path / "list.csv").write_text("customer_id\nC100000\nC100001\n", encoding="utf-8")
    campaign = load_campaign(tmp_path / "listed.yaml", load_flowset())
    dialer.campaigns = {"listed": campaign}
    dialer.start()
    clock.advance(minutes=2)
    await dialer.tick()
    await dialer.drain()
    assert sorted(s.customer_id for s in originator.sent) == ["C100000", "C100001"]
    assert {m.cycle for m in queue.members()} == {"list"}


async def test_the_risk_api_down_delays_planning_and_calls_without_losing_them(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    directory = customers(clock)
    originator = ScriptedOriginator(clock)
    dialer, queue, _ = rig(db_url, {"c": make_campaign("c")}, clock, directory, originator)
    directory.down = True
    originator.is_ready = False
    await dialer.tick()
    assert queue.members() == [] and queue.campaign_states()["c"]["selected_on"] is None
    directory.down = False
    clock.advance(seconds=30)
    await dialer.tick()
    assert queue.members() == [], "the selection is tried again after a minute, not at every tick"
    clock.advance(seconds=31)
    await dialer.tick()
    assert len(queue.members()) == 3
    # Down between the claim and the call: each attempt goes back undialled, undecided, and comes again.
    directory.down = True
    originator.is_ready = True
    await dialer.tick()
    await dialer.drain()
    assert originator.sent == [] and queue.decisions() == []
    assert {a.status for a in queue.attempts()} == {"queued"}
    directory.down = False
    clock.advance(seconds=61)
    await dialer.tick()
    await dialer.drain()
    assert sorted(s.customer_id for s in originator.sent) == ["C100000", "C100001", "C100002"]
    assert len(queue.decisions()) == 3


async def test_without_a_ready_originator_it_plans_and_dials_nothing(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    originator = ScriptedOriginator(clock)
    originator.is_ready = False
    dialer, queue, _ = rig(db_url, {"c": make_campaign("c")}, clock, customers(clock), originator)
    for _ in range(3):
        await dialer.tick()
        clock.advance(minutes=1)
    assert len(queue.members()) == 3 and originator.sent == [] and queue.decisions() == []
    assert {a.status for a in queue.attempts()} == {"queued"}
    originator.is_ready = True
    await dialer.tick()
    await dialer.drain()
    assert len(originator.sent) == 3


async def test_a_customer_who_paid_is_not_reminded(db_url: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    directory = customers(clock, 2)
    originator = ScriptedOriginator(clock, lambda request, nth: "no_answer")
    dialer, queue, _ = rig(db_url, {"c": make_campaign("c")}, clock, directory, originator)
    await dialer.tick()
    await dialer.drain()
    directory.people["C100000"].paid = True
    clock.advance(hours=1, minutes=1)
    await dialer.tick()
    await dialer.drain()
    assert [s.customer_id for s in originator.sent].count("C100000") == 1
    assert [s.customer_id for s in originator.sent].count("C100001") == 2
    (skip,) = [d for d in queue.decisions() if not d.allowed]
    assert (skip.customer_id, skip.rule) == ("C100000", "not_selected")


@pytest.mark.parametrize("outcome", ["opted_out"])
async def test_an_opt_out_in_a_call_reaches_the_risk_api_when_it_is_back(db_url: str, outcome: str) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    directory = customers(clock, 1)
    dialer, queue, originator = rig(db_url, {"c": make_campaign("c")}, clock, directory)
    await dialer.tick()
    await dialer.drain()
    (sent,) = originator.sent
    directory.down = True
    await dialer.record_conversation_outcome(sent.attempt_id, outcome)
    assert directory.opt_outs == [] and len(queue.unreported_opt_outs()) == 1
    directory.down = False
    await dialer.tick()
    assert directory.opt_outs == [("C100000", "conversation", sent.attempt_id)]
    assert queue.unreported_opt_outs() == []
