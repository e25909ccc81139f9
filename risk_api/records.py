"""Service records: tickets, promises to pay, preferences, callbacks and hand-offs."""
from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from risk_api import audit, outbound, presence, verification
from risk_api.clock import CHINA_TZ
from risk_api.db import Callback, Customer, Handoff, Promise, Review, Ticket, new_id
from risk_api.errors import ApiError, conflict, not_found, unknown_customer, verification_required
from risk_api.masking import mask_inputs, mask_phone, mask_text
from risk_api.money import to_fen
from risk_api.schemas import (
    CallbackRequest,
    CallbackResponse,
    HandoffAccept,
    HandoffCallState,
    HandoffClose,
    HandoffCustomerNote,
    HandoffDoNotCall,
    HandoffOfSession,
    HandoffRaisePriority,
    HandoffRequest,
    HandoffResponse,
    HandoffTakeover,
    HandoffWithdrawal,
    PreferencesRequest,
    PreferencesResponse,
    PromiseRequest,
    PromiseResponse,
    TicketRequest,
    TicketResponse,
)
from risk_api.timeparse import parse_preferred_time

PROMISE_WINDOW_DAYS = 7
# The estimated wait takes the mean handling time (accepted → closed) of this many latest closed
# hand-overs of the same channel, or the default when the channel has none yet.
HANDLING_SAMPLE = 50
HANDLING_SECONDS_DEFAULT = 180
# The chat widget asks where its hand-over stands every few seconds (a hidden tab: about once a
# minute); a waiting customer not heard from for this long has closed the page: abandoned.
CHAT_CUSTOMER_GONE_SECONDS = 180
# The flow a supervisor's take-over from the quality board is filed under (the desk names it).
TAKEOVER_FLOW = "quality_takeover"
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
    handoff = Handoff(id=new_id("H"), session_id=request.session_id, channel=request.channel,
                      flow=request.flow, reason=request.reason, priority=request.priority,
                      summary=request.summary, customer_id=request.customer_id,
                      verified_level=request.verified_level, status="waiting", agent=None,
                      created_at=now, accepted_at=None)
    session.add(handoff)
    audit.record(session, at=now, kind="handoff", customer_id=request.customer_id,
                 channel=request.channel, session_id=request.session_id,
                 inputs={"flow": request.flow, "reason": request.reason,
                         "priority": request.priority})
    return HandoffResponse(handoff_id=handoff.id, **queue_facts(session, handoff, now))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _seconds(start: datetime | None, end: datetime | None) -> int | None:
    return None if start is None or end is None else max(0, int((end - start).total_seconds()))


def _handoff_view(handoff: Handoff, now: datetime, phone: str | None) -> dict[str, Any]:
    # No session id: it is the conversation's, not the agent's (docs/security.md); the customer's
    # number (`phone`, on file) only masked, as agents search by it.
    # Waiting ends when an agent accepts or the hand-over ends; a hand-over abandoned before
    # schema version 2 has no recorded end (null).
    waited_until = handoff.accepted_at or handoff.closed_at or (now if handoff.status == "waiting" else None)
    return {"handoff_id": handoff.id, "channel": handoff.channel, "flow": handoff.flow, "reason": handoff.reason,
            "priority": handoff.priority, "summary": mask_text(handoff.summary),
            "customer_id": handoff.customer_id, "masked_phone": mask_phone(phone) if phone else None,
            "verified_level": handoff.verified_level, "status": handoff.status, "agent": handoff.agent,
            "created_at": handoff.created_at.isoformat(), "accepted_at": _iso(handoff.accepted_at),
            "closed_at": _iso(handoff.closed_at), "closed_by": handoff.closed_by,
            "disposition": handoff.disposition,
            "close_note": mask_text(handoff.close_note) if handoff.close_note else None,
            "customer_note": mask_text(handoff.customer_note) if handoff.customer_note else None,
            "waiting_seconds": _seconds(handoff.created_at, waited_until),
            "handling_seconds": (_seconds(handoff.accepted_at, handoff.closed_at)
                                 if handoff.status == "closed" else None)}


# Hand-overs no agent holds, an agent may take. Unknown: a call that left the queue unseen — the
# agent who did answer it (or a supervisor tidying up) takes it to close it.
UNCLAIMED = ("waiting", "unknown")
# Queue order: the most urgent first, then the longest waiting (the id keeps pages stable).
_QUEUE_ORDER = (case({"emergency": 0, "high": 1, "normal": 2}, value=Handoff.priority, else_=3),
                Handoff.created_at, Handoff.id)


def _queue_position(session: Session, handoff: Handoff) -> int:
    """1 + the waiting hand-overs ahead of this one in _QUEUE_ORDER (the desk list's order)."""
    session.flush()
    keys = session.execute(select(*_QUEUE_ORDER).where(Handoff.id == handoff.id)).one()
    # Lexicographic "sorts before": equal on the first i keys and smaller on key i.
    ahead = or_(*(and_(*(column == key for column, key in zip(_QUEUE_ORDER[:i], keys[:i], strict=True)),
                       _QUEUE_ORDER[i] < keys[i])
                  for i in range(len(_QUEUE_ORDER))))
    count = session.scalar(select(func.count()).select_from(Handoff).where(Handoff.status == "waiting", ahead))
    return 1 + (count or 0)


def mean_handling_seconds(session: Session, channel: str) -> float:
    """Mean of closed_at - accepted_at over the channel's HANDLING_SAMPLE latest closed hand-overs."""
    rows = session.execute(
        select(Handoff.accepted_at, Handoff.closed_at)
        .where(Handoff.status == "closed", Handoff.channel == channel,
               Handoff.accepted_at.is_not(None), Handoff.closed_at.is_not(None))
        .order_by(Handoff.closed_at.desc(), Handoff.id.desc()).limit(HANDLING_SAMPLE)).all()
    if not rows:
        return float(HANDLING_SECONDS_DEFAULT)
    return sum(max(0.0, (closed - accepted).total_seconds()) for accepted, closed in rows) / len(rows)


def queue_facts(session: Session, handoff: Handoff, now: datetime) -> dict[str, Any]:
    """Agents online; for a waiting hand-over also its place in the queue and the estimated wait:
    ceil(position / max(1, agents online)) rounds of the channel's mean handling time."""
    online = presence.agents_online(session, now)
    if handoff.status != "waiting":
        return {"agents_online": online, "position": None, "estimated_wait_seconds": None}
    position = _queue_position(session, handoff)
    rounds = math.ceil(position / max(1, online))
    return {"agents_online": online, "position": position,
            "estimated_wait_seconds": round(rounds * mean_handling_seconds(session, handoff.channel))}


def _view(session: Session, handoff: Handoff, now: datetime) -> dict[str, Any]:
    customer = session.get(Customer, handoff.customer_id) if handoff.customer_id else None
    return _handoff_view(handoff, now, customer.phone if customer else None)


def _detail(session: Session, handoff: Handoff, now: datetime) -> dict[str, Any]:
    """For the web server only (it reaches the conversation by the session id, never shows it)."""
    return {**_view(session, handoff, now), "session_id": handoff.session_id,
            **queue_facts(session, handoff, now)}


def _unknown_handoff() -> ApiError:
    return not_found("unknown_handoff", "没有找到这条转人工记录。")


@dataclass(frozen=True)
class HandoffFilter:
    """What the desk narrows its list to; None lets every value through."""

    status: str | None = None
    channel: str | None = None
    priority: str | None = None
    flow: str | None = None
    handoff_id: str | None = None
    agent: str | None = None  # the agent holding it
    # The customer's number on file: its first three and last four digits (all 11: both parts);
    # a hand-over of a caller not identified has none and never matches.
    phone_prefix: str | None = None
    phone_suffix: str | None = None


def list_handoffs(session: Session, where: HandoffFilter, limit: int, offset: int = 0, *,
                  now: datetime) -> tuple[list[dict[str, Any]], int]:
    """One page of the hand-overs that match, in queue order, and how many match in all."""
    sweep_abandoned_chats(session, now)
    conditions = [column == value for column, value in (
        (Handoff.status, where.status), (Handoff.channel, where.channel), (Handoff.priority, where.priority),
        (Handoff.flow, where.flow), (Handoff.id, where.handoff_id), (Handoff.agent, where.agent))
        if value is not None]
    # Digits only (the route's pattern): nothing in them that LIKE would read as a wildcard.
    if where.phone_prefix:
        conditions.append(Customer.phone.startswith(where.phone_prefix))
    if where.phone_suffix:
        conditions.append(Customer.phone.endswith(where.phone_suffix))
    joined = select(Handoff, Customer.phone).outerjoin(Customer, Customer.id == Handoff.customer_id)
    total = session.scalar(select(func.count()).select_from(joined.where(*conditions).subquery())) or 0
    page = session.execute(joined.where(*conditions).order_by(*_QUEUE_ORDER).limit(limit).offset(offset))
    return [_handoff_view(handoff, now, phone) for handoff, phone in page], total


# What an agent may search hand-overs by: the whole number, its masked form, or its last four digits.
PHONE_SEARCH = r"^(?:1\d{10}|1\d{2}\*{4}\d{4}|\d{4})$"


def phone_search(phone: str) -> tuple[str | None, str | None]:
    """PHONE_SEARCH's forms as (first digits, last digits) of the number on file."""
    if len(phone) == 4:
        return None, phone
    if "*" in phone:
        return phone[:3], phone[-4:]
    return phone, phone


def sweep_abandoned_chats(session: Session, now: datetime) -> None:
    """Waiting chat customers whose widget stopped asking (page closed) have left the queue.
    Only widgets ever ask: a hand-over never asked about is left to the agents."""
    gone = session.scalars(select(Handoff).where(
        Handoff.status == "waiting", Handoff.channel == "chat",
        Handoff.customer_seen_at < now - timedelta(seconds=CHAT_CUSTOMER_GONE_SECONDS)).with_for_update())
    for handoff in gone:
        handoff.status = "abandoned"
        handoff.closed_at = handoff.customer_seen_at  # last seen: the wait ended there
        audit.record(session, at=now, kind="handoff_abandoned", customer_id=handoff.customer_id,
                     channel=handoff.channel, session_id=handoff.session_id,
                     inputs={"handoff_id": handoff.id, "silent_seconds": CHAT_CUSTOMER_GONE_SECONDS})


def desk_stamp(session: Session, now: datetime) -> str:
    """Changes whenever what a desk shows may have: a hand-over made, taken, closed, abandoned or
    given a note, a review made or decided. The web server pushes a refresh to the desks on a change."""
    sweep_abandoned_chats(session, now)
    handoffs = session.execute(select(
        Handoff.status, func.count(), func.max(Handoff.created_at), func.max(Handoff.accepted_at),
        func.max(Handoff.closed_at), func.count(Handoff.customer_note)).group_by(Handoff.status)
        .order_by(Handoff.status)).all()
    reviews = session.execute(select(Review.status, func.count(), func.max(Review.decided_at))
                              .group_by(Review.status).order_by(Review.status)).all()
    return hashlib.sha256(repr((handoffs, reviews)).encode()).hexdigest()[:32]


def get_handoff(session: Session, handoff_id: str, now: datetime) -> dict[str, Any]:
    handoff = session.get(Handoff, handoff_id)
    if handoff is None:
        raise _unknown_handoff()
    return _detail(session, handoff, now)


def handoff_of_session(session: Session, request: HandoffOfSession, now: datetime) -> dict[str, Any]:
    """The conversation's latest hand-over, whatever its state; `seen`: the customer's widget is
    asking, so the customer is still there."""
    sweep_abandoned_chats(session, now)
    handoff = session.scalar(select(Handoff).where(Handoff.session_id == request.session_id)
                             .order_by(Handoff.created_at.desc(), Handoff.id.desc()).limit(1))
    if handoff is None:
        raise not_found("no_handoff", "这个会话没有转人工记录。")
    if request.seen and handoff.status in ("waiting", "accepted"):
        handoff.customer_seen_at = now
    return _detail(session, handoff, now)


def _refuse_if_ended(handoff: Handoff) -> None:
    if handoff.status == "abandoned":
        raise conflict("handoff_closed", "客户已经离开（挂断或放弃排队），这条转人工已结束。")
    if handoff.status == "closed":
        raise conflict("handoff_closed", "这条转人工已经结束。")


def accept_handoff(session: Session, handoff_id: str, request: HandoffAccept,
                   now: datetime) -> dict[str, Any]:
    sweep_abandoned_chats(session, now)  # a customer who left is not offered to an agent
    # Locked (PG: FOR UPDATE; SQLite: every transaction writes alone): of two agents, one wins.
    handoff = session.get(Handoff, handoff_id, with_for_update=True)
    if handoff is None:
        raise _unknown_handoff()
    _refuse_if_ended(handoff)
    if handoff.status not in UNCLAIMED:
        raise conflict("handoff_taken", "这位客户已经由其他坐席接起。")
    was = {"was": handoff.status} if handoff.status == "unknown" else {}
    handoff.status = "accepted"
    handoff.agent = request.agent
    handoff.accepted_at = now
    audit.record(session, at=now, kind="handoff_accept", customer_id=handoff.customer_id,
                 channel="agent", session_id=handoff.session_id,
                 inputs={"handoff_id": handoff_id, "agent": request.agent, **was})
    return _view(session, handoff, now)


def take_over(session: Session, request: HandoffTakeover, now: datetime) -> dict[str, Any]:
    """The conversation's open hand-over, or a new one, accepted by the supervisor at emergency
    priority. Another agent already holding it keeps it (409); the same supervisor asking again
    gets it back."""
    sweep_abandoned_chats(session, now)
    handoff = session.scalar(select(Handoff).where(Handoff.session_id == request.session_id,
                                                   Handoff.status.in_(("waiting", "accepted")))
                             .order_by(Handoff.created_at.desc(), Handoff.id.desc()).limit(1).with_for_update())
    if handoff is not None and handoff.status == "accepted":
        if handoff.agent == request.agent:
            return _detail(session, handoff, now)
        raise conflict("handoff_taken", "这位客户已经由其他坐席接起。")
    if handoff is None:
        state = verification.live_session(session, request.session_id, now)
        handoff = Handoff(id=new_id("H"), session_id=request.session_id, channel=request.channel,
                          flow=TAKEOVER_FLOW, reason="质检告警接管", priority="emergency",
                          summary=mask_text(f"质检告警（{request.alert}），主管接管了这段对话。"),
                          customer_id=_session_customer(session, request.session_id, None, now),
                          verified_level=state.level if state else "none", status="waiting", agent=None,
                          created_at=now, accepted_at=None)
        session.add(handoff)
    handoff.priority = "emergency"
    handoff.status = "accepted"
    handoff.agent = request.agent
    handoff.accepted_at = now
    audit.record(session, at=now, kind="handoff_takeover", customer_id=handoff.customer_id,
                 channel="agent", session_id=handoff.session_id,
                 inputs={"handoff_id": handoff.id, "agent": request.agent, "alert": request.alert})
    return _detail(session, handoff, now)


def raise_priority(session: Session, request: HandoffRaisePriority, now: datetime) -> dict[str, Any]:
    """The conversation's waiting hand-over to emergency priority, left waiting for the next agent
    (for a call, the gateway moves it up Asterisk's queue). 404 without a waiting or held one, 409
    when an agent holds it; asked again, the same answer and one audit entry. `check_only`: the
    same answers, nothing changed."""
    sweep_abandoned_chats(session, now)
    handoff = session.scalar(select(Handoff).where(Handoff.session_id == request.session_id,
                                                   Handoff.status.in_(("waiting", "accepted")))
                             .order_by(Handoff.created_at.desc(), Handoff.id.desc()).limit(1).with_for_update())
    if handoff is None:
        raise not_found("no_waiting_handoff", "这个会话没有正在排队的转人工。")
    if handoff.status == "accepted":
        raise conflict("handoff_taken", "这位客户已经由坐席接起，无需再提高优先级。")
    if request.check_only:
        return _detail(session, handoff, now)
    if handoff.priority != "emergency":
        audit.record(session, at=now, kind="handoff_priority_raised", customer_id=handoff.customer_id,
                     channel="agent", session_id=handoff.session_id,
                     inputs={"handoff_id": handoff.id, "agent": request.agent, "alert": request.alert,
                             "previous_priority": handoff.priority})
        handoff.priority = "emergency"
    return _detail(session, handoff, now)


def close_handoff(session: Session, handoff_id: str, request: HandoffClose,
                  now: datetime) -> dict[str, Any]:
    """An accepted hand-over ends with its disposition: by the agent holding it, or by anyone
    the web server vouches for as a supervisor (override)."""
    handoff = session.get(Handoff, handoff_id, with_for_update=True)
    if handoff is None:
        raise _unknown_handoff()
    if handoff.status in UNCLAIMED:
        raise conflict("handoff_not_accepted", "这条转人工还没有坐席接起，接起后才能结束。")
    _refuse_if_ended(handoff)
    if handoff.agent != request.agent and not request.override:
        raise conflict("handoff_not_yours", "这条转人工由其他坐席接起，只有该坐席或主管可以结束。")
    handoff.status = "closed"
    handoff.closed_at = now
    handoff.closed_by = request.agent
    handoff.disposition = request.disposition
    handoff.close_note = mask_text(request.note) or None
    # The note stays out of the audit log: it is free text about the customer.
    audit.record(session, at=now, kind="handoff_close", customer_id=handoff.customer_id,
                 channel="agent", session_id=handoff.session_id,
                 inputs={"handoff_id": handoff_id, "agent": request.agent, "holder": handoff.agent,
                         "disposition": request.disposition, "override": request.override})
    return _view(session, handoff, now)


def handoff_do_not_call(session: Session, handoff_id: str, request: HandoffDoNotCall,
                        now: datetime) -> dict[str, Any]:
    """The customer of a hand-over asked the agent never to be called again: only the agent
    holding it (or a supervisor the web server vouches for) may say so, and only for a customer
    the conversation identified."""
    handoff = session.get(Handoff, handoff_id)
    if handoff is None:
        raise _unknown_handoff()
    if handoff.agent != request.agent and not request.override:
        raise conflict("handoff_not_yours", "这条转人工由其他坐席接起，只有该坐席或主管可以操作。")
    if handoff.customer_id is None:
        raise conflict("customer_not_identified", "这位客户未识别身份，无法加入免打扰名单。")
    return outbound.do_not_call(session, handoff.customer_id, now, channel="agent",
                                inputs={"source": "agent", "agent": request.agent, "handoff_id": handoff_id})


def leave_customer_note(session: Session, handoff_id: str, request: HandoffCustomerNote,
                        now: datetime) -> dict[str, Any]:
    """The waiting chat customer's message for the agent (a new one replaces the last)."""
    handoff = session.get(Handoff, handoff_id, with_for_update=True)
    # Another conversation's hand-over is as unknown as a missing one.
    if handoff is None or not hmac.compare_digest(handoff.session_id.encode(), request.session_id.encode()):
        raise _unknown_handoff()
    if handoff.status != "waiting":
        raise conflict("handoff_not_waiting", "客服已经接入或这次转人工已结束，留言没有保存。")
    handoff.customer_note = mask_text(request.text)
    audit.record(session, at=now, kind="handoff_customer_note", customer_id=handoff.customer_id,
                 channel=handoff.channel, session_id=handoff.session_id,
                 inputs={"handoff_id": handoff_id, "characters": len(request.text)})
    return _detail(session, handoff, now)


def withdraw_handoff(session: Session, handoff_id: str, request: HandoffWithdrawal, now: datetime) -> dict[str, Any]:
    """The waiting chat customer gives up the queue (for a callback instead): abandoned, ended now."""
    handoff = session.get(Handoff, handoff_id, with_for_update=True)
    if handoff is None or not hmac.compare_digest(handoff.session_id.encode(), request.session_id.encode()):
        raise _unknown_handoff()
    if handoff.status != "waiting":
        raise conflict("handoff_not_waiting", "客服已经接入或这次转人工已结束。")
    handoff.status = "abandoned"
    handoff.closed_at = now
    audit.record(session, at=now, kind="handoff_withdrawn", customer_id=handoff.customer_id,
                 channel=handoff.channel, session_id=handoff.session_id, inputs={"handoff_id": handoff_id})
    return _detail(session, handoff, now)


def phone_handoff_state(session: Session, handoff_id: str, request: HandoffCallState,
                        now: datetime) -> dict[str, Any]:
    """A phone hand-over leaves the waiting list when a queue member answers (accepted by that
    agent), the caller hangs up while waiting (abandoned, ended now), or the call left the queue
    while the gateway could not see it (unknown: not ended, off the waiting list, for an agent to
    take and close)."""
    handoff = session.get(Handoff, handoff_id, with_for_update=True)
    if handoff is None or handoff.channel not in ("voice", "outbound"):
        raise _unknown_handoff()
    if handoff.status != "waiting":
        raise conflict("handoff_closed", "这条转人工记录已经结束。")
    connected = request.state == "connected"
    handoff.status = {"connected": "accepted", "abandoned": "abandoned", "unknown": "unknown"}[request.state]
    handoff.agent = request.agent if connected else None
    handoff.accepted_at = now if connected else None
    handoff.closed_at = now if request.state == "abandoned" else None
    audit.record(session, at=now, kind=f"handoff_{request.state}", customer_id=handoff.customer_id,
                 channel=handoff.channel, session_id=handoff.session_id,
                 inputs={"handoff_id": handoff_id, "agent": request.agent})
    return _view(session, handoff, now)
