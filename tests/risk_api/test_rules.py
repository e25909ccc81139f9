"""Each risk rule fires for the persona that has the condition and stays quiet otherwise."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from risk_api.config import DEFAULT_RULES
from risk_api.rules import RulesConfigError, load_rules
from tests.risk_api.helpers import Api

NEW_CARD = {"bank": "招商银行", "card_number": "6214000099998888"}
SANE_PARAMS = {
    "verify_identity": {}, "change_phone": {"new_phone": "19911110000"},
    "reset_password": {"kind": "login"},
    "update_profile": {"field": "address", "value": "演示市演示路1号"},
    "freeze_account": {"reason": "手机丢失"}, "unfreeze_account": {}, "close_account": {},
    "limit_increase": {}, "limit_decrease": {"new_limit": 10000}, "cancel_loan": {},
    "early_repayment": {}, "partial_prepayment": {"amount": 1000},
    "change_auto_debit": {"enabled": False}, "defer_repayment": {"days": 2},
    "restructure": {"periods": 6}, "change_bank_card": NEW_CARD,
    "unbind_card": {"card_tail": "0000"}, "issue_certificate": {"delivery": "app"},
    "issue_invoice": {"delivery": "email"},
}


def decision(api: Api, tag_or_person: str | dict, action: str, params: dict | None = None,
             **extra: object) -> dict:
    person = api.take(tag_or_person) if isinstance(tag_or_person, str) else tag_or_person
    session_id = api.verified(person)
    response = api.decide(person, session_id, action,
                          SANE_PARAMS[action] if params is None else params, **extra)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_normal_customer_is_allowed_every_action(api: Api) -> None:
    person = api.take("normal")
    session_id = api.verified(person)
    for action, params in SANE_PARAMS.items():
        answer = api.decide(person, session_id, action, params).json()
        assert (answer["decision"], answer["reasons"]) == ("allow", []), action


def test_frozen_account_is_denied_everything_but_freeze_and_unfreeze(api: Api) -> None:
    person = api.take("frozen")
    session_id = api.verified(person)
    for action, params in SANE_PARAMS.items():
        answer = api.decide(person, session_id, action, params).json()
        if action in ("freeze_account", "unfreeze_account"):
            assert answer["decision"] == "allow", action
        else:
            assert answer["decision"] == "deny" and answer["reasons"] == ["account_frozen"]
            assert "冻结" in answer["explanation"]


def test_unfreeze_after_fraud_freeze_is_denied(api: Api) -> None:
    answer = decision(api, "frozen_fraud", "unfreeze_account")
    assert answer["decision"] == "deny" and "frozen_for_fraud" in answer["reasons"]


def test_frozen_by_customer_can_unfreeze_for_real(api: Api) -> None:
    person = api.take("frozen")
    session_id = api.verified(person)
    done = api.decide_and_act(person, session_id, "unfreeze_account").json()
    assert done["status"] == "done" and done["result"]["unfrozen_at"]
    assert api.decide(person, session_id, "early_repayment").json()["decision"] == "allow"


def test_recent_device_change_steps_up_until_a_fresh_code(api: Api) -> None:
    person = api.take("recent_device_change")
    session_id = api.verified(person)
    first = api.decide(person, session_id, "change_bank_card", NEW_CARD).json()
    assert first["decision"] == "step_up" and first["reasons"] == ["recent_device_change"]
    api.send_otp(person, session_id)
    api.l2(person, session_id, api.last_code(person["customer_id"]))
    again = api.decide(person, session_id, "change_bank_card", NEW_CARD).json()
    assert again["decision"] == "allow"
    quiet = decision(api, api.take_clean(), "change_bank_card")
    assert quiet["decision"] == "allow"


def test_recent_phone_change_sends_phone_and_card_changes_to_review(api: Api) -> None:
    person = api.take("recent_phone_change")
    session_id = api.verified(person)
    for action in ("change_phone", "change_bank_card"):
        answer = api.decide(person, session_id, action, SANE_PARAMS[action]).json()
        assert answer["decision"] == "review" and "recent_phone_change" in answer["reasons"]
        assert answer["review_id"]
    pending = {item["review_id"] for item in api.desk.get(
        "/reviews", params={"status": "pending"}).json()}
    assert answer["review_id"] in pending
    assert api.decide(person, session_id, "change_auto_debit",
                      {"enabled": False}).json()["decision"] == "allow"


def test_several_identities_on_one_device_go_to_review(api: Api) -> None:
    shared = decision(api, "shared_device", "limit_increase")
    assert shared["decision"] == "review" and shared["reasons"] == ["shared_device"]
    borrowed = decision(api, api.take_clean(), "limit_increase", device_id="DEV-SHARED-0")
    assert borrowed["decision"] == "review"
    own_device = decision(api, api.take_clean(), "limit_increase", device_id="DEV-NEW-PHONE")
    assert own_device["decision"] == "allow"


def test_location_far_from_usual_steps_up(api: Api) -> None:
    person = api.take("vip")
    ((lat, lon),) = api.sql("SELECT usual_lat, usual_lon FROM customers WHERE id = :c",
                            c=person["customer_id"])
    session_id = api.verified(person)
    far = api.decide(person, session_id, "issue_invoice", SANE_PARAMS["issue_invoice"],
                     location={"lat": 43.82, "lon": 87.62}).json()  # Urumqi
    assert far["decision"] == "step_up" and far["reasons"] == ["location_far_from_usual"]
    near = api.decide(person, session_id, "issue_invoice", SANE_PARAMS["issue_invoice"],
                      location={"lat": lat + 0.1, "lon": lon - 0.1}).json()
    assert near["decision"] == "allow"


def test_multi_lender_applications_send_limit_increase_to_review(api: Api) -> None:
    answer = decision(api, "multi_lender", "limit_increase")
    assert answer["decision"] == "review" and answer["reasons"] == ["multi_lender"]
    person = api.take("multi_lender")
    session_id = api.verified(person)
    assert api.decide(person, session_id, "restructure",
                      {"periods": 3}).json()["decision"] == "review"
    assert api.decide(person, session_id, "change_auto_debit",
                      {"enabled": True}).json()["decision"] == "allow"


def test_amount_over_threshold_goes_to_review(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person)
    large = api.decide(person, session_id, "partial_prepayment", {"amount": 50000.01}).json()
    assert large["decision"] == "review" and large["reasons"] == ["amount_over_threshold"]
    small = api.decide(person, session_id, "partial_prepayment", {"amount": "3000"}).json()
    assert small["decision"] == "allow"


def test_closed_account_is_denied(api: Api) -> None:
    person = api.take("settled")
    session_id = api.verified(person)
    closed = api.decide_and_act(person, session_id, "close_account").json()
    assert closed["status"] == "done"
    answer = api.decide(person, session_id, "issue_certificate", {"delivery": "app"}).json()
    assert answer["decision"] == "deny" and "account_closed" in answer["reasons"]


def test_decisions_need_the_right_verification_level(api: Api) -> None:
    person = api.take_clean()
    l1_session = api.verified(person, "L1")
    assert api.decide(person, l1_session, "limit_increase").json()["decision"] == "allow"
    assert api.decide(person, l1_session, "freeze_account").status_code == 200
    refused = api.decide(person, l1_session, "early_repayment")
    assert refused.status_code == 403
    assert refused.json()["detail"]["code"] == "verification_required"


def test_invalid_params_are_422_naming_the_field(api: Api) -> None:
    person = api.take_clean()
    session_id = api.verified(person)
    response = api.decide(person, session_id, "defer_repayment", {"days": 30})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "params", "days"]


def test_rules_file_errors_name_the_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    raw["rules"][0]["decision"] = "maybe"
    raw["rules"][1]["days"] = -1
    broken = tmp_path / "rules.yaml"
    broken.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RulesConfigError) as error:
        load_rules(broken)
    assert "rules.0" in str(error.value) and "decision" in str(error.value)
    broken.write_text("rules: [", encoding="utf-8")
    with pytest.raises(RulesConfigError, match="cannot read"):
        load_rules(broken)


def test_a_risk_action_missing_its_parameters_or_operation_is_named_and_the_shipped_ones_agree(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from risk_api import operations
    from risk_api.schemas import PARAMS_BY_ACTION

    assert operations.contract_gaps() == []
    monkeypatch.delitem(operations.OPERATIONS, "unbind_card")
    monkeypatch.delitem(PARAMS_BY_ACTION, "issue_invoice")
    monkeypatch.setitem(operations.OPERATIONS, "pause_reminders", operations.OPERATIONS["close_account"])
    assert operations.contract_gaps() == [
        "issue_invoice has no parameters in risk_api/schemas.py PARAMS_BY_ACTION",
        "unbind_card has no operation in risk_api/operations.py OPERATIONS",
        "pause_reminders is not a risk action (risk_api/rules.py RiskAction)"]


def test_the_risk_api_refuses_to_start_with_an_action_it_could_not_carry_out(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from risk_api import operations
    from risk_api.app import create_app
    from risk_api.config import Settings

    monkeypatch.delitem(operations.OPERATIONS, "unbind_card")
    settings = Settings(token="a-token-for-a-start-refused", database_url=f"sqlite:///{tmp_path / 'risk.sqlite3'}",
                        sms_outbox=tmp_path / "sms.jsonl")
    with pytest.raises(RuntimeError, match="unbind_card has no operation in risk_api/operations.py OPERATIONS"):
        create_app(settings)
    assert not (tmp_path / "risk.sqlite3").exists()  # refused before anything was opened
