"""The flow linter: the real flows pass; each kind of mistake is named by file and field."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from flowspec.lint import HELD_OUT_DIR, lint
from flowspec.model import CATALOGUE_PATH, FLOWS_DIR, HEARD_FILE, FlowError, load_flowset


def test_every_catalogue_flow_has_a_sound_file() -> None:
    problems = lint()
    assert problems == [], "\n".join(str(problem) for problem in problems)
    catalogue = yaml.safe_load(CATALOGUE_PATH.read_text(encoding="utf-8"))
    assert set(load_flowset().flows) == {entry["id"] for entry in catalogue["flows"]}


@pytest.fixture
def flows_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "flows"
    shutil.copytree(FLOWS_DIR, copy)
    return copy


def edit(flows: Path, flow_id: str, change: Callable[[dict], None]) -> None:
    path = flows / f"{flow_id}.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def only_problem(flows: Path) -> str:
    problems = lint(flows)
    assert len(problems) == 1, [str(p) for p in problems]
    return str(problems[0])


def test_broken_yaml_names_file_and_line(flows_copy: Path) -> None:
    path = flows_copy / "bill_inquiry.yml"
    path.write_text(path.read_text(encoding="utf-8") + "\nresponses: [unclosed\n", encoding="utf-8")
    problem = only_problem(flows_copy)
    assert problem.startswith("flows/bill_inquiry.yml") or "bill_inquiry.yml" in problem
    assert "not valid YAML" in problem and "line" in problem


def test_wrong_value_names_the_field(flows_copy: Path) -> None:
    edit(flows_copy, "bill_inquiry", lambda data: data.update(identity="L3"))
    problem = only_problem(flows_copy)
    assert "bill_inquiry.yml: identity:" in problem and "'L3'" in problem


def test_unknown_field_is_rejected(flows_copy: Path) -> None:
    edit(flows_copy, "bill_inquiry", lambda data: data.update(colour="blue"))
    assert "colour" in only_problem(flows_copy)


def test_identity_must_agree_with_the_catalogue(flows_copy: Path) -> None:
    edit(flows_copy, "early_repayment", lambda data: data.update(identity="L1"))
    problem = only_problem(flows_copy)
    assert "early_repayment.yml: identity:" in problem and "catalogue says 'L2'" in problem


def test_missing_flow_file_is_named(flows_copy: Path) -> None:
    (flows_copy / "fee_inquiry.yml").unlink()
    assert "fee_inquiry.yml" in only_problem(flows_copy) and "missing" in only_problem(flows_copy)


def test_flow_not_in_catalogue_is_rejected(flows_copy: Path) -> None:
    shutil.copy(flows_copy / "fee_inquiry.yml", flows_copy / "fee_enquiry.yml")
    problems = [str(p) for p in lint(flows_copy)]
    assert any("fee_enquiry.yml: id:" in p for p in problems), problems


def test_placeholder_must_name_a_slot_read_or_engine_value(flows_copy: Path) -> None:
    edit(flows_copy, "bill_inquiry", lambda data: data["responses"]["answer"].update(chat="您应还{bil.amount_due}元"))
    assert "{bil.amount_due}" in only_problem(flows_copy)


def test_example_shared_by_two_intents_is_rejected(flows_copy: Path) -> None:
    example = yaml.safe_load((flows_copy / "bill_inquiry.yml").read_text(encoding="utf-8"))["examples"][0]
    edit(flows_copy, "due_date_inquiry", lambda data: data["examples"].append(example))
    assert "also an example of" in only_problem(flows_copy)


def test_a_heard_text_that_is_a_held_out_phrasing_is_rejected(flows_copy: Path) -> None:
    said = yaml.safe_load((flows_copy / "bill_inquiry.yml").read_text(encoding="utf-8"))["examples"][0]
    held_out = yaml.safe_load((HELD_OUT_DIR / "bill_inquiry.yml").read_text(encoding="utf-8"))["examples"][0]
    (flows_copy / "shared" / HEARD_FILE).write_text(yaml.safe_dump(
        {"heard": {"bill_inquiry": [{"said": said, "heard": held_out}]}}, allow_unicode=True), encoding="utf-8")
    assert "is a training example of bill_inquiry" in only_problem(flows_copy)


def test_handoff_rule_required_by_the_catalogue(flows_copy: Path) -> None:
    edit(flows_copy, "fraud_report", lambda data: data.pop("handoff"))
    assert "fraud_report.yml: handoff:" in only_problem(flows_copy)


def test_handoff_reason_for_an_unknown_input_is_rejected(flows_copy: Path) -> None:
    edit(flows_copy, "transfer_to_agent", lambda data: data["handoff"]["reasons_by_input"].update(timeout="客户超时"))
    problem = only_problem(flows_copy)
    assert "transfer_to_agent.yml: handoff.reasons_by_input:" in problem and "timeout" in problem


def test_outcome_announcing_the_transfer_twice_is_rejected(flows_copy: Path) -> None:
    announced = "已登记。现在为您转接人工客服。"
    edit(flows_copy, "fraud_report", lambda data: data["responses"]["done"].update(voice=announced))
    assert "fraud_report.yml: responses.done.voice: announces the transfer" in only_problem(flows_copy)


def test_flow_error_message_shape() -> None:
    error = FlowError(FLOWS_DIR / "x.yml", "slots.0.type", "'money' is not one of [...]")
    assert str(error) == "flows/x.yml: slots.0.type: 'money' is not one of [...]"


@pytest.mark.parametrize("name", ["customer_id", "verified_level", "caller_number", "confirmed"])
def test_a_flow_slot_may_not_take_an_engine_slots_name(flows_copy: Path, name: str) -> None:
    edit(flows_copy, "callback_request", lambda data: data["slots"][0].update(name=name))
    problems = [str(problem) for problem in lint(flows_copy)]
    assert any(f"'{name}' is reserved by the engine" in problem for problem in problems), problems


def test_a_risk_action_the_risk_api_does_not_know_is_named(flows_copy: Path) -> None:
    edit(flows_copy, "change_bank_card", lambda data: data.update(risk="swap_card"))
    problems = [str(problem) for problem in lint(flows_copy)]
    assert any("'swap_card' is not an action of the risk API" in problem for problem in problems), problems


def test_a_risk_action_without_its_operation_is_named_for_the_flow_and_the_risk_api(
        flows_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from risk_api import operations
    monkeypatch.delitem(operations.OPERATIONS, "change_bank_card")
    flow_problem, risk_api_problem = [str(problem) for problem in lint(flows_copy)]
    assert flow_problem.endswith("change_bank_card.yml: risk: 'change_bank_card' is a risk action without an "
                                 "operation (risk_api/operations.py OPERATIONS)")
    assert risk_api_problem == ("risk_api/operations.py: (top level): change_bank_card has no operation in "
                                "risk_api/operations.py OPERATIONS")


def test_act_params_must_be_the_ones_the_risk_action_takes(flows_copy: Path) -> None:
    edit(flows_copy, "change_bank_card", lambda data: data["act"]["params"].pop("card_number"))
    assert "act.params: 'change_bank_card' takes ['bank', 'card_number']" in only_problem(flows_copy)


def test_a_ticket_kind_the_risk_api_does_not_know_is_named(flows_copy: Path) -> None:
    edit(flows_copy, "complaint", lambda data: data.update(record="ticket:grumble"))
    assert "'grumble' is not a ticket kind of the risk API" in only_problem(flows_copy)


def test_each_verification_input_needs_exactly_one_identity_slot(flows_copy: Path) -> None:
    def drop_otp_proof(data: dict) -> None:
        next(slot for slot in data["identity_slots"] if slot["name"] == "otp_code").pop("proves")

    edit(flows_copy, "identity_verification", drop_otp_proof)
    problem = only_problem(flows_copy)
    assert "identity_verification.yml: identity_slots:" in problem and "`proves: otp`" in problem


def test_only_identity_slots_prove_identity_or_are_secret(flows_copy: Path) -> None:
    edit(flows_copy, "change_bank_card", lambda data: data["slots"][0].update(secret=True))
    assert "only the identity flow's identity_slots" in only_problem(flows_copy)


def test_the_identity_slots_names_come_from_the_identity_flow() -> None:
    flows = load_flowset()
    assert flows.identity_slot("otp") == "otp_code" and flows.identity_slot("name") == "customer_name"
    assert flows.secret_slot_names == {"otp_code", "id_last4", "id_last6"}
    assert flows.reverify_slot_names == ("customer_name", "id_last4", "id_last6", "otp_code")


def test_a_slots_help_says_no_placeholder_and_its_reprompt_names_known_ones(flows_copy: Path) -> None:
    def code_help_with_a_placeholder(data: dict) -> None:
        slot = next(slot for slot in data["identity_slots"] if slot["name"] == "otp_code")
        slot["help"] = {"voice": "验证码发到{otp.masked_phone}了", "chat": "验证码发到{otp.masked_phone}了"}

    edit(flows_copy, "identity_verification", code_help_with_a_placeholder)
    assert "slots.otp_code.help: says no {placeholder}" in only_problem(flows_copy)


def test_a_slots_reprompt_placeholder_must_name_a_slot_read_or_engine_value(flows_copy: Path) -> None:
    edit(flows_copy, "change_bank_card",
         lambda data: data["slots"][0].update(reprompt={"voice": "请说开户银行", "chat": "请输入{bnak}"}))
    assert "{bnak}" in only_problem(flows_copy)
