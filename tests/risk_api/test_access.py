"""Authentication, customer lookup, error shapes and masking."""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from risk_api.db import SCHEMA_VERSION
from risk_api.masking import MaskingLogFilter, mask_text
from tests.risk_api.helpers import TOKEN, Api


def test_health_needs_no_token_and_reports_schema(api: Api) -> None:
    response = httpx.get(f"{api.base_url}/health")
    assert response.json() == {"status": "ok", "schema_version": SCHEMA_VERSION}


def test_requests_without_or_with_wrong_token_get_401(api: Api) -> None:
    person = api.take_clean()
    url = f"{api.base_url}/customers/{person['customer_id']}"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"]["code"] == "unauthorized"
    assert api.http.get(url).status_code == 200


def test_unknown_customer_is_404_with_sayable_message(api: Api) -> None:
    for response in (api.http.get("/customers/C999999"),
                     api.http.post("/customers/lookup", json={"phone": "19911112222"})):
        assert response.status_code == 404
        detail = response.json()["detail"]
        assert detail["code"] == "unknown_customer"
        assert "没有查到" in detail["message"]


def test_lookup_by_phone_and_id_agree_and_mask(api: Api) -> None:
    person = api.take("elderly")
    by_phone = api.http.post("/customers/lookup", json={"phone": person["phone"]}).json()
    by_id = api.http.get(f"/customers/{person['customer_id']}").json()
    # An outbound call's customer comes by id: the number on file is the one the dialer called.
    dialled = api.http.post("/customers/lookup", json={"customer_id": person["customer_id"]}).json()
    assert by_phone == dialled == {**by_id, "phone": person["phone"]}
    for both_or_neither in ({}, {"phone": person["phone"], "customer_id": person["customer_id"]}):
        assert api.http.post("/customers/lookup", json=both_or_neither).status_code == 422
    assert by_id["tags"] == ["elderly"] and by_id["elderly"] is True and by_id["age"] >= 65
    assert by_id["salutation"] == person["salutation"]
    assert person["name"] not in by_id["masked_name"]


def test_malformed_input_is_422(api: Api) -> None:
    assert api.http.post("/customers/lookup", json={"phone": "12345"}).status_code == 422
    response = api.http.post("/verification/l1", json={"phone": "19900000001", "name": "x",
                                                       "id_last4": "12", "session_id": "s",
                                                       "channel": "fax"})
    assert response.status_code == 422
    fields = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert ("body", "id_last4") in fields and ("body", "channel") in fields


def test_reads_need_a_verified_session(api: Api) -> None:
    person = api.take_clean()
    path = f"/customers/{person['customer_id']}/limits"
    assert api.http.get(path).json()["detail"]["code"] == "verification_required"
    other = api.take_clean()
    foreign_session = api.verified(other, "L1")
    assert api.http.get(path, params={"session_id": foreign_session}).status_code == 403
    own = api.verified(person, "L1")
    assert api.http.get(path, params={"session_id": own}).status_code == 200


def test_audit_entries_and_responses_never_show_full_numbers(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person)
    decision = api.decide(person, session_id, "change_bank_card",
                          {"bank": "招商银行", "card_number": "6214000011112222"}).json()
    api.act(person, session_id, "change_bank_card", decision["decision_id"],
            {"bank": "招商银行", "card_number": "6214000011112222"})
    entries = api.desk.get("/audit", params={"customer_id": person["customer_id"]}).text
    assert {"verification_l1", "otp_sent", "verification_l2", "decision"} <= {
        entry["kind"] for entry in api.desk.get(
            "/audit", params={"customer_id": person["customer_id"]}).json()}
    for secret in (person["phone"], person["id_number"], "6214000011112222", person["name"]):
        assert secret not in entries
    assert "6214 **** **** 2222" in entries
    cards = api.read(person, session_id, "cards")
    assert "6214000011112222" not in str(cards)


def test_log_filter_masks_numbers_in_messages_and_args() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET %s from %s",
                               ("/customers/by-phone/19900000001", "000000199001011234"), None)
    MaskingLogFilter().filter(record)
    assert record.getMessage() == "GET /customers/by-phone/199****0001 from 000000********1234"
    assert mask_text("card 6222000012345678") == "card 6222 **** **** 5678"


def test_service_refuses_to_start_without_token() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "risk_api"], env=env, capture_output=True,
                          cwd=Path(__file__).resolve().parents[2],
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "RISK_API_TOKEN is not set" in done.stderr


def _raw_request(api: Api, head: str, body: bytes = b"") -> bytes:
    """One request on a raw socket: the answer, however much of the body was sent."""
    host, port = api.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        connection.sendall(head.encode() + b"\r\n\r\n" + body)
        return connection.recv(4096)


def test_a_request_without_token_is_refused_before_its_body_is_read(api: Api) -> None:
    # A 100 MB body is announced and never sent: the answer comes at once, so nothing waited
    # for (or would have parsed) the body.
    answer = _raw_request(api, "POST /tickets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Content-Length: 100000000")
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert b"unauthorized" in answer


def test_an_oversized_body_is_413_declared_or_streamed(api: Api) -> None:
    head = (f"POST /tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\n")
    assert _raw_request(api, head + "Content-Length: 100000000").startswith(b"HTTP/1.1 413")

    def chunks() -> Iterator[bytes]:
        for _ in range(200):
            yield b" " * 1024
    streamed = api.http.post("/tickets", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert streamed.json()["detail"]["code"] == "too_large"
    session_id = api.verified(api.take_clean(), "L1")
    # The largest honest body still passes: a 1,000-character summary and a page of details.
    honest = api.http.post("/tickets", json={"kind": "complaint", "summary": "投" * 1000,
                                             "details": {"note": "诉" * 5000},
                                             "session_id": session_id, "channel": "chat"})
    assert honest.status_code == 200, honest.text


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422_not_stored(api: Api, number: str) -> None:
    session_id = api.verified(api.take_clean(), "L1")
    body = json.dumps({"kind": "complaint", "summary": "投诉", "session_id": session_id, "channel": "chat",
                       "details": {"amount": [1, float(number)]}})  # json writes NaN, Infinity as such
    answer = api.http.post("/tickets", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert "finite" in answer.text
    assert api.sql("SELECT count(*) FROM tickets WHERE session_id = :s", s=session_id)[0][0] == 0


def test_each_role_reaches_only_its_own_routes(api: Api) -> None:
    for path in ("/audit", "/tickets", "/handoffs", "/reviews"):
        assert api.http.get(path).status_code == 403, f"the engine has no business on {path}"
        assert api.desk.get(path).status_code == 200
    person = api.take_clean()
    assert api.desk.post("/customers/lookup", json={"phone": person["phone"]}).status_code == 403
    assert api.desk.get(f"/customers/{person['customer_id']}").status_code == 403
    assert api.desk.post("/verification/l1", json={}).status_code == 403


def test_the_handoff_lifecycle_routes_belong_to_the_desk_and_creating_one_to_the_engine(api: Api) -> None:
    created = api.http.post("/handoffs", json={
        "session_id": "role-test-session", "channel": "chat", "flow": "bill_inquiry", "reason": "转人工",
        "priority": "normal", "summary": "客户要求人工"})
    assert created.status_code == 200
    handoff_id = created.json()["handoff_id"]
    desk_routes = (
        ("GET", f"/handoffs/{handoff_id}", None),
        ("POST", "/handoffs/of-session", {"session_id": "role-test-session"}),
        ("POST", f"/handoffs/{handoff_id}/close", {"agent": "a", "disposition": "resolved"}),
        ("POST", f"/handoffs/{handoff_id}/customer-note", {"session_id": "role-test-session", "text": "在吗"}),
        ("PUT", "/agents/a/presence", {"state": "online"}),
        ("GET", "/agents/presence", None),
    )
    for method, path, body in desk_routes:
        for caller in (api.http, api.gateway):
            refused = caller.request(method, path, json=body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["detail"]["code"] == "forbidden"
    assert api.sql("SELECT customer_note FROM handoffs WHERE id = :i", i=handoff_id)[0].customer_note is None
    assert api.desk.post("/handoffs/of-session", json={"session_id": "role-test-session"}).status_code == 200
    assert api.desk.get("/agents/presence").status_code == 200
    forged = api.desk.post("/handoffs", json={
        "session_id": "role-test-session", "channel": "chat", "flow": "bill_inquiry", "reason": "转人工",
        "priority": "normal", "summary": "坐席伪造"})
    assert forged.status_code == 403
    assert api.sql("SELECT count(*) FROM handoffs WHERE session_id = 'role-test-session'")[0][0] == 1
