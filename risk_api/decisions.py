"""Risk decisions: gather the facts, run the rules, queue `review` outcomes for an agent."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from risk_api import audit, loans, verification
from risk_api.db import Customer, DecisionRecord, Review, VerifiedSession, new_id
from risk_api.errors import unknown_customer
from risk_api.money import yuan
from risk_api.rules import RiskFacts, RulesConfig
from risk_api.schemas import PARAMS_BY_ACTION, DecisionRequest, DecisionResponse


def validate_params(action: str, params: dict[str, Any]) -> dict[str, Any]:
    """The action's params, checked and normalised ("3000" -> 3000.0) or a 422."""
    try:
        return PARAMS_BY_ACTION[action].model_validate(params).model_dump(mode="json")
    except ValidationError as exc:
        raise RequestValidationError([
            {**error, "loc": ("body", "params", *error["loc"])}
            for error in exc.errors(include_url=False, include_context=False)
        ]) from exc


def _identities_on_device(session: Session, customer: Customer, device_id: str) -> int:
    others = session.scalar(select(func.count()).select_from(Customer).where(
        Customer.device_id == device_id, Customer.id != customer.id))
    return (others or 0) + 1


def _amount(session: Session, customer: Customer, action: str, params: dict[str, Any],
            today: date) -> float | None:
    if action == "partial_prepayment":
        return float(params["amount"])
    if action == "early_repayment":
        loan = loans.active_loan(session, customer.id)
        items = loans.open_installments(session, loan) if loan else []
        return yuan(loans.payoff_quote(items, customer, today).total_fen)
    return None


def _step_up_passed(state: VerifiedSession, now: datetime, window_seconds: int) -> bool:
    """A fresh SMS code entered after the last step_up answer satisfies it for a while."""
    return (state.step_up_requested_at is not None and state.last_l2_at is not None
            and state.last_l2_at > state.step_up_requested_at
            and now - state.last_l2_at <= timedelta(seconds=window_seconds))


def decide(session: Session, rules: RulesConfig, customer_id: str, request: DecisionRequest,
           now: datetime) -> DecisionResponse:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise unknown_customer()
    state = verification.require_level(session, request.session_id, customer.id,
                                       rules.required_level(request.action), now)
    params = validate_params(request.action, request.params)
    today = now.date()
    facts = RiskFacts(
        action=request.action, today=today, account_status=customer.account_status,
        frozen_reason=customer.frozen_reason, device_changed_on=customer.device_changed_on,
        phone_changed_on=customer.phone_changed_on,
        identities_on_device=_identities_on_device(
            session, customer, request.device_id or customer.device_id),
        location=(request.location.lat, request.location.lon) if request.location else None,
        usual_location=(customer.usual_lat, customer.usual_lon),
        lender_applications=[date.fromisoformat(d) for d in customer.other_lender_applications],
        amount=_amount(session, customer, request.action, params, today),
    )
    evaluation = rules.evaluate(facts, step_up_passed=_step_up_passed(
        state, now, rules.step_up_window_seconds))
    if evaluation.decision == "step_up":
        state.step_up_requested_at = now
    decision_id = new_id("D")
    review_id = new_id("R") if evaluation.decision == "review" else None
    session.add(DecisionRecord(
        id=decision_id, customer_id=customer.id, action=request.action, params=params,
        decision=evaluation.decision, reasons=evaluation.reasons,
        explanation=evaluation.explanation, session_id=request.session_id,
        channel=request.channel, created_at=now, used_at=None, review_id=review_id))
    if review_id:
        session.flush()  # the review row references the decision
        session.add(Review(id=review_id, decision_id=decision_id, customer_id=customer.id,
                           action=request.action, params=params, reasons=evaluation.reasons,
                           status="pending", agent=None, note=None, result=None,
                           created_at=now, decided_at=None))
    audit.record(session, at=now, kind="decision", customer_id=customer.id,
                 channel=request.channel, session_id=request.session_id,
                 inputs=request.model_dump(mode="json", exclude={"session_id", "channel"}),
                 decision=evaluation.decision, rules=evaluation.fired)
    return DecisionResponse(decision_id=decision_id, action=request.action,
                            decision=evaluation.decision,  # type: ignore[arg-type]
                            reasons=evaluation.reasons, explanation=evaluation.explanation,
                            review_id=review_id)
