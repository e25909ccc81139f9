"""Account actions: decisions required, idempotency, serialisation, refusals and reviews."""
from __future__ import annotations

import threading
import uuid

import httpx

from tests.risk_api.helpers import TOKEN, Api

CONCURRENT_TIMEOUT_S = 60


def payoffs(api: Api, customer_id: str) -> int:
    ((count,),) = api.sql("SELECT count(*) FROM ledger_entries WHERE customer_id = :c "
                          "AND kind = 'early_repayment'", c=customer_id)
    return int(count)


def test_action_needs_an_allow_decision_for_the_same_thing(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person)
    bogus = api.act(person, session_id, "change_auto_debit", "D-none", {"enabled": False})
    assert bogus.status_code == 409 and bogus.json()["detail"]["code"] == "decision_required"
    allow = api.decide(person, session_id, "defer_repayment", {"days": 2}).json()
    other_action = api.act(person, session_id, "restructure", allow["decision_id"],
                           {"periods": 3})
    assert other_action.status_code == 409
    other_params = api.act(person, session_id, "defer_repayment", allow["decision_id"],
                           {"days": 5})
    assert other_params.status_code == 409
    done = api.act(person, session_id, "defer_repayment", allow["decision_id"], {"days": "2"})
    assert done.json()["status"] == "done"
    reused = api.act(person, session_id, "defer_repayment", allow["decision_id"], {"days": 2})
    assert reused.status_code == 409
    denied = api.take("frozen")
    denied_session = api.verified(denied)
    deny = api.decide(denied, denied_session, "early_repayment").json()
    refused = api.act(denied, denied_session, "early_repayment", deny["decision_id"])
    assert refused.status_code == 409 and payoffs(api, denied["customer_id"]) == 0


def test_replay_returns_first_result_and_moves_money_once(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person)
    quote = api.read(person, session_id, "payoff_quote")
    allow = api.decide(person, session_id, "early_repayment").json()
    key = uuid.uuid4().hex
    first = api.act(person, session_id, "early_repayment", allow["decision_id"], key=key)
    replay = api.act(person, session_id, "early_repayment", allow["decision_id"], key=key)
    assert first.status_code == replay.status_code == 200
    assert first.json() == replay.json()
    assert first.json()["status"] == "done"
    assert first.json()["result"]["paid_amount"] == quote["total"]
    assert payoffs(api, person["customer_id"]) == 1
    conflict = api.act(person, session_id, "early_repayment", allow["decision_id"],
                       {"unexpected": 1}, key=key)
    assert conflict.status_code == 409
    assert conflict.json()["detail"]["code"] == "idempotency_conflict"
    assert api.read(person, session_id, "payoff_quote")["has_active_loan"] is False


def _post_concurrently(requests: list[tuple[str, dict, dict]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(requests))
    responses: list[httpx.Response | None] = [None] * len(requests)

    def send(index: int, url: str, headers: dict, body: dict) -> None:
        with httpx.Client(timeout=CONCURRENT_TIMEOUT_S) as client:
            barrier.wait(timeout=CONCURRENT_TIMEOUT_S)
            responses[index] = client.post(url, headers=headers, json=body)

    threads = [threading.Thread(target=send, args=(i, *request))
               for i, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=CONCURRENT_TIMEOUT_S)
    assert all(response is not None for response in responses), "a request hung"
    return [response for response in responses if response is not None]


def test_two_concurrent_payoffs_give_one_payoff(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person)
    url = f"{api.base_url}/customers/{person['customer_id']}/actions/early_repayment"
    requests = []
    for _ in range(2):
        allow = api.decide(person, session_id, "early_repayment").json()
        assert allow["decision"] == "allow"
        requests.append((url, {"Authorization": f"Bearer {TOKEN}",
                               "Idempotency-Key": uuid.uuid4().hex},
                         {"decision_id": allow["decision_id"], "params": {},
                          "session_id": session_id, "channel": "voice"}))
    outcomes = sorted(r.json()["status"] for r in _post_concurrently(requests))
    assert outcomes == ["done", "refused"]
    assert payoffs(api, person["customer_id"]) == 1


def test_concurrent_replays_of_one_key_pay_once(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person)
    allow = api.decide(person, session_id, "early_repayment").json()
    url = f"{api.base_url}/customers/{person['customer_id']}/actions/early_repayment"
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": uuid.uuid4().hex}
    body = {"decision_id": allow["decision_id"], "params": {}, "session_id": session_id,
            "channel": "chat"}
    responses = _post_concurrently([(url, headers, body)] * 3)
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len({r.text for r in responses}) == 1
    assert payoffs(api, person["customer_id"]) == 1


def test_business_refusals(api: Api) -> None:
    single = api.take("single_card")
    session_id = api.verified(single)
    tail = api.read(single, session_id, "cards")["repayment_card_masked"][-4:]
    unbind = api.decide_and_act(single, session_id, "unbind_card", {"card_tail": tail}).json()
    assert unbind["status"] == "refused" and "唯一" in unbind["message"]
    assert api.read(single, session_id, "cards")["count"] == 1
    person = api.take_clean()
    session_id = api.verified(person)
    for action, params, words in (
        ("close_account", {}, "未结清"),
        ("cancel_loan", {}, "已经放款"),
        ("issue_certificate", {"delivery": "app"}, "未结清"),
        ("partial_prepayment", {"amount": 49999}, "提前结清"),
    ):
        answer = api.decide_and_act(person, session_id, action, params).json()
        assert answer["status"] == "refused" and words in answer["message"], action
    assert api.read(person, session_id, "payoff_quote")["has_active_loan"] is True


def test_persona_outcomes_for_settled_and_reviewing(api: Api) -> None:
    settled = api.take("settled")
    session_id = api.verified(settled)
    certificate = api.decide_and_act(settled, session_id, "issue_certificate",
                                     {"delivery": "email"}).json()
    assert certificate["status"] == "done" and certificate["result"]["certificate_no"]
    assert "@example.com" in certificate["result"]["delivery_masked"]
    reviewing = api.take("loan_reviewing")
    session_id = api.verified(reviewing)
    cancelled = api.decide_and_act(reviewing, session_id, "cancel_loan").json()
    assert cancelled["status"] == "done"
    assert api.read(reviewing, session_id, "loan_application")["status"] == "cancelled"


def test_account_changes_show_in_the_reads(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person)
    before = api.read(person, session_id, "bill")
    cards_before = api.read(person, session_id, "cards")["count"]
    deferred = api.decide_and_act(person, session_id, "defer_repayment", {"days": 3}).json()
    assert deferred["result"]["old_due_date"] == before["due_date"]
    assert api.read(person, session_id, "bill")["due_date"] == deferred["result"][
        "new_due_date"]
    principal = api.read(person, session_id, "payoff_quote")["principal"]
    paid = api.decide_and_act(person, session_id, "partial_prepayment",
                              {"amount": 1000}).json()
    assert paid["result"]["remaining_principal"] == round(principal - 1000, 2)
    assert api.read(person, session_id, "payoff_quote")["principal"] == round(
        principal - 1000, 2)
    card = api.decide_and_act(person, session_id, "change_bank_card",
                              {"bank": "中国银行", "card_number": "6216000055554444"}).json()
    assert card["result"]["card_masked"] == "6216 **** **** 4444"
    cards = api.read(person, session_id, "cards")
    assert cards["repayment_card_masked"] == "6216 **** **** 4444" and cards["count"] == cards_before + 1


def test_review_items_wait_for_an_agent(api: Api) -> None:
    person = api.take("recent_phone_change")
    session_id = api.verified(person)
    params = {"bank": "交通银行", "card_number": "6225000077776666"}
    review = api.decide(person, session_id, "change_bank_card", params).json()
    pending = api.act(person, session_id, "change_bank_card", review["decision_id"],
                      params).json()
    assert pending["status"] == "pending_review"
    assert pending["result"]["review_id"] == review["review_id"]
    assert api.read(person, session_id, "cards")["repayment_card_masked"] != (
        "6225 **** **** 6666")
    listed = [item for item in api.desk.get("/reviews", params={"status": "pending"}).json()
              if item["review_id"] == review["review_id"]]
    assert listed and listed[0]["params"]["card_number"] == "6225 **** **** 6666"
    path = f"/reviews/{review['review_id']}/decision"
    approved = api.desk.post(path, json={"approve": True, "agent": "agent-7", "note": "核实"})
    assert approved.json()["status"] == "approved"
    assert approved.json()["result"]["status"] == "done"
    assert api.read(person, session_id, "cards")["repayment_card_masked"] == (
        "6225 **** **** 6666")
    again = api.desk.post(path, json={"approve": False, "agent": "agent-8"})
    assert again.status_code == 409


def test_rejected_review_changes_nothing(api: Api) -> None:
    person = api.take("multi_lender")
    session_id = api.verified(person)
    limit_before = api.read(person, session_id, "limits")["total"]
    review = api.decide(person, session_id, "limit_increase").json()
    assert review["decision"] == "review"
    rejected = api.desk.post(f"/reviews/{review['review_id']}/decision",
                             json={"approve": False, "agent": "agent-1", "note": "多头借贷"})
    assert rejected.json() == {"review_id": review["review_id"], "status": "rejected",
                               "result": None}
    assert api.read(person, session_id, "limits")["total"] == limit_before


def test_channel_session_ids_and_long_keys_are_accepted(api: Api) -> None:
    person = api.take_clean()
    session_id = f"+86{person['phone']}@voice-gw/{uuid.uuid4().hex}"
    assert api.l1(person, session_id).json()["verified"] is True
    allow = api.decide(person, session_id, "limit_increase").json()
    key = f"{session_id}:limit_increase_request:{'1' * 100}"
    done = api.act(person, session_id, "limit_increase", allow["decision_id"], key=key)
    assert done.status_code == 200 and done.json()["status"] == "done"
    assert api.act(person, session_id, "limit_increase", allow["decision_id"],
                   key=key).json() == done.json()
