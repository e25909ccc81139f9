"""L1 for keypad-only callers: the line the phone gateway vouched for plus the ID number's last 6
characters (rules.yaml `l1_methods.line_id6`), never a number from the engine or the caller."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from risk_api.app import create_app
from risk_api.clock import ShiftedClock
from risk_api.config import DEFAULT_RULES, Settings
from risk_api.demo import customers_with_tag
from risk_api.rules import RulesConfigError, load_rules
from tests.risk_api.helpers import GATEWAY_TOKEN, TOKEN, Api, new_session, serve


def vouch(gateway: httpx.Client, phone: str, session_id: str, channel: str = "voice") -> httpx.Response:
    return gateway.post("/verification/line", json={"session_id": session_id, "channel": channel, "phone": phone})


def l1_by_line(engine: httpx.Client, session_id: str, id_last6: str, channel: str = "voice") -> httpx.Response:
    return engine.post("/verification/l1/line", json={"session_id": session_id, "channel": channel,
                                                      "id_last6": id_last6})


def methods(engine: httpx.Client, session_id: str, channel: str = "voice") -> list[str]:
    response = engine.post("/verification/l1/methods", json={"session_id": session_id, "channel": channel})
    assert response.status_code == 200, response.text
    return list(response.json()["methods"])


def wrong(digits: str) -> str:
    return f"{(int(digits) + 1) % 10**6:06d}"


def refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and response.json()["detail"]["code"] == "verification_method_refused"


def test_a_keypad_caller_passes_l1_with_the_vouched_line_and_id_last6_then_l2_with_the_sms_code(api: Api) -> None:
    person = api.take_clean()
    session_id = new_session()
    assert methods(api.http, session_id) == ["phone_name_id4"], "no line vouched for yet"
    assert vouch(api.gateway, person["phone"], session_id).status_code == 200
    assert methods(api.http, session_id) == ["phone_name_id4", "line_id6"]
    answer = l1_by_line(api.http, session_id, person["id_number"][-6:]).json()
    assert answer == {"verified": True, "level": "L1", "customer_id": person["customer_id"],
                      "attempts_left": 3, "locked_until": None}
    assert api.http.get(f"/sessions/{session_id}").json()["level"] == "L1"
    assert api.send_otp(person, session_id).status_code == 200
    assert api.l2(person, session_id, api.last_code(person["customer_id"])).json()["level"] == "L2"
    audit = [entry for entry in api.desk.get("/audit", params={"customer_id": person["customer_id"]}).json()
             if entry["session_id"] == session_id]
    kinds = {entry["kind"]: entry for entry in audit}
    assert kinds["verification_l1"]["inputs"]["method"] == "line_id6"
    assert kinds["verification_l1"]["decision"] == "verified"
    assert kinds["line_vouched"]["channel"] == "voice"
    for secret in (person["phone"], person["id_number"][-6:], person["name"]):
        assert secret not in str(audit), "no number, ID digits or name in the audit in clear"


def test_l1_by_line_is_refused_when_no_gateway_vouched_for_the_number(api: Api) -> None:
    person = api.take_clean()
    digits = person["id_number"][-6:]
    never_vouched = new_session()
    assert refused(l1_by_line(api.http, never_vouched, digits))
    # The engine cannot name the number (a slot's, or what a caller said): the body has no such field.
    with_number = api.http.post("/verification/l1/line", json={
        "session_id": never_vouched, "channel": "voice", "id_last6": digits, "phone": person["phone"]})
    assert with_number.status_code == 422
    # Nobody but the phone gateway vouches for a line.
    for caller in (api.http, api.desk):
        answer = vouch(caller, person["phone"], never_vouched)
        assert answer.status_code == 403 and answer.json()["detail"]["code"] == "forbidden"
    assert refused(l1_by_line(api.http, never_vouched, digits))
    assert vouch(api.gateway, person["phone"], never_vouched, channel="chat").status_code == 422, "chats have no line"
    # A vouched line belongs to its own call, on its own channel, for a while.
    call = new_session()
    assert vouch(api.gateway, person["phone"], call).status_code == 200
    assert refused(l1_by_line(api.http, new_session(), digits))
    assert refused(l1_by_line(api.http, call, digits, channel="chat"))
    assert refused(l1_by_line(api.http, call, digits, channel="outbound"))
    api.clock.advance(2 * 3600 + 1)
    assert refused(l1_by_line(api.http, call, digits))
    assert methods(api.http, call) == ["phone_name_id4"]
    assert api.http.get(f"/sessions/{call}").status_code == 404, "nothing above verified anyone"


def test_wrong_id_digits_by_line_count_toward_the_thirty_minute_lock(api: Api) -> None:
    person = api.take("due_soon")
    digits = person["id_number"][-6:]
    session_id = new_session()
    vouch(api.gateway, person["phone"], session_id)
    answers = [l1_by_line(api.http, session_id, wrong(digits)).json() for _ in range(3)]
    assert [(a["verified"], a["attempts_left"]) for a in answers] == [(False, 2), (False, 1), (False, 0)]
    minutes = (datetime.fromisoformat(answers[-1]["locked_until"]) - api.clock.now()).total_seconds() / 60
    assert 29 < minutes <= 30
    for blocked in (l1_by_line(api.http, session_id, digits), api.l1(person, session_id, channel="voice")):
        assert blocked.status_code == 423 and blocked.json()["detail"]["code"] == "verification_locked"
    api.clock.advance(31 * 60)
    vouch(api.gateway, person["phone"], session_id)  # the call is long over: a new word from the gateway
    assert l1_by_line(api.http, session_id, digits).json()["verified"] is True


def test_a_line_on_no_ones_file_fails_like_wrong_digits(api: Api) -> None:
    person = api.take_clean()
    session_id = new_session()
    vouch(api.gateway, "19977776666", session_id)
    assert l1_by_line(api.http, session_id, person["id_number"][-6:]).json() == {
        "verified": False, "level": None, "customer_id": None, "attempts_left": 2, "locked_until": None}


@pytest.fixture
def rules_without_line(tmp_path: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    del raw["l1_methods"]["line_id6"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_l1_by_line_is_refused_when_the_rules_turn_it_off(tmp_path: Path, rules_without_line: Path) -> None:
    settings = Settings(token=TOKEN, role_tokens={"gateway": GATEWAY_TOKEN},
                        database_url=f"sqlite:///{tmp_path / 'risk_api.sqlite3'}",
                        sms_outbox=tmp_path / "sms_outbox.jsonl", rules_path=rules_without_line)
    person = customers_with_tag("normal")[0]  # a database of its own: any customer
    with serve(create_app(settings, clock=ShiftedClock())) as base_url:
        engine = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"})
        gateway = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"})
        with engine, gateway:
            session_id = new_session()
            assert vouch(gateway, person["phone"], session_id).status_code == 200
            assert methods(engine, session_id) == ["phone_name_id4"]
            assert refused(l1_by_line(engine, session_id, person["id_number"][-6:]))


def test_a_rules_file_may_not_allow_line_l1_on_channels_without_calls(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    raw["l1_methods"]["line_id6"] = ["voice", "chat"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RulesConfigError, match="line_id6"):
        load_rules(path)
