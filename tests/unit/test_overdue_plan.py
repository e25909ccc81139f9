"""The overdue reminder's plan on an outbound call, through the flow engine's actions (no Rasa, no
NLU model) against the real risk API on loopback: 已经还了 is `paid` only when the risk API no
longer shows the bill overdue (else `claims_paid`); a date goes on into promise_to_pay, 还不上 into
installment_restructure; a confirmed right party is forgotten when the reminder ends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import create_engine, text

from bot.actions import conversation
from bot.actions.flow_engine import GENERATED_ACTIONS, FinishFlow
from flowspec.model import RECALL_ALLOWED, RIGHT_PARTY
from tests.risk_api import conftest as risk_api_tests
from tests.risk_api.helpers import TOKEN, Api

api = risk_api_tests.api  # the fixture: the real risk API on loopback (SQLite; PostgreSQL with its URL)

OUTBOUND = {"channel": "outbound", "active_flow": "overdue_reminder", RIGHT_PARTY: "confirmed"}


@pytest.fixture
def engine_risk_api(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The action server's risk API client pointed at the real one, with the engine's token."""
    monkeypatch.setenv("RISK_API_URL", api.base_url)
    monkeypatch.setenv("RISK_API_TOKEN", TOKEN)
    conversation.risk_client.cache_clear()
    yield api
    conversation.risk_client.cache_clear()


def verified_call(api: Api, person: dict[str, Any]) -> str:
    """The call's conversation id, verified L1 for `person` as the identity step would."""
    session_id = f"call-{person['customer_id']}-{api.clock.now().timestamp()}"
    assert api.l1(person, session_id, channel="outbound").json()["verified"] is True
    return session_id


def call(session_id: str, slots: dict[str, Any], said: str = "", intent: str = "inform") -> Tracker:
    message = {"text": said, "intent": {"name": intent, "confidence": 0.99}}
    events = [{"event": "user", "text": said, "parse_data": message, "timestamp": 1.0}]
    return Tracker(session_id, slots, message, events, False, None, {}, "action_listen")


async def run(action: Any, tracker: Tracker) -> tuple[list[dict[str, Any]], CollectingDispatcher]:
    """One action, in the test's event loop (the action server's risk API client keeps its connections)."""
    dispatcher = CollectingDispatcher()
    return await action.run(dispatcher, tracker, {}), dispatcher


def validator(flow_id: str) -> Any:
    return next(c for c in GENERATED_ACTIONS if c().name() == f"validate_{flow_id}_form")()


def signals(dispatcher: CollectingDispatcher) -> list[dict[str, Any]]:
    return [m["custom"] for m in dispatcher.messages if "outcome" in (m.get("custom") or {})]


def said(dispatcher: CollectingDispatcher) -> str:
    return " ".join(m["text"] for m in dispatcher.messages if m.get("text"))


def slot_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}


def pay_current_bill(api: Api, customer_id: str) -> None:
    """The customer pays in the APP while the call rings: the bill the reminder is about is paid."""
    engine = create_engine(api.database_url)
    try:
        with engine.begin() as connection:
            loan_ids = [row[0] for row in connection.execute(
                text("SELECT id FROM loans WHERE customer_id = :customer AND status = 'active'"),
                {"customer": customer_id})]
            assert loan_ids, "the overdue customer has an active loan"
            for loan_id in loan_ids:
                connection.execute(text(
                    "UPDATE installments SET status = 'paid', paid_on = due_date "
                    "WHERE loan_id = :loan AND status = 'unpaid' AND due_date < :today"),
                    {"loan": loan_id, "today": api.clock.now().date()})
    finally:
        engine.dispose()


@pytest.mark.parametrize(("answer", "plan"), [
    ("我已经还了啊", "already_paid"),
    ("昨天就还过了", "already_paid"),
    ("4", "already_paid"),
    ("这个月实在还不上", "installments"),
    ("现在还不上，下周发工资还", "promise"),
    ("过两天吧", "promise"),
    ("我现在就还", "pay_now"),
])
async def test_the_customer_s_answer_picks_the_plan(engine_risk_api: Api, answer: str, plan: str) -> None:
    person = engine_risk_api.take("overdue")
    session_id = verified_call(engine_risk_api, person)
    state = {**OUTBOUND, "customer_id": person["customer_id"], "verified_level": "L1", "requested_slot": "plan"}
    events, _ = await run(validator("overdue_reminder"), call(session_id, state, answer))
    slots = slot_events(events)
    assert slots["plan"] == plan and slots["requested_slot"] is None


async def test_already_paid_is_paid_only_once_the_risk_api_shows_it(engine_risk_api: Api) -> None:
    person = engine_risk_api.take("overdue")
    session_id = verified_call(engine_risk_api, person)
    state = {**OUTBOUND, "customer_id": person["customer_id"], "verified_level": "L1", "plan": "already_paid"}

    _, dispatcher = await run(FinishFlow(), call(session_id, state, "我已经还了"))
    assert signals(dispatcher) == [{"flow": "overdue_reminder", "outcome": "claims_paid"}]
    assert "还没有查到" in said(dispatcher)

    pay_current_bill(engine_risk_api, person["customer_id"])
    _, dispatcher = await run(FinishFlow(), call(session_id, state, "我已经还了"))
    assert signals(dispatcher) == [{"flow": "overdue_reminder", "outcome": "paid"}]
    assert "已经查到您这期的还款" in said(dispatcher)


@pytest.mark.parametrize(("plan", "outcome", "then"), [
    ("promise", "promise", "promise_to_pay"),
    ("installments", "installments", "installment_restructure"),
])
async def test_a_date_or_no_money_goes_on_into_the_flow_for_it(engine_risk_api: Api, plan: str, outcome: str,
                                                         then: str) -> None:
    person = engine_risk_api.take("overdue")
    session_id = verified_call(engine_risk_api, person)
    state = {**OUTBOUND, "customer_id": person["customer_id"], "verified_level": "L1", "plan": plan}
    events, dispatcher = await run(FinishFlow(), call(session_id, state, "明天还两千"))
    assert signals(dispatcher) == [{"flow": "overdue_reminder", "outcome": outcome, "then": then}]
    assert [e["name"] for e in events if e["event"] == "followup"] == [f"{then}_form"]
    slots = slot_events(events)
    assert slots[RIGHT_PARTY] is None and slots[RECALL_ALLOWED] is None, "the reminder's subject is over"
    assert slots["plan"] is None


async def test_the_promise_takes_the_date_and_amount_already_said(engine_risk_api: Api) -> None:
    """The answer that chose the plan (明天还两千) starts promise_to_pay: it is not asked again."""
    person = engine_risk_api.take("overdue")
    session_id = verified_call(engine_risk_api, person)
    state = {"channel": "outbound", "customer_id": person["customer_id"], "verified_level": "L1"}
    events, _ = await run(validator("promise_to_pay"), call(session_id, state, "明天还两千"))
    slots = slot_events(events)
    assert slots["date"] and slots["amount"] == 2000
    assert slots["requested_slot"] == "confirmed"


async def test_paying_now_ends_the_reminder_with_its_answer(engine_risk_api: Api) -> None:
    person = engine_risk_api.take("overdue")
    session_id = verified_call(engine_risk_api, person)
    state = {**OUTBOUND, "customer_id": person["customer_id"], "verified_level": "L1", "plan": "pay_now"}
    events, dispatcher = await run(FinishFlow(), call(session_id, state, "现在就还"))
    assert signals(dispatcher) == [{"flow": "overdue_reminder", "outcome": "answer"}]
    assert not [e for e in events if e["event"] == "followup"]
    assert slot_events(events)[RIGHT_PARTY] is None, "a later reminder on this call asks who is on the line again"
