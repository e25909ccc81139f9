"""Account reads for the flow templates (docs/risk-api.md, "Account reads")."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from risk_api import loans
from risk_api.dates import add_working_days, chinese_date
from risk_api.db import Application, Card, Customer, LedgerEntry
from risk_api.masking import mask_card, mask_email, mask_name, mask_phone
from risk_api.money import yuan, yuan_text

FROZEN_REASON_TEXT = {
    "customer_request": "账户已按您本人的申请冻结（例如手机丢失挂失），"
                        "完成身份验证后可以申请解冻。",
    "fraud": "系统检测到账户存在安全风险，为保护您的资金已临时冻结，需要专人核实后处理。",
}
REAL_NAME_TEXT = {
    "verified": "您已完成实名认证。",
    "pending": "您的实名认证资料正在审核中，一般1个工作日内完成。",
    "unverified": "您还没有完成实名认证，请在APP“我的-实名认证”中上传身份证并完成人脸识别。",
}
APPLICATION_TEXT = {
    "reviewing": "您的借款申请正在审核中，一般30分钟内出结果，结果会短信通知您。",
    "approved": "您的借款申请已审核通过，正在安排放款。",
    "rejected": "您的借款申请本次未通过审核。",
    "disbursed": "您的借款已放款。",
    "cancelled": "您的借款申请已取消。",
    "none": "您目前没有借款申请记录。",
}
LEDGER_FAILURE_TEXT = "银行卡余额不足，请存入足够金额后重新还款，或更换还款卡。"

Read = Callable[[Session, Customer, datetime], dict[str, Any]]


def age_on(birth_date: date, today: date) -> int:
    return today.year - birth_date.year - ((today.month, today.day)
                                           < (birth_date.month, birth_date.day))


def salutation(customer: Customer) -> str:
    return customer.name[0] + ("先生" if customer.gender == "M" else "女士")


def summary(customer: Customer, today: date) -> dict[str, Any]:
    age = age_on(customer.birth_date, today)
    return {
        "customer_id": customer.id, "masked_name": mask_name(customer.name),
        "salutation": salutation(customer), "age": age, "elderly": age >= 65,
        "vip": customer.vip, "hardship": customer.hardship, "do_not_call": customer.do_not_call,
        "marketing_opt_out": customer.marketing_opt_out,
        "account_status": customer.account_status, "tags": [customer.persona],
        "timezone": customer.timezone,
    }


def frozen_reason_text(customer: Customer) -> str:
    if customer.account_status == "frozen":
        return FROZEN_REASON_TEXT.get(customer.frozen_reason or "", "账户已冻结。")
    return "您的账户状态正常，没有被冻结。"


def profile(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    overdue = loans.is_overdue(session, customer.id, now.date())
    return {
        **summary(customer, now.date()),
        "real_name_status": customer.real_name_status,
        "real_name_status_text": REAL_NAME_TEXT[customer.real_name_status],
        "frozen": customer.account_status == "frozen",
        "frozen_reason_text": frozen_reason_text(customer),
        "auto_debit": customer.auto_debit,
        "repayment_record_text": "您当前有逾期未还的款项。" if overdue else "近半年还款记录良好。",
        "masked_phone": mask_phone(customer.phone), "masked_email": mask_email(customer.email),
    }


def _used_fen(session: Session, customer: Customer) -> int:
    loan = loans.active_loan(session, customer.id)
    return sum(i.principal_fen for i in loans.open_installments(session, loan)) if loan else 0


def limits(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    today = now.date()
    used = _used_fen(session, customer)
    frozen = customer.account_status != "active"
    expires = customer.temp_limit_expires_on
    temp_active = customer.temp_limit_fen > 0 and expires is not None and expires >= today
    if customer.temp_limit_fen == 0 or expires is None:
        temp_text = "您目前没有临时额度。"
    elif temp_active:
        temp_text = (f"您有临时额度{yuan_text(customer.temp_limit_fen)}元，有效期到"
                     f"{chinese_date(expires)}，到期后自动失效。")
    else:
        temp_text = (f"您的临时额度{yuan_text(customer.temp_limit_fen)}元"
                     f"已于{chinese_date(expires)}到期自动失效。临时额度有固定有效期，到期失效不影响您的固定额度。")
    eligible = loans.limit_increase_eligible(session, customer, today)
    return {
        "total": yuan(customer.credit_limit_fen), "used": yuan(used),
        "available": 0.0 if frozen else yuan(max(0, customer.credit_limit_fen - used)),
        "frozen": frozen, "frozen_reason_text": frozen_reason_text(customer),
        "temporary_amount": yuan(customer.temp_limit_fen),
        "temporary_expires_on": expires.isoformat() if expires else None,
        "temporary_active": temp_active, "temporary_status_text": temp_text,
        "increase_eligible": eligible,
        "increase_text": ("您符合提额评估条件，可以申请提额，最终额度以系统评估结果为准。"
                          if eligible else "您暂时不符合提额条件，保持按时还款有助于提升额度。"),
    }


def bill(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    today = now.date()
    loan = loans.active_loan(session, customer.id)
    item = loans.current_bill(loans.open_installments(session, loan)) if loan else None
    if item is None:
        return {"period": None, "amount_due": 0.0, "principal": 0.0, "interest": 0.0,
                "fees": 0.0, "penalty_interest": 0.0, "paid_amount": 0.0, "due_date": None,
                "days_until_due": None, "overdue": False, "overdue_days": 0,
                "minimum_payment": 0.0, "minimum_payment_cost_text": "",
                "status_text": "您目前没有待还账单。"}
    penalty = loans.penalty_fen(item, today)
    due = loans.installment_total_fen(item) + penalty
    minimum = round(item.principal_fen * 0.1) + item.interest_fen + item.fee_fen + penalty
    days_left = (item.due_date - today).days
    late = loans.overdue_days(item, today)
    if late:
        status = f"本期账单已逾期{late}天，应还{yuan_text(due)}元，请尽快还款，避免产生更多罚息。"
    elif days_left == 0:
        status = f"今天是还款日，本期应还{yuan_text(due)}元。"
    else:
        status = (f"本期应还{yuan_text(due)}元，还款日是{chinese_date(item.due_date)}，"
                  f"还有{days_left}天。")
    return {
        "period": item.period, "amount_due": yuan(due), "principal": yuan(item.principal_fen),
        "interest": yuan(item.interest_fen), "fees": yuan(item.fee_fen),
        "penalty_interest": yuan(penalty), "paid_amount": 0.0,
        "due_date": item.due_date.isoformat(), "days_until_due": days_left,
        "overdue": late > 0, "overdue_days": late, "minimum_payment": yuan(minimum),
        "minimum_payment_cost_text": (
            f"只还最低还款额{yuan_text(minimum)}元不算逾期，剩余{yuan_text(due - minimum)}元会"
            f"继续按日利率{customer.apr_bp / 365 / 100:.3f}%计息，总利息会增加。"),
        "status_text": status,
    }


def schedule(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    today = now.date()
    loan = loans.active_loan(session, customer.id)
    items = loans.open_installments(session, loan) if loan else []
    current = loans.current_bill(items)

    def status(item: Any) -> str:
        if item.status == "restructured":
            return "restructured"
        if loans.overdue_days(item, today):
            return "overdue"
        return "due" if item is current else "upcoming"

    return {
        "loan_id": loan.id if loan else None, "remaining_periods": len(items),
        "remaining_total": yuan(sum(loans.installment_total_fen(i) for i in items)),
        "next_due_date": current.due_date.isoformat() if current else None,
        "next_amount": yuan(loans.installment_total_fen(current)) if current else 0.0,
        "installments": [{
            "period": i.period, "due_date": i.due_date.isoformat(),
            "amount": yuan(loans.installment_total_fen(i)), "principal": yuan(i.principal_fen),
            "interest": yuan(i.interest_fen), "status": status(i),
        } for i in items],
    }


def payoff_quote(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    loan = loans.active_loan(session, customer.id)
    quote = loans.payoff_quote(loans.open_installments(session, loan) if loan else [],
                               customer, now.date())
    return {"loan_id": loan.id if loan else None, "quote_date": now.date().isoformat(),
            "principal": yuan(quote.principal_fen), "interest": yuan(quote.interest_fen),
            "fees": yuan(quote.fees_fen), "total": yuan(quote.total_fen),
            "has_active_loan": loan is not None}


def latest_application(session: Session, customer_id: str) -> Application | None:
    return session.scalar(select(Application).where(Application.customer_id == customer_id)
                          .order_by(Application.applied_on.desc(), Application.id.desc())
                          .limit(1))


def loan_application(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    app = latest_application(session, customer.id)
    status = app.status if app else "none"
    retry = app.retry_after if app else None
    rejection = None
    if status == "rejected":
        rejection = ("本次申请暂未通过，这是系统根据您的综合信用情况评估的结果"
                     + (f"，您可以在{chinese_date(retry)}之后再次申请。" if retry else "。"))
    return {
        "application_id": app.id if app else None, "status": status,
        "status_text": APPLICATION_TEXT[status], "amount": yuan(app.amount_fen) if app else 0.0,
        "applied_on": app.applied_on.isoformat() if app else None,
        "decided_on": app.decided_on.isoformat() if app and app.decided_on else None,
        "rejection_text": rejection, "retry_after": retry.isoformat() if retry else None,
        "cancellable": status in ("reviewing", "approved"),
    }


def disbursement(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    loan = loans.latest_loan(session, customer.id)
    if loan is None:
        return {"loan_id": None, "amount": 0.0, "disbursed_at": None, "card_masked": None,
                "bank": None, "arrived": False, "expected_by": None, "arrival_overdue": False,
                "timing_text": "您目前没有放款记录。"}
    expected_by = add_working_days(loan.disbursed_at.date(), 1)
    arrived = loan.arrived_at is not None
    overdue = not arrived and now.date() > expected_by
    if arrived:
        timing = "款项已经到账，请查看您的收款银行卡。"
    elif overdue:
        timing = "已超过预计到账时间，需要人工为您核查放款进度。"
    else:
        timing = (f"银行入账一般在放款当天完成，最晚在{chinese_date(expected_by)}前到账，"
                  "请耐心等待。")
    return {
        "loan_id": loan.id, "amount": yuan(loan.principal_fen),
        "disbursed_at": loan.disbursed_at.isoformat(), "card_masked": mask_card(loan.card_number),
        "bank": loan.bank, "arrived": arrived, "expected_by": expected_by.isoformat(),
        "arrival_overdue": overdue, "timing_text": timing,
    }


def active_cards(session: Session, customer_id: str) -> list[Card]:
    return list(session.scalars(select(Card).where(Card.customer_id == customer_id,
                                                   Card.removed.is_(False)).order_by(Card.id)))


def cards(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    bound = active_cards(session, customer.id)
    repayment = next((card for card in bound if card.is_repayment), None)
    return {
        "count": len(bound),
        "repayment_card_masked": mask_card(repayment.number) if repayment else None,
        "repayment_bank": repayment.bank if repayment else None,
        # The repayment card first, so "the other card" is cards[1] for a template or test.
        "cards": [{"card_masked": mask_card(card.number), "tail": card.number[-4:], "bank": card.bank,
                   "is_repayment_card": card.is_repayment}
                  for card in sorted(bound, key=lambda card: not card.is_repayment)],
    }


def ledger(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    entries = list(session.scalars(select(LedgerEntry)
                                   .where(LedgerEntry.customer_id == customer.id)
                                   .order_by(LedgerEntry.entry_date.desc(), LedgerEntry.id.desc())))
    repayments = [entry for entry in entries if entry.kind != "disbursement"]
    last = repayments[0] if repayments else None
    posted = Counter((e.loan_id, e.entry_date, e.amount_fen, e.kind)
                     for e in repayments if e.status == "posted" and e.kind == "repayment")
    duplicate = next((key for key, count in posted.items() if count > 1), None)
    return {
        "last_repayment_status": last.status if last else "none",
        "last_repayment_amount": yuan(last.amount_fen) if last else 0.0,
        "last_repayment_date": last.entry_date.isoformat() if last else None,
        "failure_reason_text": (LEDGER_FAILURE_TEXT if last and last.status == "failed"
                                else None),
        "expected_post_date": (last.expected_post_date.isoformat()
                               if last and last.expected_post_date else None),
        "duplicate_deduction": duplicate is not None,
        "duplicate_deduction_text": (
            f"{chinese_date(duplicate[1])}有两笔{yuan_text(duplicate[2])}元的相同扣款，"
            "可能是重复扣款，需要人工核实后为您退回。" if duplicate else "没有发现重复扣款。"),
        "entries": [{"date": e.entry_date.isoformat(), "amount": yuan(e.amount_fen),
                     "kind": e.kind, "status": e.status} for e in entries[:20]],
    }


def interest(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    loan = loans.active_loan(session, customer.id)
    items = loans.open_installments(session, loan) if loan else []
    apr = customer.apr_bp / 100
    return {
        "apr": apr, "daily_rate": round(apr / 365, 4),
        "interest_method_text": (f"利息按日计算，年化利率{apr:g}%，日利率约{apr / 365:.3f}%，"
                                 "按实际使用天数和剩余本金计息，提前还款可以少付利息。"),
        "penalty_rate_text": "逾期后按逾期未还金额每日万分之五计收罚息。",
        "penalty_interest_total": yuan(sum(loans.penalty_fen(i, now.date()) for i in items)),
    }


def contract(session: Session, customer: Customer, now: datetime) -> dict[str, Any]:
    loan = loans.latest_loan(session, customer.id)
    return {"loan_id": loan.id if loan else None,
            "contract_no": loan.contract_no if loan else None,
            "signed_on": loan.signed_on.isoformat() if loan else None,
            "delivery_email_masked": mask_email(customer.email)}


READS: dict[str, Read] = {
    "profile": profile, "limits": limits, "bill": bill, "schedule": schedule,
    "payoff_quote": payoff_quote, "loan_application": loan_application,
    "disbursement": disbursement, "cards": cards, "ledger": ledger, "interest": interest,
    "contract": contract,
}
