"""An outbound call asks who answered before anything else (flows/shared/right_party.yml): the
customer goes on to identity and the flow; a third party, a wrong number or an opt-out ends the
call with words that say nothing of the debt. The engine's actions run here without Rasa or an NLU
model, against a risk API on loopback (tests/unit/test_engine_identity.py's player)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.flow_engine import GENERATED_ACTIONS, FinishFlow
from flowspec.model import RIGHT_PARTY, repository_flowset
from flowspec.templates import render
from quality.rules import load_rules
from tests.unit import test_engine_identity as engine_tests
from voice.turns import Prompts

risk_api = engine_tests.risk_api  # the fixture: a risk API player on loopback
RiskApiPlayer = engine_tests.RiskApiPlayer
FLOWS = repository_flowset()
OUTBOUND_FLOWS = sorted(flow.id for flow in FLOWS.flows.values()
                        if "outbound" in flow.channels and "outbound_opening" in flow.raw)
CALLED = {"/customers/lookup": {"customer_id": "C100001", "salutation": "杨先生"}}
# The phone's own prompts an outbound call can play (no greeting or menu: the flow opens it).
OUTBOUND_PROMPTS = ("disclosure", "no_input", "no_match", "invalid_key", "goodbye", "dialogue_down", "agents_busy",
                    "callback_offer", "requeue_offer", "callback_booked", "callback_failed")
# Words that would tell a third party about the customer's debt or account: the quality
# inspection's list (ivr_config/quality/phrases.yaml), which flags them live on a real call.
DEBT_WORDS = re.compile("|".join(map(re.escape, load_rules().debt_detail)))


def call(slots: dict[str, Any], text: str = "", intent: str = "inform", confidence: float = 0.99) -> Tracker:
    message = {"text": text, "intent": {"name": intent, "confidence": confidence}}
    events = [{"event": "user", "text": text, "parse_data": message, "timestamp": 1.0}]
    return Tracker("call-1", {"channel": "outbound", "caller_number": "19900000001", **slots}, message, events,
                   False, None, {}, "action_listen")


def action(name: str) -> Any:
    return next(c for c in (*GENERATED_ACTIONS, FinishFlow) if c().name() == name)()


def run(name: str, tracker: Tracker) -> tuple[dict[str, Any], CollectingDispatcher]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action(name).run(dispatcher, tracker, {}))
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}, dispatcher


def custom(dispatcher: CollectingDispatcher, key: str) -> list[Any]:
    return [m["custom"][key] for m in dispatcher.messages if key in (m.get("custom") or {})]


@pytest.mark.parametrize("flow_id", OUTBOUND_FLOWS)
def test_an_outbound_call_first_asks_whether_the_customer_is_on_the_line(
        risk_api: type[RiskApiPlayer], flow_id: str) -> None:
    risk_api.post_answers = CALLED
    slots, dispatcher = run(f"validate_{flow_id}_form", call({}, f"/{flow_id}", flow_id))
    assert slots["requested_slot"] == RIGHT_PARTY
    assert not engine_tests.said(dispatcher), "the opening is the question's own prompt"
    _, dispatcher = run(f"action_ask_{RIGHT_PARTY}", call({"active_flow": flow_id, "reprompts": 0}))
    opening = engine_tests.said(dispatcher)
    assert opening.endswith("请问是杨先生本人吗？"), opening
    assert custom(dispatcher, "expect")[0]["slot"] == RIGHT_PARTY
    assert not any(path.startswith(("/customers/C", "/sessions/C")) for path in risk_api.seen), "no account read"


@pytest.mark.parametrize(("answer", "intent", "party", "next_slot"), [
    ("是的，我就是", "affirm", "confirmed", "customer_name"),
    ("1", "inform", "confirmed", "customer_name"),
    ("不是", "deny", "third_party", "recall_allowed"),
    ("不是，我是他老婆", "deny", "third_party", "recall_allowed"),
    ("他不在，出去了", "inform", "third_party", "recall_allowed"),
    ("2", "inform", "third_party", "recall_allowed"),
    ("你打错了吧", "deny", "wrong_number", None),
    ("我们这里没这个人", "inform", "wrong_number", None),
    ("别再打了", "deny", "opted_out", None),
    ("不是我，以后不要再打了", "deny", "opted_out", None),
])
def test_the_answer_to_the_opening_decides_who_is_on_the_line(
        risk_api: type[RiskApiPlayer], answer: str, intent: str, party: str, next_slot: str | None) -> None:
    slots, dispatcher = run("validate_overdue_reminder_form", call(
        {"active_flow": "overdue_reminder", "requested_slot": RIGHT_PARTY, "reprompts": 0}, answer, intent))
    assert slots[RIGHT_PARTY] == party and slots["requested_slot"] == next_slot
    assert "flow_exit" not in slots, "不是 answers the opening: it cancels nothing"
    assert custom(dispatcher, "party") == [party]


def test_an_answer_nobody_can_read_asks_again_with_the_short_question(risk_api: type[RiskApiPlayer]) -> None:
    risk_api.post_answers = CALLED
    slots, _ = run("validate_overdue_reminder_form", call(
        {"active_flow": "overdue_reminder", "requested_slot": RIGHT_PARTY, "reprompts": 0}, "你哪位"))
    assert slots["requested_slot"] == RIGHT_PARTY and slots["reprompts"] == 1
    _, dispatcher = run(f"action_ask_{RIGHT_PARTY}", call({"active_flow": "overdue_reminder", "reprompts": 1}))
    assert engine_tests.said(dispatcher) == "请问您是杨先生本人吗？是请按一，不是请按二。"


def test_before_the_customer_is_confirmed_no_other_flow_is_opened(risk_api: type[RiskApiPlayer]) -> None:
    slots, _ = run("validate_overdue_reminder_form", call(
        {"active_flow": "overdue_reminder", "requested_slot": RIGHT_PARTY, "reprompts": 0}, "我要查账单",
        "bill_inquiry"))
    assert "flow_exit" not in slots and slots["requested_slot"] == RIGHT_PARTY


@pytest.mark.parametrize(("answers", "outcome", "words"), [
    ({RIGHT_PARTY: "third_party", "recall_allowed": "agreed"}, "third_party", "谢谢您"),
    ({RIGHT_PARTY: "third_party", "recall_allowed": "refused"}, "third_party_refused", "不再打这个电话"),
    ({RIGHT_PARTY: "wrong_number"}, "wrong_number", "打错了"),
    ({RIGHT_PARTY: "opted_out"}, "opted_out", "不再给您打"),
])
def test_a_call_that_is_not_the_customers_ends_with_its_outcome_and_nothing_read(
        risk_api: type[RiskApiPlayer], answers: dict[str, str], outcome: str, words: str) -> None:
    slots, dispatcher = run("action_finish_flow", call({"active_flow": "overdue_reminder", **answers}))
    assert custom(dispatcher, "outcome") == [outcome]
    assert custom(dispatcher, "end_call") == [True], "the phone hangs up after the goodbye"
    assert RIGHT_PARTY not in slots, "the answer stays for the rest of the call"
    assert words in engine_tests.said(dispatcher)
    assert not DEBT_WORDS.search(engine_tests.said(dispatcher))
    assert not any(path.startswith("/customers/") for path in risk_api.seen), "nothing of the account is read"


def test_a_third_party_is_asked_whether_this_number_may_be_called_again(risk_api: type[RiskApiPlayer]) -> None:
    risk_api.post_answers = CALLED
    state = {"active_flow": "overdue_reminder", RIGHT_PARTY: "third_party", "requested_slot": "recall_allowed"}
    slots, _ = run("validate_overdue_reminder_form", call(state, "不方便，别打了", "deny"))
    assert slots["recall_allowed"] == "refused" and slots["requested_slot"] is None
    _, dispatcher = run("action_ask_recall_allowed", call({"active_flow": "overdue_reminder"}))
    assert "麻烦您转告杨先生方便时回电" in engine_tests.said(dispatcher)


def third_party_texts() -> list[tuple[str, str]]:
    """Every text someone who is not the customer can hear on an outbound call, before and after
    the opening's answer: openings, the check's questions and endings, what the engine says to an
    answer it cannot read, an aside, a cancel or a transfer, and the phone's own prompts. (The NLU's
    clarification is not heard while the check's question is open: the form takes every answer.)"""
    check = FLOWS.right_party
    texts = [(f"{flow_id}.outbound_opening", FLOWS.flows[flow_id].raw["outbound_opening"]["voice"])
             for flow_id in OUTBOUND_FLOWS]
    texts += [(f"right_party.slots.{name}", slot.prompt.voice) for name, slot in check.slots.items()]
    texts += [(f"right_party.responses.{key}", response.voice) for key, response in check.responses.items()]
    for key in ("not_understood_value", "cancelled", "handoff", "agents_offline", "queue_place",
                "service_unavailable", "default"):
        texts.append((f"responses.{key}", FLOWS.responses[key].voice))
        texts += [(f"{flow_id}.responses.{key}", FLOWS.flows[flow_id].responses[key].voice)
                  for flow_id in OUTBOUND_FLOWS if key in FLOWS.flows[flow_id].responses]
    texts += [(f"intents.{name}", intent.response.voice) for name, intent in FLOWS.shared_intents.items()
              if intent.response and name != "out_of_scope"]  # not an aside during the check
    prompts = Prompts()
    texts += [(f"voice prompts.{name}", getattr(prompts, name)) for name in OUTBOUND_PROMPTS]
    return texts


def test_nothing_a_third_party_can_hear_mentions_the_debt() -> None:
    context = {"customer": {"salutation": "杨先生"}, "queue": {"ahead": 2, "minutes": 3}, "when": "6月3日10点"}
    said = [(where, render(text, context, voice=True)) for where, text in third_party_texts()]
    assert len(said) > 20
    leaks = [(where, text) for where, text in said if DEBT_WORDS.search(text)]
    assert not leaks, leaks


def test_an_out_of_scope_question_before_the_check_gets_no_list_of_account_services(
        risk_api: type[RiskApiPlayer]) -> None:
    slots, dispatcher = run("validate_overdue_reminder_form", call(
        {"active_flow": "overdue_reminder", "requested_slot": RIGHT_PARTY, "reprompts": 0}, "今天天气怎么样",
        "out_of_scope"))
    assert not DEBT_WORDS.search(engine_tests.said(dispatcher)) and slots["requested_slot"] == RIGHT_PARTY


@pytest.mark.parametrize("answers", [
    {RIGHT_PARTY: "third_party", "recall_allowed": "agreed"},
    {RIGHT_PARTY: "wrong_number"},
    {RIGHT_PARTY: "opted_out"},
])
@pytest.mark.parametrize("next_flow", ["bill_inquiry", "overdue_reminder", "promise_to_pay"])
def test_whoever_is_not_the_customer_gets_no_other_flow_on_that_call(
        risk_api: type[RiskApiPlayer], answers: dict[str, str], next_flow: str) -> None:
    """After 不是本人 the call is over whatever is said next: no identity question that a family
    member could answer, no second chance to say 是 to the opening, nothing read."""
    outcome = FLOWS.right_party.outcome(answers)
    risk_api.post_answers = CALLED
    slots, _ = run(f"validate_{next_flow}_form", call(answers, f"/{next_flow}", next_flow))
    assert slots["requested_slot"] is None
    _, dispatcher = run("action_finish_flow", call({"active_flow": next_flow, **answers}))
    assert custom(dispatcher, "outcome") == [outcome] and custom(dispatcher, "end_call") == [True]
    assert not DEBT_WORDS.search(engine_tests.said(dispatcher))
    assert not any(path.startswith("/customers/C") for path in risk_api.seen), "nothing of the account is read"


def test_a_confirmed_customer_is_forgotten_when_the_reminder_hands_over_to_another_subject(
        risk_api: type[RiskApiPlayer]) -> None:
    """转人工, 算了 or another request: the subject the customer was confirmed for is over."""
    state = {"active_flow": "overdue_reminder", RIGHT_PARTY: "confirmed", "flow_exit": "switch:bill_inquiry"}
    slots, dispatcher = run("action_finish_flow", call(state))
    assert slots[RIGHT_PARTY] is None and slots["recall_allowed"] is None
    assert not custom(dispatcher, "end_call")
