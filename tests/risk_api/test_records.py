"""Service records: tickets, promises, preferences, callbacks and hand-offs."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta

import httpx

from risk_api.clock import CHINA_TZ
from tests.risk_api.helpers import Api, new_session


def audited(**fields: object) -> dict:
    return {"session_id": new_session(), "channel": "voice", **fields}


def test_tickets_are_created_and_listed(api: Api) -> None:
    person = api.take_clean()
    # Naming a customer needs a session verified as that customer.
    forged = api.http.post("/tickets", json=audited(kind="bill_dispute", customer_id=person["customer_id"],
                                                    summary="x"))
    assert forged.status_code == 403
    created = api.http.post("/tickets", json=audited(
        session_id=api.verified(person, "L1"), kind="bill_dispute", customer_id=person["customer_id"],
        summary=f"客户对账单有异议，联系电话{person['phone']}", details={"period": 3})).json()
    assert created["kind"] == "bill_dispute" and created["status"] == "open"
    listed = api.desk.get("/tickets", params={"customer_id": person["customer_id"]}).json()
    assert [t["ticket_id"] for t in listed] == [created["ticket_id"]]
    assert person["phone"] not in listed[0]["summary"]
    stored = api.sql("SELECT summary, details FROM tickets WHERE id = :i", i=created["ticket_id"])
    assert person["phone"] not in str(stored), "masked at rest, not only when listed"
    anonymous = api.http.post("/tickets", json=audited(kind="complaint", summary="态度不好"))
    assert anonymous.status_code == 200
    unknown_kind = api.http.post("/tickets", json=audited(kind="lottery", summary="x"))
    assert unknown_kind.status_code == 422
    unknown_customer = api.http.post("/tickets", json=audited(
        kind="complaint", customer_id="C999999", summary="x"))
    assert unknown_customer.status_code == 404


def test_promises_within_seven_days_with_positive_amount(api: Api) -> None:
    person = api.take("overdue")
    path = f"/customers/{person['customer_id']}/promises"
    today = api.clock.now().date()
    unverified = api.http.post(path, json=audited(date=str(today + timedelta(days=1)), amount=100))
    assert unverified.status_code == 403, "a promise on another customer's account"
    session_id = api.verified(person, "L1")

    def verified(**fields: object) -> dict:
        return audited(session_id=session_id, **fields)

    ok = api.http.post(path, json=verified(date=str(today + timedelta(days=7)), amount=1500.5))
    assert ok.status_code == 200 and ok.json()["promise_id"]
    for body, code in (
        (verified(date=str(today + timedelta(days=8)), amount=100), "invalid_promise_date"),
        (verified(date=str(today - timedelta(days=1)), amount=100), "invalid_promise_date"),
        (verified(date=str(today), amount=0), "invalid_promise_amount"),
        (verified(date=str(today), amount=-5), "invalid_promise_amount"),
    ):
        refused = api.http.post(path, json=body)
        assert refused.status_code == 422
        assert refused.json()["detail"]["code"] == code
        assert "承诺还款" in refused.json()["detail"]["message"]


def test_marketing_opt_out_is_stored(api: Api) -> None:
    person = api.take_clean()
    path = f"/customers/{person['customer_id']}/preferences"
    assert api.http.post(path, json={"marketing_opt_out": True}).status_code == 403
    assert api.http.post(path, json=audited(marketing_opt_out=True)).status_code == 403
    answer = api.http.post(path, json=audited(marketing_opt_out=True, session_id=api.verified(person, "L1")))
    assert answer.json() == {"customer_id": person["customer_id"], "marketing_opt_out": True}
    summary = api.http.get(f"/customers/{person['customer_id']}").json()
    assert summary["marketing_opt_out"] is True


def test_callbacks_move_into_service_hours(api: Api) -> None:
    person = api.take_clean()
    tomorrow = api.clock.now().date() + timedelta(days=1)
    cases = {
        time(23, 30): datetime.combine(tomorrow + timedelta(days=1), time(9), CHINA_TZ),
        time(6, 0): datetime.combine(tomorrow, time(9), CHINA_TZ),
        time(14, 15): datetime.combine(tomorrow, time(14, 15), CHINA_TZ),
    }
    session_id = api.verified(person, "L1")
    for preferred, expected in cases.items():
        answer = api.http.post("/callbacks", json=audited(
            session_id=session_id, customer_id=person["customer_id"], phone=person["phone"],
            preferred_time=datetime.combine(tomorrow, preferred, CHINA_TZ).isoformat())).json()
        assert datetime.fromisoformat(answer["scheduled_for"]) == expected


def test_handoffs_wait_until_one_agent_accepts(api: Api) -> None:
    created = api.http.post("/handoffs", json=audited(
        flow="hardship_relief", reason="困难帮扶", priority="high", summary="客户失业，申请帮扶",
        customer_id=None, verified_level="L2")).json()
    waiting = api.desk.get("/handoffs", params={"status": "waiting"}).json()
    assert created["handoff_id"] in [h["handoff_id"] for h in waiting]
    path = f"/handoffs/{created['handoff_id']}/accept"
    accepted = api.desk.post(path, json={"agent": "agent-3"}).json()
    assert accepted["status"] == "accepted" and accepted["agent"] == "agent-3"
    assert api.desk.post(path, json={"agent": "agent-4"}).status_code == 409
    waiting = api.desk.get("/handoffs", params={"status": "waiting"}).json()
    assert created["handoff_id"] not in [h["handoff_id"] for h in waiting]


def waiting_handoff(api: Api, flow: str, priority: str = "normal", channel: str = "chat") -> str:
    created = api.http.post("/handoffs", json=audited(flow=flow, reason="转人工", priority=priority,
                                                      summary="客户要求人工", channel=channel))
    assert created.status_code == 200, created.text
    return str(created.json()["handoff_id"])


def test_the_desk_pages_and_filters_handoffs_most_urgent_then_longest_waiting(api: Api) -> None:
    flow = f"paging_{uuid.uuid4().hex[:8]}"  # this test's hand-overs only, whatever others left waiting
    kinds = {}
    for priority, channel in (("normal", "chat"), ("high", "voice"), ("normal", "outbound"), ("emergency", "voice"),
                              ("high", "chat"), ("normal", "voice"), ("emergency", "chat")):
        kinds[waiting_handoff(api, flow, priority, channel)] = (priority, channel)
        api.clock.advance(1)  # each one waits a second longer than the next
    queue = [handoff_id for rank in ("emergency", "high", "normal")
             for handoff_id, (priority, _) in kinds.items() if priority == rank]

    def listed(**params: object) -> tuple[list[str], int]:
        answer = api.desk.get("/handoffs", params={"flow": flow, **params})
        assert answer.status_code == 200, answer.text
        return [item["handoff_id"] for item in answer.json()], int(answer.headers["x-total-count"])

    assert listed() == (queue, 7)
    assert [listed(limit=3, offset=offset) for offset in (0, 3, 6, 9)] == [
        (queue[:3], 7), (queue[3:6], 7), (queue[6:], 7), ([], 7)]
    voice = [handoff_id for handoff_id in queue if kinds[handoff_id][1] == "voice"]
    assert listed(channel="voice") == (voice, 3)
    assert listed(channel="chat", priority="high") == ([h for h in queue if kinds[h] == ("high", "chat")], 1)
    assert listed(handoff_id=queue[4]) == ([queue[4]], 1)
    assert api.desk.post(f"/handoffs/{queue[0]}/accept", json={"agent": "agent-7"}).status_code == 200
    assert listed(status="waiting") == (queue[1:], 6)
    assert listed(status="accepted") == (queue[:1], 1)
    assert listed(flow="no_such_flow") == ([], 0)


def test_the_desk_list_refuses_filters_it_does_not_know(api: Api) -> None:
    for params in ({"channel": "fax"}, {"priority": "urgent"}, {"status": "ended"}, {"flow": "Bad-Flow"},
                   {"flow": "x" * 65}, {"offset": -1}, {"offset": "many"}, {"offset": 10**7}, {"limit": 0},
                   {"limit": 501}, {"handoff_id": "H-\x00"}, {"handoff_id": "H-" + "0" * 40}):
        refused = api.desk.get("/handoffs", params=params)
        assert refused.status_code == 422, (params, refused.text)


def test_two_agents_claiming_one_handoff_at_once_one_wins(api: Api) -> None:
    for _ in range(5):  # a lost update would have to slip through every round
        handoff_id = waiting_handoff(api, "bill_inquiry")
        together = threading.Barrier(2)

        def claim(agent: str, handoff_id: str = handoff_id, together: threading.Barrier = together) -> httpx.Response:
            with httpx.Client(base_url=api.base_url, headers=api.desk.headers, timeout=30) as desk:
                together.wait()
                return desk.post(f"/handoffs/{handoff_id}/accept", json={"agent": agent})

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(claim, ("agent-a", "agent-b")))
        assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]
        (won,) = [answer.json() for answer in answers if answer.status_code == 200]
        (lost,) = [answer.json() for answer in answers if answer.status_code == 409]
        assert lost["detail"]["code"] == "handoff_taken"
        (row,) = api.sql("SELECT status, agent FROM handoffs WHERE id = :i", i=handoff_id)
        assert (row.status, row.agent) == ("accepted", won["agent"])


def test_callbacks_understand_spoken_times(api: Api) -> None:
    person = api.take_clean()
    now = api.clock.now()
    tomorrow = now.date() + timedelta(days=1)
    cases = {
        "明天下午三点半": datetime.combine(tomorrow, time(15, 30), CHINA_TZ),
        "明天早上六点": datetime.combine(tomorrow, time(9), CHINA_TZ),
        "明天晚上十点": datetime.combine(tomorrow + timedelta(days=1), time(9), CHINA_TZ),
    }
    session_id = api.verified(person, "L1")
    for said, expected in cases.items():
        answer = api.http.post("/callbacks", json=audited(session_id=session_id, preferred_time=said))
        assert datetime.fromisoformat(answer.json()["scheduled_for"]) == expected, said
    anytime = api.http.post("/callbacks", json=audited(
        customer_id=None, phone=person["phone"], preferred_time="都可以"))
    scheduled = datetime.fromisoformat(anytime.json()["scheduled_for"])
    assert scheduled >= now.replace(second=0, microsecond=0)
    assert time(9) <= scheduled.timetz().replace(tzinfo=None) < time(21)


def test_the_gateway_books_a_callback_to_the_calling_number_and_nothing_else(api: Api) -> None:
    person = api.take_clean()
    booked = api.gateway.post("/callbacks", json=audited(phone=person["phone"], preferred_time="尽快"))
    assert booked.status_code == 200, booked.text
    (row,) = api.sql("SELECT customer_id, phone FROM callbacks WHERE id = :i", i=booked.json()["callback_id"])
    assert row.customer_id is None, "an unverified caller's callback is not filed on any customer"
    assert api.gateway.post("/callbacks", json=audited(preferred_time="尽快")).status_code == 422
    named = api.gateway.post("/callbacks", json=audited(phone=person["phone"], customer_id=person["customer_id"],
                                                        preferred_time="尽快"))
    assert named.status_code == 403
    assert api.gateway.post("/tickets", json=audited(kind="complaint", summary="x")).status_code == 403


def test_a_phone_handoff_leaves_the_waiting_list_when_a_queue_member_answers_or_the_caller_hangs_up(
        api: Api) -> None:
    answered, abandoned, chat = (api.http.post("/handoffs", json=audited(
        flow="bill_inquiry", reason="转人工", priority="normal", summary="客户要求人工", channel=channel)).json()
        for channel in ("voice", "voice", "chat"))
    connected = api.gateway.post(f"/handoffs/{answered['handoff_id']}/call-state",
                                 json={"state": "connected", "agent": "standin-agent"})
    assert connected.json()["status"] == "accepted" and connected.json()["agent"] == "standin-agent"
    gone = api.gateway.post(f"/handoffs/{abandoned['handoff_id']}/call-state", json={"state": "abandoned"})
    assert gone.json()["status"] == "abandoned"
    late = api.desk.post(f"/handoffs/{abandoned['handoff_id']}/accept", json={"agent": "agent-5"})
    assert late.status_code == 409 and late.json()["detail"]["code"] == "handoff_closed"
    waiting = {h["handoff_id"] for h in api.desk.get("/handoffs", params={"status": "waiting"}).json()}
    assert not waiting & {answered["handoff_id"], abandoned["handoff_id"]}
    again = api.gateway.post(f"/handoffs/{answered['handoff_id']}/call-state", json={"state": "abandoned"})
    assert again.status_code == 409
    # A chat hand-over is the desk's to accept, and only the gateway reports call states.
    assert api.gateway.post(f"/handoffs/{chat['handoff_id']}/call-state",
                            json={"state": "connected"}).status_code == 404
    assert api.http.post(f"/handoffs/{chat['handoff_id']}/call-state", json={"state": "connected"}).status_code == 403
