"""The dialler's routes (dialer role only): whom a campaign selects, how to reach one customer just
before a call, and opt-outs the dialler learnt in a call (docs/risk-api.md, "Outbound dialling").

What the dialler gets, and why (docs/outbound.md, "Personal data"):
- the selection carries ids, the bill's due date (the cycle a reminder is about) or, for a
  satisfaction callback, the day of the contact it asks about, the time zone and the do-not-call
  facts, never a number or a name: planning 100,000 customers moves no personal data;
- the contact route gives one customer's full number, because Asterisk cannot dial a masked
  one, just before that customer's call, with fresh do-not-call facts and whether they still
  match the selection; every such release is audited (masked) as `outbound_contact`;
- do-not-call sets the customer's flag; it is audited with its source.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, StringConstraints, model_validator
from sqlalchemy import Date, Select, func, literal, select
from sqlalchemy.orm import Session

from risk_api import audit
from risk_api.clock import CHINA_TZ
from risk_api.db import AuditEntry, Customer, Installment, Loan, lock_customer
from risk_api.errors import unknown_customer
from risk_api.schemas import Body, CustomerId

# Each customer's time zone (customers.timezone) goes with them: the dialler checks the calling
# hours in the customer's local time.
MAX_IDS = 2000  # a CSV's ids per request (the dialler sends 1,000): well inside the 64 KiB body limit
# A contact, for a satisfaction callback: the customer verified in a chat or a call of their own
# (not in one of the dialler's calls), by the assistant or an agent's desk.
CONTACT_KINDS = ("verification_l1", "verification_l2")
CONTACT_CHANNELS = ("chat", "voice")
SURVEY_DAYS = 2  # days after its planned day a callback about a contact is still made (retries)


class OverdueDays(Body):
    min: int = Field(ge=1, le=180)
    max: int = Field(ge=1, le=180)

    @model_validator(mode="after")
    def _ordered(self) -> OverdueDays:
        if self.min > self.max:
            raise ValueError("overdue_days.min must not be above overdue_days.max")
        return self


class Criteria(Body):
    """Due in exactly N days (the current bill), the oldest unpaid bill overdue min..max days, or a
    contact N days ago (0: today; a satisfaction callback)."""

    due_in_days: int | None = Field(default=None, ge=0, le=30)
    overdue_days: OverdueDays | None = None
    contacted_days_ago: int | None = Field(default=None, ge=0, le=7)

    @model_validator(mode="after")
    def _one(self) -> Criteria:
        given = [self.due_in_days is not None, self.overdue_days is not None, self.contacted_days_ago is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of due_in_days, overdue_days and contacted_days_ago")
        return self


class SelectionRequest(Body):
    due_in_days: int | None = Field(default=None, ge=0, le=30)
    overdue_days: OverdueDays | None = None
    contacted_days_ago: int | None = Field(default=None, ge=0, le=7)
    customer_ids: list[CustomerId] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    limit: int = Field(default=1000, ge=1, le=5000)
    after: CustomerId | None = None

    @model_validator(mode="after")
    def _one(self) -> SelectionRequest:
        given = [self.due_in_days is not None, self.overdue_days is not None, self.contacted_days_ago is not None,
                 self.customer_ids is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of due_in_days, overdue_days, contacted_days_ago and customer_ids")
        if self.customer_ids is not None:
            if len(set(self.customer_ids)) != len(self.customer_ids):
                raise ValueError("customer_ids lists an id twice")
            if self.after is not None:
                raise ValueError("after pages a due_in_days, overdue_days or contacted_days_ago selection, "
                                 "not customer_ids")
        return self


class SelectedCustomer(BaseModel):
    customer_id: str
    reference: str | None  # the due date of the bill the call is about; null for customer_ids
    timezone: str
    do_not_call: bool
    marketing_opt_out: bool
    account_status: Literal["active", "frozen", "closed"]


class SelectionResponse(BaseModel):
    customers: list[SelectedCustomer]
    unknown_ids: list[str]
    next_after: str | None  # pass as `after` for the next page; null on the last


class ContactRequest(Body):
    customer_id: CustomerId
    selection: Criteria | None = None


class ContactResponse(BaseModel):
    customer_id: str
    phone: str  # the full number: the dialler dials it (only this route gives it; audited)
    timezone: str
    do_not_call: bool
    marketing_opt_out: bool
    selected: bool  # still in the stage of `selection` (true without one)
    # The due date of the oldest unpaid bill; with a contacted_days_ago selection, the day of the
    # customer's latest contact (null: none)
    reference: str | None


AttemptId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]


class DoNotCallRequest(Body):
    customer_id: CustomerId
    source: Literal["conversation", "agent", "complaint"]
    attempt_id: AttemptId | None = None


class DoNotCallResponse(BaseModel):
    customer_id: str
    do_not_call: bool


def _first_unpaid() -> Any:
    """Per customer, the due date of their oldest unpaid instalment of an active loan."""
    return (select(Loan.customer_id.label("customer_id"), func.min(Installment.due_date).label("due"))
            .join(Loan, Installment.loan_id == Loan.id)
            .where(Loan.status == "active", Installment.status == "unpaid")
            .group_by(Loan.customer_id).subquery())


def _contacts() -> Select[Any]:
    """Verified contacts of the customers' own (audit entries): customer id and time."""
    return (select(AuditEntry.customer_id, AuditEntry.at)
            .where(AuditEntry.kind.in_(CONTACT_KINDS), AuditEntry.decision == "verified",
                   AuditEntry.channel.in_(CONTACT_CHANNELS), AuditEntry.customer_id.is_not(None)))


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=CHINA_TZ)
    return start, start + timedelta(days=1)


def _matching(today: date, criteria: SelectionRequest) -> Select[Any]:
    """Customers whose oldest unpaid bill is due in exactly N days, or overdue min..max days; or who
    had a contact N days ago (China date): each with its reference date."""
    if criteria.contacted_days_ago is not None:
        day = today - timedelta(days=criteria.contacted_days_ago)
        start, end = _day_bounds(day)
        contacted = _contacts().where(AuditEntry.at >= start, AuditEntry.at < end).subquery()
        return select(Customer, literal(day, Date)).where(Customer.id.in_(select(contacted.c.customer_id)))
    bills = _first_unpaid()
    query = select(Customer, bills.c.due).join(bills, bills.c.customer_id == Customer.id)
    if criteria.due_in_days is not None:
        return query.where(bills.c.due == today + timedelta(days=criteria.due_in_days))
    overdue = criteria.overdue_days
    assert overdue is not None
    return query.where(bills.c.due >= today - timedelta(days=overdue.max),
                       bills.c.due <= today - timedelta(days=overdue.min))


def _last_contact(session: Session, customer_id: str, today: date) -> date | None:
    """The China date of the customer's latest contact up to the end of today."""
    _, end = _day_bounds(today)
    contacts = _contacts().where(AuditEntry.customer_id == customer_id, AuditEntry.at < end).subquery()
    latest = session.scalar(select(func.max(contacts.c.at)))
    return latest.astimezone(CHINA_TZ).date() if latest is not None else None


def _in_stage(due: date, today: date, criteria: Criteria) -> bool:
    """Whether a customer selected earlier is still in the selection's stage: a due-date reminder's
    bill not yet overdue (due within N days), an overdue bill still within min..max days (a later
    stage is another campaign's). Retries on the following days stay in their series. A callback
    about a contact (`due`: its day) is made up to SURVEY_DAYS after its planned day."""
    if criteria.contacted_days_ago is not None:
        return criteria.contacted_days_ago <= (today - due).days <= criteria.contacted_days_ago + SURVEY_DAYS
    if criteria.due_in_days is not None:
        return today <= due <= today + timedelta(days=criteria.due_in_days)
    assert criteria.overdue_days is not None
    return criteria.overdue_days.min <= (today - due).days <= criteria.overdue_days.max


def _selected(customer: Customer, due: date | None) -> dict[str, Any]:
    return {"customer_id": customer.id, "reference": due.isoformat() if due else None, "timezone": customer.timezone,
            "do_not_call": customer.do_not_call, "marketing_opt_out": customer.marketing_opt_out,
            "account_status": customer.account_status}


def select_customers(session: Session, body: SelectionRequest, now: datetime) -> dict[str, Any]:
    if body.customer_ids is not None:
        found = {customer.id: customer for customer in
                 session.scalars(select(Customer).where(Customer.id.in_(body.customer_ids)))}
        customers = [_selected(found[cid], None) for cid in body.customer_ids if cid in found]
        unknown = [cid for cid in body.customer_ids if cid not in found]
        criteria: dict[str, Any] = {"customer_ids": len(body.customer_ids)}
        next_after = None
    else:
        query = _matching(now.date(), body).order_by(Customer.id)
        if body.after is not None:
            query = query.where(Customer.id > body.after)
        rows = list(session.execute(query.limit(body.limit + 1)))
        page = rows[:body.limit]
        customers = [_selected(customer, reference) for customer, reference in page]
        unknown = []
        next_after = page[-1][0].id if len(rows) > body.limit else None
        criteria = body.model_dump(mode="json", include={"due_in_days", "overdue_days", "contacted_days_ago", "after"},
                                   exclude_none=True)
    audit.record(session, at=now, kind="outbound_selection", channel="outbound",
                 inputs={**criteria, "selected": len(customers), "unknown": len(unknown)})
    return {"customers": customers, "unknown_ids": unknown, "next_after": next_after}


def contact(session: Session, body: ContactRequest, now: datetime) -> dict[str, Any]:
    customer = session.get(Customer, body.customer_id)
    if customer is None:
        raise unknown_customer()
    if body.selection is not None and body.selection.contacted_days_ago is not None:
        due = _last_contact(session, customer.id, now.date())
    else:
        bills = _first_unpaid()
        due = session.scalar(select(bills.c.due).where(bills.c.customer_id == customer.id))
    reference = due.isoformat() if due is not None else None
    selected = True
    if body.selection is not None:
        selected = due is not None and _in_stage(due, now.date(), body.selection)
    audit.record(session, at=now, kind="outbound_contact", customer_id=customer.id, channel="outbound",
                 inputs={"phone": customer.phone, "selected": selected})  # masked by audit.record
    return {"customer_id": customer.id, "phone": customer.phone, "timezone": customer.timezone,
            "do_not_call": customer.do_not_call, "marketing_opt_out": customer.marketing_opt_out,
            "selected": selected, "reference": reference}


def do_not_call(session: Session, customer_id: str, now: datetime, *, channel: str,
                inputs: dict[str, Any]) -> dict[str, Any]:
    """The customer's do-not-call flag set, audited with who asked (`inputs`): the dialler for an
    opt-out in a call, or an agent on the desk."""
    customer = lock_customer(session, customer_id)
    if customer is None:
        raise unknown_customer()
    customer.do_not_call = True
    audit.record(session, at=now, kind="do_not_call", customer_id=customer.id, channel=channel, inputs=inputs)
    return {"customer_id": customer.id, "do_not_call": True}


def routes(api: APIRouter, run: Callable[[Callable[[Session], Any]], Any], now: Callable[[], datetime]) -> None:
    """The dialer role's routes on `api` (its router checks the role)."""

    @api.post("/outbound/selection", response_model=SelectionResponse)
    def outbound_selection(body: SelectionRequest) -> dict[str, Any]:
        """A campaign's customers, by id, without numbers; pages of `limit` in id order."""
        return run(lambda session: select_customers(session, body, now()))

    @api.post("/outbound/contact", response_model=ContactResponse)
    def outbound_contact(body: ContactRequest) -> dict[str, Any]:
        """One customer's number and fresh do-not-call facts, just before their call."""
        return run(lambda session: contact(session, body, now()))

    @api.post("/outbound/do-not-call", response_model=DoNotCallResponse)
    def outbound_do_not_call(body: DoNotCallRequest) -> dict[str, Any]:
        """The customer asked not to be called again (in a call, or through an agent)."""
        return run(lambda session: do_not_call(session, body.customer_id, now(), channel="outbound",
                                               inputs={"source": body.source, "attempt_id": body.attempt_id}))

