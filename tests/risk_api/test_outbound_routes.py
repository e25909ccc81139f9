"""The dialer role's routes: campaign selections, a customer's number just before a call,
do-not-call; only the dialer reaches them, and the dialer reaches nothing else it should not."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bench.scratch_db import create_scratch_database, drop_scratch_database
from risk_api import demo
from risk_api.app import create_app
from risk_api.clock import CHINA_TZ
from risk_api.config import Settings
from risk_api.db import AuditEntry
from tests.risk_api.helpers import PG_URL_ENV, serve

TODAY = date(2026, 3, 10)
TOKENS = {role: f"test-{role}-token-{uuid.uuid4().hex}" for role in ("engine", "desk", "gateway", "dialer")}
ROUTES = {
    "/outbound/selection": {"due_in_days": 3},
    "/outbound/contact": {"customer_id": "C100001"},
    "/outbound/do-not-call": {"customer_id": "C100001", "source": "agent"},
}


class StillClock:
    def now(self) -> datetime:
        return datetime.combine(TODAY, time(10), tzinfo=CHINA_TZ)


class Dialer:
    def __init__(self, base_url: str, database_url: str) -> None:
        self.base_url = base_url
        self.database_url = database_url
        self.as_role = {role: httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {token}"})
                        for role, token in TOKENS.items()}
        self.http = self.as_role["dialer"]

    def select(self, **body: Any) -> httpx.Response:
        return self.http.post("/outbound/selection", json=body)

    def all_selected(self, **criteria: Any) -> list[dict[str, Any]]:
        customers, after = [], None
        while True:
            page = self.select(**criteria, after=after).json()
            customers += page["customers"]
            if page["next_after"] is None:
                return customers
            after = page["next_after"]

    def close(self) -> None:
        for client in self.as_role.values():
            client.close()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dialer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dialer]:
    workdir: Path = tmp_path_factory.mktemp(f"outbound_routes_{request.param}")
    admin_url, scratch = os.environ.get(PG_URL_ENV, ""), None
    if request.param == "postgres":
        database_url, scratch = create_scratch_database(admin_url, "risk_api_outbound")
    else:
        database_url = f"sqlite:///{workdir / 'risk_api.sqlite3'}"
    settings = Settings(token=TOKENS["engine"], role_tokens={r: TOKENS[r] for r in ("desk", "gateway", "dialer")},
                        database_url=database_url, sms_outbox=workdir / "sms_outbox.jsonl")
    try:
        with serve(create_app(settings, clock=StillClock())) as base_url:
            client = Dialer(base_url, database_url)
            try:
                yield client
            finally:
                client.close()
    finally:
        if scratch:
            drop_scratch_database(admin_url, scratch)


def ids(tag: str) -> set[str]:
    return {person["customer_id"] for person in demo.customers_with_tag(tag)}


@pytest.mark.parametrize("route", list(ROUTES))
def test_only_the_dialer_reaches_the_outbound_routes(dialer: Dialer, route: str) -> None:
    assert httpx.post(f"{dialer.base_url}{route}", json=ROUTES[route]).status_code == 401
    for role in ("engine", "desk", "gateway"):
        refused = dialer.as_role[role].post(route, json=ROUTES[route])
        assert refused.status_code == 403, role
        assert refused.json()["detail"]["code"] == "forbidden"
    assert dialer.http.post(route, json=ROUTES[route]).status_code == 200


def test_the_dialer_reaches_nothing_else_but_the_lookup(dialer: Dialer) -> None:
    for method, path in (("GET", "/customers/C100001"), ("GET", "/customers/C100001/bill"), ("GET", "/handoffs"),
                         ("GET", "/audit"), ("GET", "/reviews"), ("POST", "/tickets"), ("POST", "/verification/l1"),
                         ("POST", "/customers/C100001/preferences")):
        assert dialer.http.request(method, path, json={}).status_code == 403, path
    assert dialer.http.post("/customers/lookup", json={"customer_id": "C100001"}).status_code == 200


def test_due_in_three_days_selects_the_due_soon_customers_without_personal_data(dialer: Dialer) -> None:
    response = dialer.select(due_in_days=3)
    selected = dialer.all_selected(due_in_days=3)
    assert {c["customer_id"] for c in selected} == ids("due_soon")
    due = (TODAY + timedelta(days=3)).isoformat()
    zones = {person["customer_id"]: demo.TIMEZONE_BY_OCCURRENCE.get(occurrence, "Asia/Shanghai")
             for occurrence, person in enumerate(demo.customers_with_tag("due_soon"))}
    for customer in selected:
        assert customer == {"customer_id": customer["customer_id"], "reference": due,
                            "timezone": zones[customer["customer_id"]], "do_not_call": False,
                            "marketing_opt_out": False, "account_status": "active"}
    assert {"Asia/Urumqi", "Europe/London"} < {c["timezone"] for c in selected}, "each customer's own zone"
    assert not re.search(r"1[0-9]{10}", response.text), "no phone number in a selection"
    assert not any(person["name"] in response.text for person in demo.customers_with_tag("due_soon"))


def test_overdue_days_select_by_the_oldest_unpaid_bill(dialer: Dialer) -> None:
    one_to_three = dialer.all_selected(overdue_days={"min": 1, "max": 3})
    assert {c["customer_id"] for c in one_to_three} == ids("overdue")
    for customer in one_to_three:
        assert 1 <= (TODAY - date.fromisoformat(customer["reference"])).days <= 3
    two_to_three = {c["customer_id"] for c in dialer.all_selected(overdue_days={"min": 2, "max": 3})}
    assert two_to_three < ids("overdue") and two_to_three
    assert dialer.all_selected(overdue_days={"min": 30, "max": 60}) == []


def test_selections_page_in_id_order(dialer: Dialer) -> None:
    pages, after = [], None
    while True:
        page = dialer.select(overdue_days={"min": 1, "max": 3}, limit=15, after=after).json()
        pages.append([c["customer_id"] for c in page["customers"]])
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert [len(page) for page in pages] == [15, 15, 10]
    flat = [cid for page in pages for cid in page]
    assert flat == sorted(ids("overdue"))


def test_a_list_of_ids_answers_the_known_and_names_the_unknown(dialer: Dialer) -> None:
    known = sorted(ids("normal"))[:3]
    answer = dialer.select(customer_ids=[known[0], "C999999", known[1], known[2], "X1"]).json()
    assert [c["customer_id"] for c in answer["customers"]] == known
    assert answer["unknown_ids"] == ["C999999", "X1"] and answer["next_after"] is None
    assert all(c["reference"] is None for c in answer["customers"])


@pytest.mark.parametrize("body", [
    {}, {"due_in_days": 3, "overdue_days": {"min": 1, "max": 3}}, {"due_in_days": 31},
    {"overdue_days": {"min": 3, "max": 1}}, {"customer_ids": ["C100001", "C100001"]},
    {"customer_ids": ["C100001"], "after": "C100000"}, {"customer_ids": []},
    {"customer_ids": [f"C{n}" for n in range(2001)]}, {"due_in_days": 3, "limit": 0}, {"due_in_days": 3, "x": 1},
], ids=["nothing", "two-criteria", "too-far", "min-above-max", "duplicate", "after-with-ids", "empty",
        "too-many", "limit-0", "unknown-field"])
def test_a_malformed_selection_is_422(dialer: Dialer, body: dict[str, Any]) -> None:
    assert dialer.select(**body).status_code == 422


def test_contact_gives_the_number_fresh_facts_and_whether_the_customer_still_matches(dialer: Dialer) -> None:
    person = demo.customers_with_tag("overdue")[0]
    answer = dialer.http.post("/outbound/contact", json={
        "customer_id": person["customer_id"], "selection": {"overdue_days": {"min": 1, "max": 3}}}).json()
    selected = {c["customer_id"]: c for c in dialer.all_selected(overdue_days={"min": 1, "max": 3})}
    assert answer == {"customer_id": person["customer_id"], "phone": person["phone"], "timezone": "Asia/Shanghai",
                      "do_not_call": False, "marketing_opt_out": False, "selected": True,
                      "reference": selected[person["customer_id"]]["reference"]}
    bill = selected[person["customer_id"]]["reference"]
    # A due-date reminder's stage is over once the bill is overdue; the bill is still named.
    elsewhere = dialer.http.post("/outbound/contact", json={
        "customer_id": person["customer_id"], "selection": {"due_in_days": 3}}).json()
    assert (elsewhere["selected"], elsewhere["reference"]) == (False, bill)
    plain = dialer.http.post("/outbound/contact", json={"customer_id": person["customer_id"]}).json()
    assert (plain["selected"], plain["reference"]) == (True, bill)
    # Due in 3 days is still in the stage of "due in 5 days" (selected two days ago); not of "due today".
    soon = demo.customers_with_tag("due_soon")[0]["customer_id"]
    for criteria, expected in (({"due_in_days": 5}, True), ({"due_in_days": 3}, True), ({"due_in_days": 0}, False),
                               ({"overdue_days": {"min": 1, "max": 3}}, False)):
        answer = dialer.http.post("/outbound/contact", json={"customer_id": soon, "selection": criteria}).json()
        assert answer["selected"] is expected, criteria
    settled = demo.customers_with_tag("settled")[0]["customer_id"]
    answer = dialer.http.post("/outbound/contact", json={"customer_id": settled, "selection": {"due_in_days": 3}})
    assert (answer.json()["selected"], answer.json()["reference"]) == (False, None)
    unknown = dialer.http.post("/outbound/contact", json={"customer_id": "C999999"})
    assert unknown.status_code == 404 and unknown.json()["detail"]["code"] == "unknown_customer"
    flagged = demo.customers_with_tag("do_not_call")[0]
    facts = dialer.http.post("/outbound/contact", json={"customer_id": flagged["customer_id"]}).json()
    assert (facts["do_not_call"], facts["marketing_opt_out"]) == (True, True)


def test_contacted_days_ago_selects_whom_was_verified_that_day_in_their_own_chats_and_calls(dialer: Dialer) -> None:
    """A satisfaction callback's selection: the customers verified on that China date in a chat or
    a call of their own; the dialler's calls and failed checks are no contact. The reference is the
    contact's day; a newer contact makes the callback about it, not the old one."""
    chatted, called_by_us, failed, yesterday_caller = demo.customers_with_tag("normal")[1:5]

    def l1(person: dict[str, Any], channel: str, name: str | None = None) -> bool:
        answer = dialer.as_role["engine"].post("/verification/l1", json={
            "phone": person["phone"], "name": name or person["name"], "id_last4": person["id_last4"],
            "session_id": uuid.uuid4().hex, "channel": channel})
        assert answer.status_code == 200, answer.text
        return bool(answer.json()["verified"])

    assert l1(chatted, "chat") and l1(called_by_us, "outbound") and not l1(failed, "chat", name="王错名")
    yesterday = TODAY - timedelta(days=1)
    engine = create_engine(dialer.database_url)
    with Session(engine) as session, session.begin():  # yesterday's calls, as the risk API audited them
        for person, at in ((yesterday_caller, time(23, 59, 59)), (chatted, time(0, 0))):
            session.add(AuditEntry(at=datetime.combine(yesterday, at, tzinfo=CHINA_TZ), channel="voice",
                                   session_id=uuid.uuid4().hex, kind="verification_l1",
                                   customer_id=person["customer_id"], inputs={}, decision="verified", rules=[]))
    engine.dispose()

    today = dialer.all_selected(contacted_days_ago=0)
    assert [(c["customer_id"], c["reference"]) for c in today] == [(chatted["customer_id"], TODAY.isoformat())]
    before = dialer.all_selected(contacted_days_ago=1)
    assert sorted((c["customer_id"], c["reference"]) for c in before) == sorted(
        (person["customer_id"], yesterday.isoformat()) for person in (chatted, yesterday_caller))
    assert dialer.all_selected(contacted_days_ago=2) == []

    def contact(person: dict[str, Any], days_ago: int) -> tuple[bool, str | None]:
        answer = dialer.http.post("/outbound/contact", json={
            "customer_id": person["customer_id"], "selection": {"contacted_days_ago": days_ago}}).json()
        return answer["selected"], answer["reference"]

    assert contact(yesterday_caller, 1) == (True, yesterday.isoformat())
    assert contact(chatted, 1) == (False, TODAY.isoformat()), "today's contact is the one to ask about, tomorrow"
    assert contact(failed, 0) == (False, None)
    assert dialer.select(contacted_days_ago=8).status_code == 422
    assert dialer.select(contacted_days_ago=1, due_in_days=3).status_code == 422


def test_every_number_given_out_is_audited_masked(dialer: Dialer) -> None:
    person = demo.customers_with_tag("vip")[0]
    dialer.http.post("/outbound/contact", json={"customer_id": person["customer_id"]})
    entries = dialer.as_role["desk"].get("/audit", params={"customer_id": person["customer_id"]}).json()
    released = [e for e in entries if e["kind"] == "outbound_contact"]
    assert released and released[0]["channel"] == "outbound"
    assert released[0]["inputs"]["phone"] == f"{person['phone'][:3]}****{person['phone'][-4:]}"
    assert person["phone"] not in str(entries)


def test_do_not_call_sets_the_flag_for_every_later_selection_and_call(dialer: Dialer) -> None:
    person = demo.customers_with_tag("repayment_pending")[0]  # due tomorrow; no other test asserts on them
    answer = dialer.http.post("/outbound/do-not-call", json={
        "customer_id": person["customer_id"], "source": "conversation", "attempt_id": "due:C1:2026-03-13:1"})
    assert answer.json() == {"customer_id": person["customer_id"], "do_not_call": True}
    selected = {c["customer_id"]: c for c in dialer.all_selected(due_in_days=1)}
    assert selected[person["customer_id"]]["do_not_call"] is True
    assert dialer.http.post("/outbound/contact", json={"customer_id": person["customer_id"]}).json()["do_not_call"]
    summary = dialer.as_role["engine"].get(f"/customers/{person['customer_id']}").json()
    assert summary["do_not_call"] is True
    entries = dialer.as_role["desk"].get("/audit", params={"customer_id": person["customer_id"]}).json()
    (entry,) = [e for e in entries if e["kind"] == "do_not_call"]
    assert entry["inputs"] == {"source": "conversation", "attempt_id": "due:C1:2026-03-13:1"}
    for body in ({"customer_id": "C999999", "source": "agent"}, {"customer_id": "C100001", "source": "whim"}):
        assert dialer.http.post("/outbound/do-not-call", json=body).status_code in (404, 422)


def test_fuzzing_the_outbound_routes_finds_no_server_error(dialer: Dialer) -> None:
    schema = schemathesis.openapi.from_url(f"{dialer.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    outbound = [operation for operation in operations if operation.path.startswith("/outbound/")]
    assert len(outbound) == 3
    for operation in outbound:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @settings(max_examples=25, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(mode))
            def no_server_error(case: schemathesis.Case) -> None:
                response = case.call(base_url=dialer.base_url, headers={"Authorization": f"Bearer {TOKENS['dialer']}"})
                assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text}"

            no_server_error()
