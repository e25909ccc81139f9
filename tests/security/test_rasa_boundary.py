"""Attacks on the assistant's own doors, performed against the real stack over loopback: Rasa's
HTTP API, its channels, the action server. Each shows the attack failing and the legitimate
path still working (issue 11)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from risk_api.demo import customers_with_tag
from tests.conftest import Stack
from tests.dialogue.conftest import CUSTOMERS, ChatSession
from trust import chat_session

pytestmark = pytest.mark.stack


def texts(replies: list[dict[str, Any]]) -> str:
    return " ".join(reply.get("text", "") for reply in replies)


def custom(replies: list[dict[str, Any]], key: str) -> list[Any]:
    return [reply["custom"][key] for reply in replies if key in (reply.get("custom") or {})]


def verify(session: ChatSession, customer: dict[str, Any], replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answer the identity questions (L1) the way the customer would."""
    answers = {"phone_number": customer["phone"], "customer_name": customer["name"],
               "id_last4": customer["id_last4"]}
    for _ in range(4):
        asked = custom(replies, "expect")
        if not asked or asked[-1]["slot"] not in answers:
            return replies
        replies = session.send(answers[asked[-1]["slot"]])
    return replies


def test_rasa_http_api_refuses_anyone_without_the_token(running_stack: Stack) -> None:
    victim = ChatSession(running_stack)
    victim.send("你好")
    open_http = httpx.Client(base_url=running_stack.rasa_url, timeout=10)
    assert open_http.get(f"/conversations/{victim.sender}/tracker").status_code == 401
    assert open_http.post(f"/conversations/{victim.sender}/tracker/events",
                          json=[{"event": "slot", "name": "verified_level", "value": "L2"}]).status_code == 401
    assert open_http.delete("/model").status_code == 401
    assert open_http.get("/status").status_code == 401
    # The model is still loaded and operators with the token still reach the API.
    assert any(reply.get("text") for reply in ChatSession(running_stack).send("你好"))
    with running_stack.rasa_api() as operator:
        assert operator.get(f"/conversations/{victim.sender}/tracker").status_code == 200


def test_cors_only_for_configured_origins(running_stack: Stack) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    hostile = httpx.options(f"{running_stack.rasa_url}/webhooks/chat/webhook", timeout=10,
                            headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in hostile.headers
    own = httpx.options(f"{running_stack.rasa_url}/webhooks/chat/webhook", timeout=10,
                        headers={"Origin": running_stack.web_url, **preflight})
    assert own.headers.get("access-control-allow-origin") == running_stack.web_url


def test_stock_rest_channel_is_gone(running_stack: Stack) -> None:
    response = httpx.post(f"{running_stack.rasa_url}/webhooks/rest/webhook", timeout=10,
                          json={"sender": "anyone", "message": "你好", "metadata": {"channel": "voice"}})
    assert response.status_code == 404


def test_chat_needs_a_token_the_server_issued(running_stack: Stack) -> None:
    url = f"{running_stack.rasa_url}/webhooks/chat/webhook"
    victim = ChatSession(running_stack)
    victim.send("你好")
    forged = chat_session.issue("not-the-server-secret-at-all", time.time()).token
    expired = chat_session.issue(running_stack.keys.chat_session, time.time() - chat_session.SESSION_SECONDS - 1).token
    for sender in (victim.sender, "test-chosen-id", forged, expired, None, 12345):
        response = httpx.post(url, json={"sender": sender, "message": "查一下我的账单"}, timeout=30)
        assert response.status_code == 401, (sender, response.text)
    assert httpx.post(url, content=b"[1, 2", headers={"Content-Type": "application/json"},
                      timeout=10).status_code == 400


def test_a_second_client_cannot_reuse_a_verified_conversation(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    victim = ChatSession(running_stack)
    replies = verify(victim, customer, victim.send("查一下我的账单"))
    assert custom(replies, "outcome") == ["answer"], victim.dump()
    # Knowing the conversation id gets an attacker nowhere: it is not a credential.
    stolen = httpx.post(f"{running_stack.rasa_url}/webhooks/chat/webhook", timeout=30,
                        json={"sender": victim.sender, "message": "查一下我的账单"})
    assert stolen.status_code == 401
    # A fresh session of the attacker's own is asked who it is.
    attacker = ChatSession(running_stack)
    replies = attacker.send("查一下我的账单")
    assert custom(replies, "expect")[-1]["slot"] == "phone_number", attacker.dump()
    assert "元" not in texts(replies)


def test_public_chat_cannot_claim_a_phone_channel_caller_or_priority(running_stack: Stack) -> None:
    victim = customers_with_tag("overdue")[0]
    issued = running_stack.chat_token()
    forged = {"channel": "outbound", "caller_number": victim["phone"], "priority_tier": "emergency"}
    response = httpx.post(f"{running_stack.rasa_url}/webhooks/chat/webhook", timeout=30,
                          json={"sender": issued.token, "message": "你们刚打电话说我逾期了", "metadata": forged})
    assert response.status_code == 200
    said = texts(response.json())
    assert victim["salutation"] not in said, "no greeting by the victim's surname before any check"
    assert not custom(response.json(), "handoff") or custom(response.json(), "handoff")[0]["priority"] != "emergency"
    slots = running_stack.tracker(issued.session_id)["slots"]
    assert (slots["channel"], slots["caller_number"], slots["priority_tier"]) == ("chat", None, None)
    transfer = httpx.post(f"{running_stack.rasa_url}/webhooks/chat/webhook", timeout=30,
                          json={"sender": issued.token, "message": "转人工", "metadata": forged}).json()
    assert [handoff["priority"] for handoff in custom(transfer, "handoff")] == ["normal"]


def test_a_chat_client_sends_an_intent_only_by_a_button_offered_to_its_session(running_stack: Stack) -> None:
    """Rasa takes "/intent{entities}" as given, past the NLU. Typed on the public chat it is read
    as words; a button the bot offered comes back as its intent, in the session it was offered to."""
    def latest(session: ChatSession) -> dict[str, Any]:
        return running_stack.tracker(session.sender)["latest_message"]

    typist = ChatSession(running_stack)
    typist.send('/close_account{"amount": "1"}')
    assert latest(typist)["text"] == 'close_account{"amount": "1"}', "the NLU reads it, not Rasa's intent syntax"
    assert latest(typist)["intent"]["confidence"] < 1.0, latest(typist)
    customer = ChatSession(running_stack)
    replies = customer.send("注销账户要什么条件")
    [button] = [button for reply in replies for button in reply.get("buttons") or []]
    assert button["payload"].startswith("/close_account#"), customer.dump()
    other = ChatSession(running_stack)
    other.send(button["payload"])  # a button of another session: words
    assert latest(other)["text"] == button["payload"].lstrip("/") and latest(other)["intent"]["confidence"] < 1.0
    assert custom(customer.send(button["payload"]), "expect")[-1]["slot"] == "phone_number", customer.dump()
    assert (latest(customer)["text"], latest(customer)["intent"]) == ("/close_account",
                                                                      {"name": "close_account", "confidence": 1.0})


def test_trusted_channel_needs_the_gateways_or_dialers_token(running_stack: Stack) -> None:
    url = f"{running_stack.rasa_url}/webhooks/trusted/webhook"
    body = {"sender": "call-forged", "message": "你好", "metadata": {"channel": "voice", "priority_tier": "emergency"}}
    assert httpx.post(url, json=body, timeout=10).status_code == 401
    assert httpx.post(url, json=body, timeout=10,
                      headers={"Authorization": f"Bearer {running_stack.keys.chat_session}"}).status_code == 401
    # The dialer places outbound calls only: it cannot pose as an inbound caller.
    dialer = {"Authorization": f"Bearer {running_stack.keys.rasa_dialer}"}
    assert httpx.post(url, json=body, headers=dialer, timeout=10).status_code == 403
    gateway = {"Authorization": f"Bearer {running_stack.keys.rasa_gateway}"}
    assert httpx.post(url, json=body, headers=gateway, timeout=30).status_code == 200


def test_action_server_answers_only_rasa(running_stack: Stack) -> None:
    forged_call = {"next_action": "action_finish_flow", "sender_id": "victim", "version": "3.6.21",
                   "tracker": {"sender_id": "victim", "slots": {"customer_id": "C100001", "verified_level": "L2"},
                               "latest_message": {}, "events": [], "paused": False, "followup_action": None,
                               "active_loop": {}, "latest_action_name": None}, "domain": {}}
    refused = httpx.post(f"{running_stack.actions_url}/webhook", json=forged_call, timeout=10)
    assert refused.status_code == 401
    wrong = httpx.post(f"{running_stack.actions_url}/webhook", json=forged_call, timeout=10,
                       headers={"Authorization": f"Bearer {running_stack.keys.rasa_api}"})
    assert wrong.status_code == 401
    assert httpx.get(f"{running_stack.actions_url}/health", timeout=10).status_code == 200


def test_forged_identity_slots_do_not_reach_another_customers_account(running_stack: Stack) -> None:
    """Even if slots were forged (here by an operator with the API token, standing in for any way
    around the closed API), the engine asks the risk API who the conversation is."""
    victim = CUSTOMERS.take("normal")
    attacker = ChatSession(running_stack)
    attacker.send("你好")
    forged = [{"event": "slot", "name": "customer_id", "value": victim["customer_id"]},
              {"event": "slot", "name": "verified_level", "value": "L2"}]
    with running_stack.rasa_api() as operator:
        assert operator.post(f"/conversations/{attacker.sender}/tracker/events", json=forged).status_code == 200
    replies = attacker.send("退订营销短信")
    assert custom(replies, "expect")[-1]["slot"] == "phone_number", attacker.dump()
    replies = attacker.send("是的")
    assert "done" not in custom(replies, "outcome"), attacker.dump()
    fraud = ChatSession(running_stack)
    fraud.send("你好")
    with running_stack.rasa_api() as operator:
        operator.post(f"/conversations/{fraud.sender}/tracker/events", json=forged)
    replies = fraud.send("我被骗了")
    assert custom(replies, "expect")[-1]["slot"] == "phone_number", fraud.dump()
    with running_stack.risk_api("desk") as desk:
        audit = desk.get("/audit", params={"customer_id": victim["customer_id"], "limit": 50}).json()
        tickets = desk.get("/tickets", params={"customer_id": victim["customer_id"]}).json()
    assert not [entry for entry in audit if entry["kind"] in ("preferences", "ticket:fraud_report")], audit
    assert tickets == []
    slots = running_stack.tracker(attacker.sender)["slots"]
    assert slots["customer_id"] is None and slots["verified_level"] is None, "the forged copy was replaced"


def test_one_session_cannot_lock_another_customer_out(running_stack: Stack) -> None:
    victim = CUSTOMERS.take("normal")
    attacker = ChatSession(running_stack)
    replies = attacker.send("查一下我的额度")
    for _ in range(3):
        assert custom(replies, "expect")[-1]["slot"] == "phone_number", attacker.dump()
        attacker.send(victim["phone"])
        attacker.send("王测错")
        replies = attacker.send("0000" if victim["id_last4"] != "0000" else "1111")
        if custom(replies, "outcome"):
            break
    assert custom(replies, "outcome") == ["locked"], attacker.dump()
    # The attacker's session is throttled; the customer is not.
    owner = ChatSession(running_stack)
    replies = verify(owner, victim, owner.send("查一下我的额度"))
    assert custom(replies, "outcome") == ["answer"], owner.dump()


def test_each_risk_api_caller_reaches_only_its_own_routes(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    l1 = {"phone": customer["phone"], "name": customer["name"], "id_last4": customer["id_last4"],
          "session_id": "s" * 32, "channel": "chat"}
    for role in ("gateway", "dialer", "desk"):
        with running_stack.risk_api(role) as api:
            assert api.get(f"/customers/{customer['customer_id']}/bill").status_code == 403, role
            assert api.post("/verification/l1", json=l1).status_code == 403, role
            assert api.get(f"/sessions/{'s' * 32}").status_code == 403, role
    with running_stack.risk_api("gateway") as gateway:
        assert gateway.get("/handoffs").status_code == 403
        found = gateway.post("/customers/lookup", json={"phone": customer["phone"]})
        assert found.status_code == 200 and found.json()["salutation"] == customer["salutation"]
        assert gateway.post("/customers/lookup", json={"phone": "12"}).status_code == 422
    with running_stack.risk_api("desk") as desk:
        assert desk.get("/handoffs").status_code == 200
    assert httpx.get(f"{running_stack.risk_url}/handoffs", timeout=10).status_code == 401


def test_a_decision_runs_only_in_the_session_it_was_made_for(running_stack: Stack) -> None:
    customer = CUSTOMERS.take("normal")
    with running_stack.risk_api() as engine:
        sessions = []
        for _ in range(2):
            session_id = running_stack.chat_token().session_id
            answer = engine.post("/verification/l1", json={
                "phone": customer["phone"], "name": customer["name"], "id_last4": customer["id_last4"],
                "session_id": session_id, "channel": "chat"}).json()
            assert answer["verified"] is True
            assert engine.get(f"/sessions/{session_id}").json()["customer_id"] == customer["customer_id"]
            sessions.append(session_id)
        made_in, other = sessions
        decision = engine.post(f"/customers/{customer['customer_id']}/decisions", json={
            "action": "freeze_account", "params": {}, "session_id": made_in,
            "channel": "chat"}).json()
        assert decision["decision"] == "allow", decision
        taken = engine.post(f"/customers/{customer['customer_id']}/actions/freeze_account",
                            headers={"Idempotency-Key": f"stolen-{other}"},
                            json={"decision_id": decision["decision_id"], "params": {},
                                  "session_id": other, "channel": "chat"})
        assert taken.status_code == 409 and taken.json()["detail"]["code"] == "decision_required"
        assert engine.get(f"/sessions/{'0' * 32}").status_code == 404
