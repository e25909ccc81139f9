"""Service records: tickets, promises to pay, preferences, callbacks and hand-offs."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from risk_api import audit, verification
from risk_api.clock import CHINA_TZ
from risk_api.db import Callback, Customer, Handoff, Promise, Ticket, new_id
from risk_api.errors import ApiError, conflict, not_found, unknown_customer, verification_required
from risk_api.masking import mask_inputs, mask_text
from risk_api.money import to_fen
from risk_api.schemas import (
    CallbackRequest,
    CallbackResponse,
    HandoffAccept,
    HandoffCallState,
    HandoffRequest,
    HandoffResponse,
    PreferencesRequest,
    PreferencesResponse,
    PromiseRequest,
    PromiseResponse,
    TicketRequest,
    TicketResponse,
)
from risk_api.timeparse import parse_preferred_time

PROMISE_WINDOW_DAYS = 7
SERVICE_OPENS = time(9)
SERVICE_CLOSES = time(21)


def _customer(session: Session, customer_id: str | None) -> Customer | None:
    if customer_id is None:
        return None
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise unknown_customer()
    return customer


def _session_customer(session: Session, session_id: str, named: str | None, now: datetime) -> str | None:
    """The customer a record is filed on: the one the conversation verified as. A record that
    names a customer needs the session verified for that very customer."""
    if named is not None:
        _customer(session, named)
        verification.require_level(session, session_id, named, "L1", now)
        return named
    state = verification.live_session(session, session_id, now)
    return state.customer_id if state else None


def create_ticket(session: Session, request: TicketRequest, now: datetime) -> TicketResponse:
    request = request.model_copy(update={"customer_id": _session_customer(
        session, request.session_id, request.customer_id, now)})
    ticket_id = new_id("T")
    # Stored masked: a ticket says what happened, not the numbers the customer read out.
    session.add(Ticket(id=ticket_id, kind=request.kind, customer_id=request.customer_id,
                       summary=mask_text(request.summary), details=mask_inputs(request.details), status="open",
                       session_id=request.session_id, channel=request.channel, created_at=now))
    audit.record(session, at=now, kind=f"ticket:{request.kind}", customer_id=request.customer_id,
                 channel=request.channel, session_id=request.session_id,
                 inputs={"summary": request.summary, "details": request.details})
    return TicketResponse(ticket_id=ticket_id, kind=request.kind, status="open")


def list_tickets(session: Session, customer_id: str | None, kind: str | None,
                 limit: int) -> list[dict[str, Any]]:
    query = select(Ticket).order_by(Ticket.created_at.desc()).limit(limit)
    if customer_id:
        query = query.where(Ticket.customer_id == customer_id)
    if kind:
        query = query.where(Ticket.kind == kind)
    return [{"ticket_id": t.id, "kind": t.kind, "customer_id": t.customer_id,
             "summary": mask_text(t.summary), "status": t.status,
             "channel": t.channel, "created_at": t.created_at.isoformat()}
            for t in session.scalars(query)]


def create_promise(session: Session, customer_id: str, request: PromiseRequest,
                   now: datetime) -> PromiseResponse:
    _session_customer(session, request.session_id, customer_id, now)
    today = now.date()
    if not today <= request.date <= today + timedelta(days=PROMISE_WINDOW_DAYS):
        raise ApiError(422, "invalid_promise_date",
                       f"承诺还款日期需要在今天起{PROMISE_WINDOW_DAYS}天以内。")
    if request.amount <= 0 or round(request.amount, 2) != request.amount:
        raise ApiError(422, "invalid_promise_amount", "承诺还款金额需要大于0元，最多两位小数。")
    if request.amount > 10_000_000:
        raise ApiError(422, "invalid_promise_amount", "承诺还款金额超出范围，请核对。")
    promise_id = new_id("P")
    session.add(Promise(id=promise_id, customer_id=customer_id, promise_date=request.date,
                        amount_fen=to_fen(request.amount), session_id=request.session_id,
                        channel=request.channel, created_at=now))
    audit.record(session, at=now, kind="promise", customer_id=customer_id,
                 channel=request.channel, session_id=request.session_id,
                 inputs=request.model_dump(mode="json", exclude={"session_id", "channel"}))
    return PromiseResponse(promise_id=promise_id, date=request.date, amount=request.amount)


def set_preferences(session: Session, customer_id: str, request: PreferencesRequest,
                    now: datetime) -> PreferencesResponse:
    customer = _customer(session, customer_id)
    assert customer is not None
    if request.session_id is None:
        raise verification_required()
    _session_customer(session, request.session_id, customer_id, now)
    customer.marketing_opt_out = request.marketing_opt_out
    audit.record(session, at=now, kind="preferences", customer_id=customer_id,
                 channel=request.channel, session_id=request.session_id,
                 inputs={"marketing_opt_out": request.marketing_opt_out})
    return PreferencesResponse(customer_id=customer_id,
                               marketing_opt_out=customer.marketing_opt_out)


def service_time(preferred: datetime, now: datetime) -> datetime:
    """The preferred time moved into service hours (9:00-21:00 China time), never the past."""
    moment = max(preferred, now).astimezone(CHINA_TZ)
    if moment.time() < SERVICE_OPENS:
        return datetime.combine(moment.date(), SERVICE_OPENS, tzinfo=CHINA_TZ)
    if moment.time() >= SERVICE_CLOSES:
        return datetime.combine(moment.date() + timedelta(days=1), SERVICE_OPENS, tzinfo=CHINA_TZ)
    return moment.replace(second=0, microsecond=0)


def create_callback(session: Session, request: CallbackRequest,
                    now: datetime) -> CallbackResponse:
    customer_id = _session_customer(session, request.session_id, request.customer_id, now)
    if request.phone is None:
        customer = _customer(session, customer_id)
        if customer is None:
            raise ApiError(422, "phone_required", "请提供回电号码。")
        request = request.model_copy(update={"phone": customer.phone})
    request = request.model_copy(update={"customer_id": customer_id})
    callback_id = new_id("CB")
    scheduled = service_time(parse_preferred_time(request.preferred_time, now) or now, now)
    session.add(Callback(id=callback_id, customer_id=request.customer_id, phone=request.phone,
                         scheduled_for=scheduled, session_id=request.session_id,
                         channel=request.channel, created_at=now))
    audit.record(session, at=now, kind="callback", customer_id=request.customer_id,
                 channel=request.channel, session_id=request.session_id,
                 inputs={"phone": request.phone, "preferred_time": request.preferred_time})
    return CallbackResponse(callback_id=callback_id, scheduled_for=scheduled)


def create_handoff(session: Session, request: HandoffRequest, now: datetime) -> HandoffResponse:
    state = verification.live_session(session, request.session_id, now)
    # The desk sees who the risk API verified, whatever the body says.
    request = request.model_copy(update={
        "customer_id": _session_customer(session, request.session_id, request.customer_id, now),
        "verified_level": state.level if state else "none",
        "summary": mask_text(request.summary)})
    handoff_id = new_id("H")
    session.add(Handoff(id=handoff_id, session_id=request.session_id, channel=request.channel,
                        flow=request.flow, reason=request.reason, priority=request.priority,
                        summary=request.summary, customer_id=request.customer_id,
                        verified_level=request.verified_level, status="waiting", agent=None,
                        created_at=now, accepted_at=None))
    audit.record(session, at=now, kind="handoff", customer_id=request.customer_id,
                 channel=request.channel, session_id=request.session_id,
                 inputs={"flow": request.flow, "reason": request.reason,
                         "priority": request.priority})
    return HandoffResponse(handoff_id=handoff_id)


def _handoff_view(handoff: Handoff) -> dict[str, Any]:
    # No session id: it is the conversation's, not the agent's (docs/security.md).
    return {"handoff_id": handoff.id, "channel": handoff.channel, "flow": handoff.flow, "reason": handoff.reason,
            "priority": handoff.priority, "summary": mask_text(handoff.summary),
            "customer_id": handoff.customer_id, "verified_level": handoff.verified_level,
            "status": handoff.status, "agent": handoff.agent,
            "created_at": handoff.created_at.isoformat(),
            "accepted_at": handoff.accepted_at.isoformat() if handoff.accepted_at else None}


# Queue order: the most urgent first, then the longest waiting (the id keeps pages stable).
_QUEUE_ORDER = (case({"emergency": 0, "high": 1, "normal": 2}, value=Handoff.priority, else_=3),
                Handoff.created_at, Handoff.id)


@dataclass(frozen=True)
class HandoffFilter:
    """What the desk narrows its list to; None lets every value through."""

    status: str | None = None
    channel: str | None = None
    priority: str | None = None
    flow: str | None = None
    handoff_id: str | None = None


def list_handoffs(session: Session, where: HandoffFilter, limit: int,
                  offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """One page of the hand-overs that match, in queue order, and how many match in all."""
    conditions = [column == value for column, value in (
        (Handoff.status, where.status), (Handoff.channel, where.channel), (Handoff.priority, where.priority),
        (Handoff.flow, where.flow), (Handoff.id, where.handoff_id)) if value is not None]
    total = session.scalar(select(func.count()).select_from(Handoff).where(*conditions)) or 0
    page = session.scalars(select(Handoff).where(*conditions).order_by(*_QUEUE_ORDER)
                           .limit(limit).offset(offset))
    return [_handoff_view(handoff) for handoff in page], total


def accept_handoff(session: Session, handoff_id: str, request: HandoffAccept,
                   now: datetime) -> dict[str, Any]:
    # Locked (PG: FOR UPDATE; SQLite: every transaction writes alone): of two agents, one wins.
    handoff = session.get(Handoff, handoff_id, with_for_update=True)
    if handoff is None:
        raise not_found("unknown_handoff", "没有找到这条转人工记录。")
    if handoff.status == "abandoned":
        raise conflict("handoff_closed", "客户已经挂断，这条转人工已结束。")
    if handoff.status != "waiting":
        raise conflict("handoff_taken", "这位客户已经由其他坐席接起。")
    handoff.status = "accepted"
    handoff.agent = request.agent
    handoff.accepted_at = now
    audit.record(session, at=now, kind="handoff_accept", customer_id=handoff.customer_id,
                 channel="agent", session_id=handoff.session_id,
                 inputs={"handoff_id": handoff_id, "agent": request.agent})
    return _handoff_view(handoff)


def phone_handoff_state(session: Session, handoff_id: str, request: HandoffCallState,
                        now: datetime) -> dict[str, Any]:
    """A phone hand-over leaves the waiting list when a queue member answers (accepted by that
    agent) or the caller hangs up while waiting (abandoned)."""
    handoff = session.get(Handoff, handoff_id, with_for_update=True)
    if handoff is None or handoff.channel not in ("voice", "outbound"):
        raise not_found("unknown_handoff", "没有找到这条转人工记录。")
    if handoff.status != "waiting":
        raise conflict("handoff_closed", "这条转人工记录已经结束。")
    handoff.status = "accepted" if request.state == "connected" else "abandoned"
    handoff.agent = request.agent if request.state == "connected" else None
    handoff.accepted_at = now if request.state == "connected" else None
    audit.record(session, at=now, kind=f"handoff_{request.state}", customer_id=handoff.customer_id,
                 channel=handoff.channel, session_id=handoff.session_id,
                 inputs={"handoff_id": handoff_id, "agent": request.agent})
    return _handoff_view(handoff)
