"""Loan arithmetic shared by the reads and the actions: open instalments, penalties, payoff."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from risk_api.dates import add_months
from risk_api.db import Customer, Installment, Loan

PENALTY_DAILY_RATE = 0.0005  # 万分之五 per day on the overdue instalment
OPEN_STATUSES = ("unpaid", "restructured")


@dataclass(frozen=True)
class PayoffQuote:
    principal_fen: int
    interest_fen: int
    fees_fen: int

    @property
    def total_fen(self) -> int:
        return self.principal_fen + self.interest_fen + self.fees_fen


def active_loan(session: Session, customer_id: str) -> Loan | None:
    return session.scalar(select(Loan).where(Loan.customer_id == customer_id,
                                             Loan.status == "active")
                          .order_by(Loan.disbursed_at.desc()).limit(1))


def latest_loan(session: Session, customer_id: str) -> Loan | None:
    return session.scalar(select(Loan).where(Loan.customer_id == customer_id)
                          .order_by(Loan.disbursed_at.desc()).limit(1))


def open_installments(session: Session, loan: Loan) -> list[Installment]:
    return list(session.scalars(select(Installment)
                                .where(Installment.loan_id == loan.id,
                                       Installment.status.in_(OPEN_STATUSES))
                                .order_by(Installment.period)))


def paid_installments(session: Session, customer_id: str) -> list[Installment]:
    return list(session.scalars(select(Installment).join(Loan)
                                .where(Loan.customer_id == customer_id,
                                       Installment.status == "paid")))


def current_bill(installments: list[Installment]) -> Installment | None:
    return next((item for item in installments if item.status == "unpaid"), None)


def overdue_days(item: Installment, today: date) -> int:
    return max(0, (today - item.due_date).days) if item.status == "unpaid" else 0


def penalty_fen(item: Installment, today: date) -> int:
    base = item.principal_fen + item.interest_fen
    return round(base * PENALTY_DAILY_RATE * overdue_days(item, today))


def installment_total_fen(item: Installment) -> int:
    return item.principal_fen + item.interest_fen + item.fee_fen


def is_overdue(session: Session, customer_id: str, today: date) -> bool:
    loan = active_loan(session, customer_id)
    return loan is not None and any(
        overdue_days(item, today) for item in open_installments(session, loan))


def payoff_quote(installments: list[Installment], customer: Customer, today: date
                 ) -> PayoffQuote:
    """Today's settlement: open principal, interest due so far, fees and penalties."""
    principal = sum(item.principal_fen for item in installments)
    past = [item for item in installments if item.due_date < today]
    interest = sum(item.interest_fen for item in past)
    fees = sum(item.fee_fen + penalty_fen(item, today) for item in past)
    current = next((item for item in installments if item.due_date >= today), None)
    if current is not None:
        days = max(0, (today - add_months(current.due_date, -1)).days)
        remaining = sum(item.principal_fen for item in installments if item.due_date >= today)
        accrued = round(remaining * customer.apr_bp / 10000 / 365 * days)
        interest += min(accrued, current.interest_fen)
    return PayoffQuote(principal, interest, fees)


def limit_increase_eligible(session: Session, customer: Customer, today: date) -> bool:
    return (customer.account_status == "active" and not is_overdue(session, customer.id, today)
            and len(paid_installments(session, customer.id)) >= 3)
