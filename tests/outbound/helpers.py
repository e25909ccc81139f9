"""Stand-ins for the dialler's tests: a fixed clock, campaigns built in code, a directory of
synthetic customers (the risk API's contract, in memory) and a scripted originator."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from bench.scratch_db import create_scratch_database, drop_scratch_database
from outbound.campaigns import AttemptRules, CallingWindow, Campaign, Caps, Selection
from outbound.directory import ContactDetails, Selected, SelectionPage, UnknownCustomer
from outbound.originator import DialRequest, DialResult, MachineListener
from risk_api.clock import CHINA_TZ

PG_URL_ENV = "RISK_API_TEST_PG_URL"
NUMBER_KEY = b"test-only-outbound-number-key"


class FixedClock:
    """Stands still; tests move it."""

    def __init__(self, start: datetime) -> None:
        assert start.tzinfo is not None
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)

    def set(self, moment: datetime) -> None:
        self.current = moment


def china(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=CHINA_TZ)


def make_campaign(campaign_id: str = "test_campaign", **overrides: Any) -> Campaign:
    campaign = Campaign(
        id=campaign_id, name="测试外呼", flow="due_date_reminder", enabled=True, priority=50,
        selection=Selection(due_in_days=3),
        window=CallingWindow(time(9), time(20)),
        attempts=AttemptRules(3, {"busy": timedelta(minutes=30), "no_answer": timedelta(minutes=60),
                                  "failed": timedelta(minutes=60), "machine": timedelta(minutes=60),
                                  "unknown": timedelta(minutes=60)}),
        caps=Caps(2, 5), max_channels=10)
    return replace(campaign, **overrides)


@dataclass
class Person:
    customer_id: str
    phone: str
    due_date: date | None = None  # the bill; None: no bill
    timezone: str = "Asia/Shanghai"
    do_not_call: bool = False
    marketing_opt_out: bool = False
    paid: bool = False


@dataclass
class SyntheticDirectory:
    """The risk API's dialer routes over synthetic customers, with the risk API's semantics:
    due in N days / overdue min..max days of the bill's due date (the clock's China date)."""

    clock: FixedClock
    people: dict[str, Person] = field(default_factory=dict)
    contacts: int = 0
    opt_outs: list[tuple[str, str, str | None]] = field(default_factory=list)
    down: bool = False

    def add(self, person: Person) -> Person:
        self.people[person.customer_id] = person
        return person

    def _matches(self, person: Person, selection: Selection) -> bool:
        if person.paid or person.due_date is None:
            return False
        today = self.clock.now().astimezone(CHINA_TZ).date()
        if selection.due_in_days is not None:
            return person.due_date == today + timedelta(days=selection.due_in_days)
        assert selection.overdue_min is not None and selection.overdue_max is not None
        return selection.overdue_min <= (today - person.due_date).days <= selection.overdue_max

    def _selected(self, person: Person, reference: bool) -> Selected:
        return Selected(person.customer_id, person.due_date.isoformat() if reference and person.due_date else None,
                        person.timezone, person.do_not_call, person.marketing_opt_out)

    async def select(self, selection: Selection, after: str | None, customer_ids: list[str] | None = None
                     ) -> SelectionPage:
        self._check()
        if customer_ids is not None:
            return SelectionPage([self._selected(self.people[c], False) for c in customer_ids if c in self.people],
                                 [c for c in customer_ids if c not in self.people])
        found = sorted((p for p in self.people.values() if self._matches(p, selection)), key=lambda p: p.customer_id)
        found = [p for p in found if after is None or p.customer_id > after]
        page = found[:50]  # small pages: the dialler must follow next_after
        return SelectionPage([self._selected(p, True) for p in page], [],
                             page[-1].customer_id if len(found) > 50 else None)

    async def contact(self, customer_id: str, selection: Selection) -> ContactDetails:
        self._check()
        person = self.people.get(customer_id)
        if person is None:
            raise UnknownCustomer(customer_id)
        self.contacts += 1
        due = None if person.paid or person.due_date is None else person.due_date
        selected = selection.kind == "customer_ids" or (due is not None and self._in_stage(due, selection))
        return ContactDetails(customer_id, person.phone, person.timezone, person.do_not_call, person.marketing_opt_out,
                              selected, due.isoformat() if due else None)

    def _in_stage(self, due: date, selection: Selection) -> bool:
        today = self.clock.now().astimezone(CHINA_TZ).date()
        if selection.due_in_days is not None:
            return today <= due <= today + timedelta(days=selection.due_in_days)
        assert selection.overdue_min is not None and selection.overdue_max is not None
        return selection.overdue_min <= (today - due).days <= selection.overdue_max

    async def do_not_call(self, customer_id: str, source: str, attempt_id: str | None) -> None:
        self._check()
        self.opt_outs.append((customer_id, source, attempt_id))
        self.people[customer_id].do_not_call = True

    async def close(self) -> None:
        pass

    def _check(self) -> None:
        if self.down:
            from outbound.directory import DirectoryUnavailable
            raise DirectoryUnavailable("risk API down (test)")


@dataclass(frozen=True)
class Sent:
    attempt_id: str
    campaign_id: str
    customer_id: str
    number: str
    at: datetime


Script = Callable[[DialRequest, int], str]  # (request, nth call to this customer, from 1) -> result


class ScriptedOriginator:
    """Records every dial it sends and answers by a script. `hang` makes it stop forever after
    recording a send (a dialler killed while waiting for OriginateResponse); `die_before_send`
    before sending (killed between recording `dialling` and the Originate)."""

    def __init__(self, clock: FixedClock, script: Script | None = None, sent: list[Sent] | None = None) -> None:
        self.clock = clock
        self.script = script or (lambda request, nth: "answered")
        self.sent: list[Sent] = sent if sent is not None else []
        self.calls_to: dict[str, int] = defaultdict(int)
        self.is_ready = True
        self.hang: Callable[[DialRequest], bool] = lambda request: False
        self.die_before_send: Callable[[DialRequest], bool] = lambda request: False
        self.listeners: list[Callable[[str], None]] = []
        self.machine_listeners: list[MachineListener] = []
        self.conversation_of: dict[str, str] = {}  # attempt id -> IVR_CALL_UUID, as the dialplan has it
        self.stuck = 0  # dials waiting forever (hang / die_before_send)
        self._forever = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.is_ready

    @property
    def description(self) -> str:
        return "scripted"

    def on_call_end(self, listener: Callable[[str], None]) -> None:
        self.listeners.append(listener)

    async def dial(self, request: DialRequest) -> DialResult:
        if self.die_before_send(request):
            self.stuck += 1
            await self._forever.wait()
        self.sent.append(Sent(request.attempt_id, request.campaign_id, request.customer_id, request.number,
                              self.clock.now()))
        if self.hang(request):
            self.stuck += 1
            await self._forever.wait()
        self.calls_to[request.customer_id] += 1
        self.conversation_of[request.attempt_id] = request.conversation_id
        result = self.script(request, self.calls_to[request.customer_id])
        return DialResult(result, f"scripted {result}", f"action-{len(self.sent)}",
                          f"uid-{len(self.sent)}" if result == "answered" else None)

    def on_machine(self, listener: MachineListener) -> None:
        self.machine_listeners.append(listener)

    def hang_up(self, attempt_id: str) -> None:
        for listener in self.listeners:
            listener(attempt_id)

    def machine(self, attempt_id: str, detail: str = "answering machine (scripted)") -> None:
        """The dialplan's AMD found a machine on this attempt's call."""
        for listener in self.machine_listeners:
            listener(attempt_id, detail, self.conversation_of.get(attempt_id, ""))

    async def close(self) -> None:
        pass


@contextmanager
def database_url(backend: str, tmp_path: Path, name: str = "outbound") -> Iterator[str]:
    """A fresh SQLite file or scratch PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
        return
    admin = os.environ[PG_URL_ENV]
    url, scratch = create_scratch_database(admin, f"{name}_test")
    try:
        yield url
    finally:
        drop_scratch_database(admin, scratch)
