"""Authentication, customer lookup, error shapes and masking."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx

from risk_api.masking import MaskingLogFilter, mask_text
from tests.risk_api.helpers import Api


def test_health_needs_no_token_and_reports_schema(api: Api) -> None:
    response = httpx.get(f"{api.base_url}/health")
    assert response.json() == {"status": "ok", "schema_version": 1}


def test_requests_without_or_with_wrong_token_get_401(api: Api) -> None:
    person = api.take_clean()
    url = f"{api.base_url}/customers/{person['customer_id']}"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"]["code"] == "unauthorized"
    assert api.http.get(url).status_code == 200


def test_unknown_customer_is_404_with_sayable_message(api: Api) -> None:
    for path in ("/customers/C999999", "/customers/by-phone/19911112222"):
        response = api.http.get(path)
        assert response.status_code == 404
        detail = response.json()["detail"]
        assert detail["code"] == "unknown_customer"
        assert "没有查到" in detail["message"]


def test_lookup_by_phone_and_id_agree_and_mask(api: Api) -> None:
    person = api.take("elderly")
    by_phone = api.http.get(f"/customers/by-phone/{person['phone']}").json()
    by_id = api.http.get(f"/customers/{person['customer_id']}").json()
    assert by_phone == by_id
    assert by_id["tags"] == ["elderly"] and by_id["elderly"] is True and by_id["age"] >= 65
    assert by_id["salutation"] == person["salutation"]
    assert person["name"] not in by_id["masked_name"]


def test_malformed_input_is_422(api: Api) -> None:
    assert api.http.get("/customers/by-phone/12345").status_code == 422
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
    entries = api.http.get("/audit", params={"customer_id": person["customer_id"]}).text
    assert {"verification_l1", "otp_sent", "verification_l2", "decision"} <= {
        entry["kind"] for entry in api.http.get(
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
