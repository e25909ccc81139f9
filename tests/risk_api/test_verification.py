"""L1/L2 verification: codes, expiry, attempts and the 30-minute lock."""
from __future__ import annotations

import json
from datetime import datetime

from tests.risk_api.helpers import Api, new_session


def test_l1_succeeds_and_failures_look_alike(api: Api) -> None:
    person = api.take_clean()
    ok = api.l1(person).json()
    assert ok == {"verified": True, "level": "L1", "customer_id": person["customer_id"],
                  "attempts_left": 3, "locked_until": None}
    wrong_name = api.l1(api.take_clean(), name="王测错").json()
    unknown_phone = api.l1(person, phone="19988887777").json()
    for answer in (wrong_name, unknown_phone):
        assert answer == {"verified": False, "level": None, "customer_id": None,
                          "attempts_left": 2, "locked_until": None}


def test_otp_needs_l1_and_is_stored_hashed(api: Api) -> None:
    person = api.take_clean()
    unverified = api.send_otp(person, new_session())
    assert unverified.status_code == 409
    assert unverified.json()["detail"]["code"] == "l1_required"
    session_id = new_session()
    api.l1(person, session_id)
    sent = api.send_otp(person, session_id).json()
    assert sent == {"sent": True, "masked_phone": person["phone"][:3] + "****"
                    + person["phone"][-4:], "expires_in_seconds": 300}
    code = api.last_code(person["customer_id"])
    assert len(code) == 6 and code.isdigit()
    (stored,) = api.sql("SELECT code_hash, salt FROM otp_codes WHERE customer_id = :c",
                        c=person["customer_id"])
    assert code not in stored.code_hash and len(stored.code_hash) == 64
    assert api.l2(person, session_id, code).json()["level"] == "L2"


def test_a_new_code_replaces_the_previous_one(api: Api) -> None:
    person = api.take_clean()
    session_id = new_session()
    api.l1(person, session_id)
    api.send_otp(person, session_id)
    first = api.last_code(person["customer_id"])
    api.send_otp(person, session_id)
    second = api.last_code(person["customer_id"])
    if first != second:
        assert api.l2(person, session_id, first).json()["verified"] is False
    assert api.l2(person, session_id, second).json()["verified"] is True


def test_code_expires_after_five_minutes(api: Api) -> None:
    person = api.take("vip")
    session_id, code = api.session_with_code(person)
    api.clock.advance(301)
    answer = api.l2(person, session_id, code).json()
    assert answer["verified"] is False and answer["attempts_left"] == 2
    api.send_otp(person, session_id)
    api.clock.advance(240)  # inside the lifetime of the new code
    assert api.l2(person, session_id, api.last_code(person["customer_id"])).json()["verified"]


def test_three_failures_lock_the_conversation_for_thirty_minutes(api: Api) -> None:
    person = api.take("due_soon")
    session_id, code = api.session_with_code(person)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    answers = [api.l2(person, session_id, wrong).json() for _ in range(3)]
    assert [a["attempts_left"] for a in answers] == [2, 1, 0]
    locked_until = datetime.fromisoformat(answers[-1]["locked_until"])
    minutes = (locked_until - api.clock.now()).total_seconds() / 60
    assert 29 < minutes <= 30
    for blocked in (api.l2(person, session_id, code), api.l1(person, session_id),
                    api.send_otp(person, session_id)):
        assert blocked.status_code == 423
        assert blocked.json()["detail"]["code"] == "verification_locked"
        assert blocked.json()["detail"]["locked_until"]
    # One conversation's failures do not lock the customer out of their own next call.
    assert api.l1(person, new_session()).json()["verified"] is True
    api.clock.advance(31 * 60)
    assert api.l1(person, session_id).json()["verified"] is True


def test_failures_across_conversations_lock_the_customer_and_tell_them_by_sms(api: Api) -> None:
    person = api.take("auto_debit_off")
    session_id = new_session()
    for left in (2, 1):
        assert api.l1(person, session_id, id_last4="999X").json()["attempts_left"] == left
    assert api.l1(person, session_id).json()["verified"] is True  # success resets the count
    answers = [api.l1(person, name="赵测错").json() for _ in range(5)]  # five conversations
    assert answers[-1]["attempts_left"] == 0 and answers[-1]["locked_until"]
    assert api.l1(person).status_code == 423, "the customer's own lock, whatever the conversation"
    notices = [json.loads(line) for line in api.outbox.read_text(encoding="utf-8").splitlines()]
    assert [n for n in notices if n["customer_id"] == person["customer_id"] and n["kind"] == "verification_locked"]


def test_session_expires_after_thirty_minutes(api: Api) -> None:
    person = api.take("hardship")
    session_id = api.verified(person, "L1")
    assert api.read(person, session_id, "profile")["customer_id"] == person["customer_id"]
    api.clock.advance(31 * 60)
    response = api.http.get(f"/customers/{person['customer_id']}/profile",
                            params={"session_id": session_id})
    assert response.status_code == 403


def test_codes_are_rate_limited_per_conversation_and_per_customer(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person, "L1")
    assert [api.send_otp(person, session_id).status_code for _ in range(3)] == [200, 200, 200]
    refused = api.send_otp(person, session_id)
    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert detail["code"] == "otp_rate_limited" and "频繁" in detail["message"]
    assert 0 < detail["retry_after_seconds"] <= 600
    sent = api.sql("SELECT count(*) FROM audit_entries WHERE customer_id = :c AND kind = 'otp_sent'",
                   c=person["customer_id"])[0][0]
    assert sent == 3, "a refused request sends no SMS"
    # Another conversation of the same customer: two more codes this hour, then no more.
    other = api.verified(person, "L1")
    assert [api.send_otp(person, other).status_code for _ in range(3)] == [200, 200, 429]
    api.clock.advance(11 * 60)  # the first conversation's window is over, the hour is not
    assert api.send_otp(person, session_id).status_code == 429
    api.clock.advance(50 * 60)  # an hour after the first code; the session has ended too
    assert api.send_otp(person, api.verified(person, "L1")).status_code == 200
