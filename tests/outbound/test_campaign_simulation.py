"""Three campaigns over 200 synthetic customers, four days at a fixed clock moved in 10-minute
steps, with a dialler killed mid-morning and two others taking over on the same database.

The customers: 100 with a bill due on Wednesday (a due-in-2-days campaign selects them on
Monday), 100 overdue since Saturday (overdue 1-5 days), all 200 listed for a satisfaction
callback from Tuesday 14:00-18:00; 15 of them abroad or in Xinjiang time; five share one family
number, twenty more share numbers in pairs. Scripted answers: busy, no answer, failure or an
answer on some call; conversations that end in an opt-out or a third party who refuses; ten
customers opt out of marketing through another channel on Monday at noon. Wednesday is a
holiday in the policy.

Checked on everything that was sent: nothing outside the calling hours in the customer's local
time nor on the holiday, no number over 6 unanswered calls a local day, no campaign over its
caps, no call to an opted-out customer or a refused third party's number after the fact, no
attempt dialled twice across the kill, and the stored outcomes are the scripted ones.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from random import Random
from zoneinfo import ZoneInfo

from outbound.campaigns import CallingWindow, Selection
from outbound.compliance import RULES, Compliance, CompliancePolicy
from outbound.dialer import Dialer, DialerSettings
from outbound.originator import DialRequest
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

MONDAY = date(2026, 3, 9)
HOLIDAY = date(2026, 3, 11)
DAYS = 4
STEP = timedelta(minutes=10)
KILL_AT = china(MONDAY, 11)
MARKETING_OPT_OUT_AT = china(MONDAY, 12)
IDS = [f"S{n:03d}" for n in range(1, 201)]

DUE = make_campaign("sim_due", selection=Selection(due_in_days=2), priority=40, max_channels=8)
OVERDUE = make_campaign("sim_overdue", flow="overdue_reminder", selection=Selection(overdue_min=1, overdue_max=5),
                        window=CallingWindow(time(10), time(19)), priority=60, max_channels=8)
SURVEY = make_campaign("sim_survey", flow="satisfaction_survey", selection=Selection(customer_ids=tuple(IDS)),
                       window=CallingWindow(time(14), time(18)), starts_on=MONDAY + timedelta(days=1), priority=20,
                       max_channels=5)
SURVEY = replace(SURVEY, attempts=replace(SURVEY.attempts, max_attempts=2))
CAMPAIGNS = {c.id: c for c in (DUE, OVERDUE, SURVEY)}
POLICY = CompliancePolicy(blackout_dates=frozenset({HOLIDAY}))


def people(clock: FixedClock) -> SyntheticDirectory:
    directory = SyntheticDirectory(clock)
    for index, customer_id in enumerate(IDS):
        number = f"1990001{index:04d}"
        if 160 <= index < 165:
            number = "19900019999"  # a family number: five customers
        elif 180 <= index < 200:
            number = f"1990001{index - 20:04d}"  # pairs: shares with the customer 20 before
        zone = "Europe/London" if index % 40 == 7 else "Asia/Urumqi" if index % 20 == 3 else "Asia/Shanghai"
        due = date(2026, 3, 11) if index % 2 == 0 else date(2026, 3, 7)
        directory.add(Person(customer_id, number, due, zone))
    return directory


MARKETING_OPT_OUTS = {IDS[i] for i in range(0, 200, 20)}  # ten customers, by another channel at noon
IN_CALL_OPT_OUTS = {IDS[i] for i in (11, 31, 51, 71, 93)}  # say so when they answer
# A third party answers and refuses further calls; each number is shared with the customer 20 after.
THIRD_PARTY_REFUSED = {IDS[i] for i in (170, 175)}
NEVER_ANSWER = {IDS[i] for i in range(160, 165)} | {IDS[i] for i in range(1, 200, 9)}


def script(request: DialRequest, nth: int) -> str:
    customer = request.customer_id
    if customer in NEVER_ANSWER and customer not in THIRD_PARTY_REFUSED:
        return ("no_answer", "busy", "failed")[nth % 3]
    if customer in IN_CALL_OPT_OUTS | THIRD_PARTY_REFUSED:
        return "answered"
    luck = Random(f"{customer}:{nth}").random()
    return "answered" if luck < 0.45 else "no_answer" if luck < 0.7 else "busy" if luck < 0.9 else "failed"


class Run:
    def __init__(self, queue: Queue, clock: FixedClock, directory: SyntheticDirectory) -> None:
        self.queue, self.clock, self.directory = queue, clock, directory
        self.sent: list = []
        self.results: dict[str, str] = {}
        self.dialers: list[Dialer] = []
        self.originators: dict[str, ScriptedOriginator] = {}
        self.outcome_at: dict[str, datetime] = {}  # customer -> when their opt-out was recorded
        self.blocked_at: dict[str, datetime] = {}  # number -> when a third party refused on it
        self.done_outcomes: set[str] = set()

    def dialer(self, owner: str) -> Dialer:
        originator = ScriptedOriginator(self.clock, self.scripted, self.sent)
        dialer = Dialer(queue=self.queue, campaigns=CAMPAIGNS, compliance=Compliance(POLICY),
                        directory=self.directory, originator=originator, clock=self.clock, number_key=NUMBER_KEY,
                        settings=DialerSettings(owner=owner, max_in_flight=12))
        dialer.start()
        self.dialers.append(dialer)
        self.originators[owner] = originator
        return dialer

    def scripted(self, request: DialRequest, nth: int) -> str:
        result = script(request, nth)
        self.results[request.attempt_id] = result
        return result

    async def step(self, dialers: list[Dialer]) -> None:
        for dialer in dialers:
            await dialer.tick()
            await dialer.drain()
        # What the conversations came to, as the dialogue would report it; answered calls hang up.
        for attempt in self.queue.attempts():
            if attempt.result != "answered" or attempt.id in self.done_outcomes:
                continue
            self.done_outcomes.add(attempt.id)
            dialers[0].originator.hang_up(attempt.id)  # type: ignore[attr-defined]
            person = self.directory.people[attempt.customer_id]
            if attempt.customer_id in IN_CALL_OPT_OUTS:
                await dialers[0].record_conversation_outcome(attempt.id, "opted_out")
                self.outcome_at.setdefault(attempt.customer_id, self.clock.now())
            elif attempt.customer_id in THIRD_PARTY_REFUSED:
                await dialers[0].record_conversation_outcome(attempt.id, "third_party_refused")
                self.blocked_at.setdefault(person.phone, self.clock.now())
            else:
                await dialers[0].record_conversation_outcome(attempt.id, "completed")


async def test_two_hundred_customers_four_days_one_killed_dialler(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = FixedClock(china(MONDAY, 0))
    directory = people(clock)
    queue = Queue(f"sqlite:///{tmp_path / 'outbound.sqlite3'}")
    queue.prepare()
    run = Run(queue, clock, directory)
    first = run.dialer("dialler-1")
    killed_tasks: list[asyncio.Task[None]] = []
    survivors: list[Dialer] = []
    end = china(MONDAY + timedelta(days=DAYS), 0)
    while clock.now() < end:
        now = clock.now()
        if now == MARKETING_OPT_OUT_AT:
            for customer in MARKETING_OPT_OUTS:  # the engine's preferences route, in another conversation
                directory.people[customer].marketing_opt_out = True
                run.outcome_at.setdefault(customer, now)
        if now < KILL_AT:
            await run.step([first])
        elif now == KILL_AT:
            # Dialler 1 dies during this tick: its first two claims after recording `dialling` but before
            # the Originate, the others after the Originate, before any result.
            originator = run.originators["dialler-1"]
            deaths = iter(range(2))
            originator.die_before_send = lambda request, deaths=deaths: next(deaths, None) is not None
            originator.hang = lambda request: True
            await first.tick()
            await asyncio.wait_for(_settled(first, originator), 10)
            killed_tasks = list(first.tasks.values())
            survivors = [run.dialer("dialler-2"), run.dialer("dialler-3")]
            await run.step(survivors)
        else:
            await run.step(survivors)
        clock.advance(seconds=STEP.total_seconds())
    for task in killed_tasks:
        task.cancel()
    await asyncio.gather(*killed_tasks, return_exceptions=True)

    attempts = {attempt.id: attempt for attempt in queue.attempts()}
    decisions = queue.decisions()
    zones = {customer: ZoneInfo(person.timezone) for customer, person in directory.people.items()}
    sent = run.sent
    assert len(sent) > 500, f"the campaigns barely ran: {len(sent)} calls"
    assert len(killed_tasks) >= 3, "the kill caught dials in flight"

    # No attempt dialled twice, across the kill and the two diallers after it.
    counts = Counter(s.attempt_id for s in sent)
    assert counts.most_common(1)[0][1] == 1, counts.most_common(3)
    lost = [a for a in attempts.values() if a.result == "unknown"]
    assert len(lost) == len(killed_tasks), "every attempt in flight at the kill ended as unknown, none redialled"
    for attempt in lost:
        following = attempts.get(attempt.id[:-1] + str(attempt.number + 1))
        member_done = attempt.number >= CAMPAIGNS[attempt.campaign_id].attempts.max_attempts
        assert following is not None or member_done, f"{attempt.id}: the series went on"

    # Never outside the calling hours in the customer's local time, nor on the holiday.
    for call in sent:
        campaign = CAMPAIGNS[call.campaign_id]
        local = call.at.astimezone(zones[call.customer_id])
        start, stop = max(time(8), campaign.window.start), min(time(21), campaign.window.end)
        assert start <= local.time() < stop, (call, local)
        assert local.date() != HOLIDAY, call
        assert campaign.starts_on is None or local.date() >= campaign.starts_on
    zoned = {s.customer_id for s in sent if directory.people[s.customer_id].timezone != "Asia/Shanghai"}
    assert zoned, "customers in other time zones were called, in their hours"

    # No number over 6 unanswered calls in a local day; no campaign over its caps.
    unanswered: Counter[tuple[str, date]] = Counter()
    per_campaign_day: Counter[tuple[str, str, date]] = Counter()
    per_campaign_week: Counter[tuple[str, str]] = Counter()
    for call in sent:
        day = call.at.astimezone(zones[call.customer_id]).date()
        if attempts[call.attempt_id].result != "answered":
            unanswered[(call.number, day)] += 1
        per_campaign_day[(call.campaign_id, call.customer_id, day)] += 1
        per_campaign_week[(call.campaign_id, call.customer_id)] += 1
    assert max(unanswered.values()) <= 6
    family = {IDS[i] for i in range(160, 165)}
    assert any(d.rule == "number_daily_limit" and d.customer_id in family for d in decisions), \
        "the family number reached its limit"
    for (campaign_id, _, _), count in per_campaign_day.items():
        assert count <= CAMPAIGNS[campaign_id].caps.per_customer_per_day
    for (campaign_id, _), count in per_campaign_week.items():
        assert count <= CAMPAIGNS[campaign_id].caps.per_customer_per_week

    # Opt-outs respected from the next attempt on; refused third parties' numbers never again.
    for customer, since in run.outcome_at.items():
        later = [s for s in sent if s.customer_id == customer and s.at > since]
        assert later == [], f"{customer} opted out at {since} and was called at {later[0].at}"
    assert set(run.outcome_at) >= MARKETING_OPT_OUTS | IN_CALL_OPT_OUTS
    assert {customer for customer, _, _ in directory.opt_outs} == IN_CALL_OPT_OUTS, "reported to the risk API"
    for number, since in run.blocked_at.items():
        assert [s for s in sent if s.number == number and s.at > since] == []
    skipped_by = Counter(d.rule for d in decisions if not d.allowed)
    for rule in ("calling_hours", "do_not_call", "number_daily_limit", "third_party_refused", "campaign_daily_cap"):
        assert skipped_by[rule] > 0, f"no decision by {rule}: {skipped_by}"
    assert set(skipped_by) <= set(RULES)
    opted_out_survey = {d.customer_id for d in decisions if d.rule == "do_not_call" and d.campaign_id == "sim_survey"}
    assert opted_out_survey >= MARKETING_OPT_OUTS | IN_CALL_OPT_OUTS

    # Every decision recorded: each dial had an allowed decision first, by the dialler that dialled.
    allowed = Counter(d.attempt_id for d in decisions if d.allowed)
    assert all(allowed[s.attempt_id] == 1 for s in sent)
    assert sum(allowed.values()) == len(sent) + 2, "the two killed before their Originate were decided too"

    # The stored outcomes are the scripted ones; answers end their series.
    for attempt_id, result in run.results.items():
        if attempt_id in {a.id for a in lost}:
            continue
        assert attempts[attempt_id].result == result, attempt_id
    members = {m.id: m for m in queue.members()}
    for attempt in attempts.values():
        if attempt.result == "answered":
            assert members[attempt.member_id].status == "answered"
            assert attempt.conversation_outcome is not None
    by_status = Counter(m.status for m in members.values())
    assert by_status["answered"] > 100 and by_status["skipped"] > 0 and by_status["exhausted"] > 0
    per_customer = defaultdict(set)
    for call in sent:
        per_customer[call.customer_id].add(call.campaign_id)
    assert len(per_customer) >= 180
    for dialer in run.dialers:
        await dialer.close()
    queue.close()


async def _settled(dialer: Dialer, originator: ScriptedOriginator) -> None:
    """Until each of the dialler's attempts is stuck in the originator (as a killed process leaves them)."""
    while len(dialer.tasks) != originator.stuck:
        await asyncio.sleep(0)
