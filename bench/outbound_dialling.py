"""The outbound dialler's figures (`make bench`; docs/outbound.md): how many dial decisions a
second one dialler makes from a 100,000-customer campaign, and how long a campaign takes from its
start to its first Originate, on SQLite and on the PostgreSQL in RISK_API_TEST_PG_URL.

    python -m bench.outbound_dialling [--pg-url URL] [--customers N]

The dialler, its queue and its rules are the real ones (outbound/), at a clock held at a Tuesday
10:00 China time. The risk API's dialer routes are an in-memory directory of synthetic customers
(the risk API's own HTTP cost is in bench/risk_decisions.py); 2 % are on the do-not-call list
(skipped for good, a decision too) and 5 % live in London (queued for their own morning: not due).
- Decisions: the campaign planned, then ticks for MEASURE_SECONDS (or until nothing is due), every
  allowed call answered at once `no_answer` by a stand-in originator: decisions recorded a second.
- Start to first Originate: a fresh database, the dialler's first tick with the campaign active
  (the risk API's selection of every customer, the queue's planning, claim, rules, the Originate)
  until the Originate reaches the AMI test peer over loopback; and, with the campaign planned and
  paused, from an operator's start until the Originate (the service ticks once a second: up to a
  second more in service).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.scratch_db import create_scratch_database, drop_scratch_database
from outbound.campaigns import AttemptRules, CallingWindow, Campaign, Caps, Selection
from outbound.compliance import Compliance
from outbound.dialer import Dialer, DialerSettings
from outbound.directory import SELECTION_PAGE, ContactDetails, Selected, SelectionPage, UnknownCustomer
from outbound.originator import AmiOriginator, DialRequest, DialResult, DialSettings
from outbound.queue import DecisionRow, Queue
from risk_api.clock import CHINA_TZ, ShiftedClock
from telephony.ami import AmiClient, AmiConfig
from tests.telephony.peers import AmiPeer

PG_URL_ENV = "RISK_API_TEST_PG_URL"
CUSTOMERS = 100_000
MEASURE_SECONDS = 20.0
STARTS = 3  # operator starts measured per backend (a cold start plans 100,000 customers: once)
TUESDAY_10AM = datetime(2026, 3, 10, 10, 0, tzinfo=CHINA_TZ)
OVERDUE_SINCE = date(2026, 3, 8)  # 2 days overdue at the held clock: in the campaign's 1-3 days
NUMBER_KEY = b"bench-only-outbound-number-key"
OWNER = "bench-dialler"
BOUND_SECONDS = 600.0  # a run that hangs ends here, with an error


@dataclass(frozen=True)
class Customer:
    customer_id: str
    phone: str
    timezone: str
    do_not_call: bool


class CampaignDirectory:
    """The risk API's dialer routes over `count` synthetic customers, all in the campaign's stage:
    pages of SELECTION_PAGE in id order, one contact lookup per call."""

    def __init__(self, count: int) -> None:
        self.customers = [Customer(f"B{index:07d}", f"199{index:08d}", "Europe/London" if index % 20 == 7
                                   else "Asia/Shanghai", index % 50 == 3) for index in range(count)]
        self._by_id = {customer.customer_id: customer for customer in self.customers}
        self._position = {customer.customer_id: index for index, customer in enumerate(self.customers)}

    async def select(self, selection: Selection, after: str | None, customer_ids: list[str] | None = None
                     ) -> SelectionPage:
        start = 0 if after is None else self._position[after] + 1
        page = self.customers[start:start + SELECTION_PAGE]
        more = start + SELECTION_PAGE < len(self.customers)
        return SelectionPage([Selected(c.customer_id, OVERDUE_SINCE.isoformat(), c.timezone, c.do_not_call)
                              for c in page], [], page[-1].customer_id if more else None)

    async def contact(self, customer_id: str, selection: Selection) -> ContactDetails:
        customer = self._by_id.get(customer_id)
        if customer is None:
            raise UnknownCustomer(customer_id)
        return ContactDetails(customer_id, customer.phone, customer.timezone, customer.do_not_call, False, True,
                              OVERDUE_SINCE.isoformat())

    async def do_not_call(self, customer_id: str, source: str, attempt_id: str | None) -> None:
        raise AssertionError("no opt-out happens in the bench")

    async def close(self) -> None:
        pass


class NoAnswerOriginator:
    """Every call placed rings out at once: the decision path alone, no telephony."""

    ready = True
    description = "bench: every call no_answer"

    def on_call_end(self, listener: Any) -> None:
        pass

    def on_machine(self, listener: Any) -> None:
        pass

    async def dial(self, request: DialRequest) -> DialResult:
        return DialResult("no_answer", "bench", None, None)


def campaign(max_channels: int) -> Campaign:
    return Campaign(id="bench_overdue", name="压测逾期提醒", flow="overdue_reminder", enabled=True, priority=50,
                    selection=Selection(overdue_min=1, overdue_max=3),
                    window=CallingWindow(clock_time(9), clock_time(20)),
                    attempts=AttemptRules(4, {"busy": timedelta(minutes=30), "no_answer": timedelta(minutes=90),
                                              "failed": timedelta(minutes=60), "machine": timedelta(minutes=90),
                                              "unknown": timedelta(minutes=90)}),
                    caps=Caps(2, 5), max_channels=max_channels)


def held_clock() -> ShiftedClock:
    """The real clock type, moved to TUESDAY_10AM; callers hold it still."""
    clock = ShiftedClock()
    clock.offset = TUESDAY_10AM - datetime.now(CHINA_TZ)
    return clock


@contextmanager
def database(backend: str, pg_url: str | None, workdir: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.sqlite3'}"
        return
    assert pg_url is not None
    url, scratch = create_scratch_database(pg_url, "outbound_bench")
    try:
        yield url
    finally:
        drop_scratch_database(pg_url, scratch)


def decisions_recorded(queue: Queue) -> int:
    with queue.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(DecisionRow)) or 0)


async def decision_rate(url: str, directory: CampaignDirectory) -> dict[str, Any]:
    clock = held_clock()
    queue = Queue(url)
    queue.prepare()
    bench_campaign = campaign(max_channels=1000)
    dialer = Dialer(queue=queue, campaigns={bench_campaign.id: bench_campaign}, compliance=Compliance(),
                    directory=directory, originator=NoAnswerOriginator(), clock=clock, number_key=NUMBER_KEY,
                    settings=DialerSettings(owner=OWNER))
    try:
        with clock.held():
            dialer.start()
            began = time.perf_counter()
            await dialer.plan(clock.now())
            planning = time.perf_counter() - began
            began = time.perf_counter()
            deadline = began + MEASURE_SECONDS
            ticks = 0
            while time.perf_counter() < deadline:
                await dialer.tick()
                ticks += 1
                if not dialer.tasks:
                    break  # nothing due any more: every customer decided
                await asyncio.wait_for(dialer.drain(), BOUND_SECONDS)
            elapsed = time.perf_counter() - began
        decided = decisions_recorded(queue)
    finally:
        await dialer.close()
        queue.close()
    return {"customers": len(directory.customers), "planning_seconds": round(planning, 1),
            "decisions": decided, "dials": dialer.dials, "ticks": ticks,
            "decisions_per_second": round(decided / elapsed, 1)}


async def first_originate(url: str, directory: CampaignDirectory) -> dict[str, Any]:
    """Seconds from the campaign's start to the first Originate at the AMI peer: the cold start
    (first tick of a new campaign), then STARTS operator starts of the planned campaign."""
    clock = held_clock()
    peer = await AmiPeer().start()
    client = AmiClient(AmiConfig(host="127.0.0.1", port=peer.port, username="ivr-bot", secret="s3cret",
                                 action_timeout_seconds=5.0))
    originator = AmiOriginator(client, DialSettings("PJSIP/{number}@trunk", "4008001234", ring_seconds=30))
    originator.start()
    await client.connect()
    queue = Queue(url)
    queue.prepare()
    bench_campaign = campaign(max_channels=1)  # one call at a time: each start's first Originate is its own
    dialer = Dialer(queue=queue, campaigns={bench_campaign.id: bench_campaign}, compliance=Compliance(),
                    directory=directory, originator=originator, clock=clock, number_key=NUMBER_KEY,
                    settings=DialerSettings(owner=OWNER))
    starts: list[float] = []
    try:
        with clock.held():
            began = time.perf_counter()
            dialer.start()
            await asyncio.wait_for(until_originates(peer, 1, dialer), BOUND_SECONDS)
            cold = time.perf_counter() - began
            for number in range(2, STARTS + 2):
                queue.control_campaign(bench_campaign, "paused", "bench", clock.now())
                await answer_last_originate(peer)  # the call in progress ends: its channel is free
                await asyncio.wait_for(dialer.drain(), BOUND_SECONDS)
                began = time.perf_counter()
                queue.control_campaign(bench_campaign, "active", "bench", clock.now())
                await asyncio.wait_for(until_originates(peer, number, dialer), BOUND_SECONDS)
                starts.append(time.perf_counter() - began)
            await answer_last_originate(peer)
            await asyncio.wait_for(dialer.drain(), BOUND_SECONDS)
    finally:
        await dialer.close()
        await originator.close()
        await client.close()
        await peer.stop()
        queue.close()
    return {"cold_start_seconds": round(cold, 2), "operator_start_p50_ms": round(statistics.median(starts) * 1000, 1),
            "operator_starts": len(starts)}


async def until_originates(peer: AmiPeer, count: int, dialer: Dialer) -> None:
    """Ticks again whenever nothing is in flight, as the service does each second: an attempt the
    rules skip (the do-not-call list) places no call, and the next one due does."""
    while len(peer.actions_named("Originate")) < count:
        if not dialer.tasks:
            await dialer.tick()
        await asyncio.sleep(0.001)


async def answer_last_originate(peer: AmiPeer) -> None:
    """Asterisk's answer to the last Originate: rang out (Reason 3), as a real 22 words it."""
    action = peer.actions_named("Originate")[-1]
    await peer.emit("OriginateResponse", ActionID=action["ActionID"], Response="Failure", Channel=action["Channel"],
                    Context="ivr-outbound", Exten="s", Reason="3", Uniqueid="<unknown>", CallerIDNum="<unknown>",
                    CallerIDName="<unknown>")


async def backend_figures(backend: str, pg_url: str | None, customers: int) -> dict[str, Any]:
    directory = CampaignDirectory(customers)
    with tempfile.TemporaryDirectory(prefix="outbound-bench-") as scratch:
        with database(backend, pg_url, Path(scratch), "decisions") as url:
            decisions = await decision_rate(url, directory)
        with database(backend, pg_url, Path(scratch), "start") as url:
            start = await first_originate(url, directory)
    return {**decisions, **start}


def figures(pg_url: str | None = None, customers: int = CUSTOMERS) -> dict[str, Any]:
    """Both backends (PostgreSQL with `pg_url` or RISK_API_TEST_PG_URL): {backend: figures}."""
    pg_url = pg_url or os.environ.get(PG_URL_ENV) or None
    backends = ["sqlite", *(["postgres"] if pg_url else [])]
    return {backend: asyncio.run(backend_figures(backend, pg_url, customers)) for backend in backends}


def report_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of docs/benchmarks.md's table (bench/run.py writes them)."""
    rows = []
    for backend, figures_of in results.items():
        rows.append((f"Outbound dial decisions, one dialler, {figures_of['customers']:,}-customer campaign, {backend} "
                     f"(rules, queue transaction, {figures_of['decisions']:,} decisions; planning the campaign)",
                     f"{figures_of['decisions_per_second']:,} decisions/s ({figures_of['planning_seconds']} s)"))
        rows.append((f"Outbound campaign start → first Originate at the AMI peer, {backend}: a new "
                     f"{figures_of['customers']:,}-customer campaign (selection and planning included) / "
                     f"an operator's start of a planned one, p50 of {figures_of['operator_starts']}",
                     f"{figures_of['cold_start_seconds']} s / {figures_of['operator_start_p50_ms']} ms"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outbound_dialling", description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=None, help=f"PostgreSQL server URL (default: ${PG_URL_ENV})")
    parser.add_argument("--customers", type=int, default=CUSTOMERS)
    args = parser.parse_args(argv)
    print(json.dumps(figures(args.pg_url, args.customers), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
