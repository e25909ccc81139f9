"""Account actions: idempotency, the allow-decision check, and the human review queue."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from risk_api import audit, verification
from risk_api.db import Customer, DecisionRecord, IdempotencyRecord, Review, lock_customer
from risk_api.decisions import validate_params
from risk_api.errors import ApiError, conflict, not_found, unknown_customer
from risk_api.masking import mask_inputs
from risk_api.operations import OPERATIONS, Operation, Outcome
from risk_api.rules import RulesConfig
from risk_api.schemas import ActionRequest, ActionResponse, ReviewDecisionRequest
from risk_api.sms import SmsMessage


def _decision_required(message: str) -> ApiError:
    return conflict("decision_required", message)


def _response(action: str, outcome: Outcome) -> ActionResponse:
    # result repeats the message so templates can say {result.message} as well.
    return ActionResponse(action=action, status=outcome.status,  # type: ignore[arg-type]
                          result={**outcome.result, "message": outcome.message},
                          message=outcome.message)


def _fingerprint(customer_id: str, action: str, request: ActionRequest) -> str:
    body = json.dumps({"customer_id": customer_id, "action": action,
                       "body": request.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _usable_decision(session: Session, rules: RulesConfig, customer: Customer, action: str,
                     request: ActionRequest, params: dict[str, Any],
                     now: datetime) -> DecisionRecord:
    decision = session.get(DecisionRecord, request.decision_id, with_for_update=True)
    if (decision is None or decision.customer_id != customer.id or decision.action != action
            or decision.session_id != request.session_id):  # only the session it was made for
        raise _decision_required("这项业务需要先通过风险检查。")
    if decision.params != params:
        raise _decision_required("办理的内容与风险检查时不一致，请重新发起。")
    if decision.used_at is not None:
        raise _decision_required("这次风险检查结果已经使用过，请重新发起。")
    if now - decision.created_at > timedelta(seconds=rules.decision_ttl_seconds):
        raise _decision_required("风险检查结果已过期，请重新发起。")
    if decision.decision not in ("allow", "review"):
        raise _decision_required("风险检查未通过，无法办理这项业务。")
    return decision


def perform(session: Session, rules: RulesConfig, customer_id: str, action: str,
            idempotency_key: str, request: ActionRequest,
            now: datetime) -> tuple[ActionResponse, list[SmsMessage]]:
    customer = lock_customer(session, customer_id)  # serialises actions on this account
    if customer is None:
        raise unknown_customer()
    fingerprint = _fingerprint(customer.id, action, request)
    previous = session.get(IdempotencyRecord, idempotency_key)
    if previous is not None:
        if previous.fingerprint != fingerprint:
            raise conflict("idempotency_conflict", "这个请求编号已用于另一项操作。")
        return ActionResponse.model_validate(previous.response), []
    verification.require_level(session, request.session_id, customer.id,
                               rules.required_level(action), now)
    params = validate_params(action, request.params)
    decision = _usable_decision(session, rules, customer, action, request, params, now)
    decision.used_at = now
    operation = Operation(session, customer, params, now)
    if decision.decision == "review":
        outcome = Outcome("pending_review", {"review_id": decision.review_id},
                          "这项业务已提交人工审核，审核结果会通过短信通知您。")
    else:
        outcome = OPERATIONS[action](operation)
    response = _response(action, outcome)
    session.add(IdempotencyRecord(key=idempotency_key, fingerprint=fingerprint,
                                  response=response.model_dump(mode="json"), created_at=now))
    audit.record(session, at=now, kind=f"action:{action}", customer_id=customer.id,
                 channel=request.channel, session_id=request.session_id,
                 inputs={"params": params, "decision_id": decision.id},
                 decision=outcome.status, rules=decision.reasons)
    return response, operation.outbox


def list_reviews(session: Session, status: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(Review).order_by(Review.created_at).limit(limit)
    if status:
        query = query.where(Review.status == status)
    return [{
        "review_id": review.id, "decision_id": review.decision_id,
        "customer_id": review.customer_id, "action": review.action,
        "params": mask_inputs(review.params), "reasons": review.reasons,
        "status": review.status, "agent": review.agent, "note": review.note,
        "result": review.result, "created_at": review.created_at.isoformat(),
        "decided_at": review.decided_at.isoformat() if review.decided_at else None,
    } for review in session.scalars(query)]


def decide_review(session: Session, review_id: str, request: ReviewDecisionRequest,
                  now: datetime) -> tuple[dict[str, Any], list[SmsMessage]]:
    """An agent's verdict; approving carries the queued action out (the only way it happens)."""
    review = session.get(Review, review_id)
    if review is None:
        raise not_found("unknown_review", "没有找到这条审核记录。")
    customer = lock_customer(session, review.customer_id)
    session.refresh(review, with_for_update=True)
    if review.status != "pending" or customer is None:
        raise conflict("review_closed", "这条审核已经处理过了。")
    operation = Operation(session, customer, review.params, now)
    if request.approve:
        review.result = _response(review.action, OPERATIONS[review.action](operation)).model_dump(
            mode="json")
    review.status = "approved" if request.approve else "rejected"
    review.agent = request.agent
    review.note = request.note
    review.decided_at = now
    audit.record(session, at=now, kind="review_decision", customer_id=customer.id,
                 channel="agent", inputs={"review_id": review.id, "agent": request.agent,
                                          "note": request.note, "action": review.action},
                 decision=review.status, rules=review.reasons)
    return {"review_id": review.id, "status": review.status, "result": review.result}, \
        operation.outbox
