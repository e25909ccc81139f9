"""What each account action does to the account, once risk has allowed it.

Every handler runs inside the caller's transaction with the customer row locked, so two
actions on one account never interleave. Business refusals are outcomes, not errors.
"""
from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from risk_api import loans
from risk_api.dates import chinese_date
from risk_api.db import Card, Customer, LedgerEntry, new_id
from risk_api.masking import mask_card, mask_email, mask_phone
from risk_api.money import to_fen, yuan, yuan_text
from risk_api.reads import active_cards, latest_application
from risk_api.rules import RiskAction
from risk_api.schemas import PARAMS_BY_ACTION
from risk_api.sms import SmsMessage

RESTRUCTURE_FEE_RATE = 0.005  # per period, on the restructured bill
LIMIT_STEP_FEN = 100000  # limits move in steps of 1000 yuan
MAX_INCREASE_FEN = 2000000


@dataclass
class Operation:
    session: Session
    customer: Customer
    params: dict[str, Any]
    now: datetime
    outbox: list[SmsMessage] = field(default_factory=list)  # sent after commit


@dataclass(frozen=True)
class Outcome:
    status: str  # done | refused | pending_review
    result: dict[str, Any]
    message: str


def refused(message: str) -> Outcome:
    return Outcome("refused", {}, message)


def _verify_identity(op: Operation) -> Outcome:
    return Outcome("done", {"customer_id": op.customer.id}, "身份核验已通过。")


def _change_phone(op: Operation) -> Outcome:
    new_phone = op.params["new_phone"]
    if new_phone == op.customer.phone:
        return refused("新手机号与当前预留手机号相同，无需修改。")
    if op.session.scalar(select(Customer.id).where(Customer.phone == new_phone)):
        return refused("这个手机号已绑定其他账户，不能使用。")
    op.customer.phone = new_phone
    op.customer.phone_changed_on = op.now.date()
    return Outcome("done", {"masked_phone": mask_phone(new_phone)},
                   f"预留手机号已修改为{mask_phone(new_phone)}。")


def _reset_password(op: Operation) -> Outcome:
    kind = "登录密码" if op.params["kind"] == "login" else "交易密码"
    token = secrets.token_urlsafe(12)
    op.outbox.append(SmsMessage(
        to=op.customer.phone, customer_id=op.customer.id, kind="password_reset",
        text=f"【演示】您正在重置{kind}，请在10分钟内打开 https://example.invalid/reset/{token} "
             "完成设置。如非本人操作请忽略。"))
    masked = mask_phone(op.customer.phone)
    return Outcome("done", {"masked_phone": masked},
                   f"重置{kind}的链接已发送到您尾号{op.customer.phone[-4:]}的手机，请在10分钟内完成设置。")


def _update_profile(op: Operation) -> Outcome:
    setattr(op.customer, op.params["field"], op.params["value"])
    return Outcome("done", {"field": op.params["field"]}, "您的个人信息已更新。")


def _freeze_account(op: Operation) -> Outcome:
    customer = op.customer
    if customer.account_status == "closed":
        return refused("您的账户已注销，无需冻结。")
    if customer.account_status == "frozen" and customer.frozen_at is not None:
        return Outcome("done", {"frozen_at": customer.frozen_at.isoformat()},
                       "您的账户已经处于冻结状态。")
    customer.account_status = "frozen"
    customer.frozen_reason = "customer_request"
    customer.frozen_at = op.now
    return Outcome("done", {"frozen_at": op.now.isoformat()},
                   "已为您冻结账户，冻结期间无法借款和修改账户信息。")


def _unfreeze_account(op: Operation) -> Outcome:
    customer = op.customer
    if customer.account_status != "frozen":
        return refused("您的账户目前没有冻结，无需解冻。")
    customer.account_status = "active"
    customer.frozen_reason = None
    customer.frozen_at = None
    return Outcome("done", {"unfrozen_at": op.now.isoformat()}, "您的账户已解冻，可以正常使用了。")


def _has_open_business(op: Operation) -> bool:
    application = latest_application(op.session, op.customer.id)
    return (loans.active_loan(op.session, op.customer.id) is not None
            or (application is not None and application.status in ("reviewing", "approved")))


def _close_account(op: Operation) -> Outcome:
    if _has_open_business(op):
        return refused("您还有未结清的借款或进行中的申请，需要全部结清后才能注销账户。")
    op.customer.account_status = "closed"
    op.customer.closed_at = op.now
    return Outcome("done", {"closed_at": op.now.isoformat()}, "您的账户已注销。")


def _limit_increase(op: Operation) -> Outcome:
    old = op.customer.credit_limit_fen
    new = old
    if loans.limit_increase_eligible(op.session, op.customer, op.now.date()):
        new = old + min(old // 5, MAX_INCREASE_FEN) // LIMIT_STEP_FEN * LIMIT_STEP_FEN
    op.customer.credit_limit_fen = new
    message = (f"根据综合评估，您的额度已从{yuan_text(old)}元调整为{yuan_text(new)}元。"
               if new > old else "经过综合评估，您的额度暂时无法提升，保持按时还款有助于以后提额。")
    return Outcome("done", {"old_limit": yuan(old), "new_limit": yuan(new)}, message)


def _limit_decrease(op: Operation) -> Outcome:
    old = op.customer.credit_limit_fen
    new = to_fen(op.params["new_limit"])
    if new > old:
        return refused(f"新额度不能高于当前额度{yuan_text(old)}元。")
    op.customer.credit_limit_fen = new
    message = "您的额度已关闭。" if new == 0 else f"您的额度已调整为{yuan_text(new)}元。"
    return Outcome("done", {"old_limit": yuan(old), "new_limit": yuan(new)}, message)


def _cancel_loan(op: Operation) -> Outcome:
    application = latest_application(op.session, op.customer.id)
    if application is not None and application.status == "disbursed" and (
            loans.active_loan(op.session, op.customer.id) is not None):
        return refused("这笔借款已经放款，无法取消。如需归还，可以办理提前还款。")
    if application is None or application.status not in ("reviewing", "approved"):
        return refused("您目前没有可以取消的借款申请。")
    application.status = "cancelled"
    application.decided_on = op.now.date()
    return Outcome("done", {"application_id": application.id}, "您的借款申请已取消。")


def _receipt(op: Operation, loan_id: str, amount_fen: int, kind: str) -> str:
    receipt_no = new_id("RC")
    op.session.add(LedgerEntry(
        customer_id=op.customer.id, loan_id=loan_id, entry_date=op.now.date(),
        amount_fen=amount_fen, kind=kind, status="posted", failure_reason=None,
        expected_post_date=None, receipt_no=receipt_no))
    return receipt_no


def _early_repayment(op: Operation) -> Outcome:
    loan = loans.active_loan(op.session, op.customer.id)
    if loan is None:
        return refused("您目前没有需要结清的借款。")
    items = loans.open_installments(op.session, loan)
    quote = loans.payoff_quote(items, op.customer, op.now.date())
    for item in items:
        item.status = "paid"
        item.paid_on = op.now.date()
    loan.status = "settled"
    loan.settled_on = op.now.date()
    receipt_no = _receipt(op, loan.id, quote.total_fen, "early_repayment")
    return Outcome("done", {"paid_amount": yuan(quote.total_fen),
                            "settled_on": op.now.date().isoformat(), "receipt_no": receipt_no},
                   f"已为您结清借款，共还款{yuan_text(quote.total_fen)}元。")


def _partial_prepayment(op: Operation) -> Outcome:
    loan = loans.active_loan(op.session, op.customer.id)
    if loan is None:
        return refused("您目前没有需要还款的借款。")
    items = loans.open_installments(op.session, loan)
    principal = sum(item.principal_fen for item in items)
    amount = to_fen(op.params["amount"])
    if amount >= principal:
        return refused(f"部分提前还款的金额需要少于剩余本金{yuan_text(principal)}元；"
                       "如需全部还清，请办理提前结清。")
    remaining = principal - amount
    # Shrink every open instalment in proportion; the last one takes the rounding rest.
    assigned = 0
    for position, item in enumerate(items):
        if position == len(items) - 1:
            new_principal = remaining - assigned
        else:
            new_principal = item.principal_fen * remaining // principal
        item.interest_fen = item.interest_fen * remaining // principal
        item.principal_fen = new_principal
        assigned += new_principal
    receipt_no = _receipt(op, loan.id, amount, "partial_prepayment")
    return Outcome("done", {"paid_amount": yuan(amount), "remaining_principal": yuan(remaining),
                            "receipt_no": receipt_no},
                   f"已提前还款{yuan_text(amount)}元，剩余本金{yuan_text(remaining)}元。")


def _change_auto_debit(op: Operation) -> Outcome:
    op.customer.auto_debit = bool(op.params["enabled"])
    message = ("已为您开通自动扣款，还款日会从还款卡自动扣款。" if op.customer.auto_debit
               else "已为您关闭自动扣款，请记得在还款日前主动还款。")
    return Outcome("done", {"auto_debit": op.customer.auto_debit}, message)


def _current_bill(op: Operation) -> Any:
    loan = loans.active_loan(op.session, op.customer.id)
    return loans.current_bill(loans.open_installments(op.session, loan)) if loan else None


def _defer_repayment(op: Operation) -> Outcome:
    item = _current_bill(op)
    if item is None:
        return refused("您目前没有待还账单，无需延期。")
    if item.deferred:
        return refused("本期账单已经延期过一次，不能再次延期。")
    old_due = item.due_date
    item.due_date = old_due + timedelta(days=int(op.params["days"]))
    item.deferred = True
    return Outcome("done", {"old_due_date": old_due.isoformat(),
                            "new_due_date": item.due_date.isoformat()},
                   f"还款日已从{chinese_date(old_due)}延期到{chinese_date(item.due_date)}。")


def _restructure(op: Operation) -> Outcome:
    item = _current_bill(op)
    if item is None:
        return refused("您目前没有可以分期的账单。")
    periods = int(op.params["periods"])
    amount = loans.installment_total_fen(item) + loans.penalty_fen(item, op.now.date())
    fee = round(amount * RESTRUCTURE_FEE_RATE * periods)
    per_period = math.ceil((amount + fee) / periods)
    item.status = "restructured"
    item.fee_fen += fee
    return Outcome("done", {"periods": periods, "per_period_amount": yuan(per_period),
                            "fee_total": yuan(fee)},
                   f"本期账单已分{periods}期，每期约{yuan_text(per_period)}元，"
                   f"分期手续费共{yuan_text(fee)}元。")


def _change_bank_card(op: Operation) -> Outcome:
    number = op.params["card_number"]
    cards = active_cards(op.session, op.customer.id)
    chosen = next((card for card in cards if card.number == number), None)
    if chosen is None:
        chosen = Card(customer_id=op.customer.id, number=number, bank=op.params["bank"],
                      is_repayment=True, removed=False)
        op.session.add(chosen)
    for card in cards:
        card.is_repayment = card is chosen
    chosen.is_repayment = True
    return Outcome("done", {"card_masked": mask_card(number), "bank": chosen.bank},
                   f"还款卡已更换为{chosen.bank}尾号{number[-4:]}的银行卡。")


def _unbind_card(op: Operation) -> Outcome:
    tail = op.params["card_tail"]
    cards = active_cards(op.session, op.customer.id)
    card = next((card for card in cards if card.number.endswith(tail)), None)
    if card is None:
        return refused(f"没有找到尾号{tail}的银行卡。")
    if len(cards) == 1 and loans.active_loan(op.session, op.customer.id) is not None:
        return refused("这是您唯一的银行卡，借款还没有还清，暂时不能解绑。可以先绑定新卡再解绑。")
    card.removed = True
    if card.is_repayment:
        card.is_repayment = False
        others = [other for other in cards if other is not card]
        if others:
            others[0].is_repayment = True
    return Outcome("done", {"card_masked": mask_card(card.number)},
                   f"尾号{tail}的银行卡已解绑。")


def _delivery_masked(op: Operation) -> str:
    return "APP消息中心" if op.params["delivery"] == "app" else mask_email(op.customer.email)


def _issue_certificate(op: Operation) -> Outcome:
    if loans.active_loan(op.session, op.customer.id) is not None:
        return refused("您还有未结清的借款，结清后才能开具结清证明。")
    if loans.latest_loan(op.session, op.customer.id) is None:
        return refused("您没有已结清的借款，无法开具结清证明。")
    delivery = _delivery_masked(op)
    return Outcome("done", {"certificate_no": new_id("CERT"), "delivery_masked": delivery},
                   f"结清证明已开具，将发送到{delivery}。")


def _issue_invoice(op: Operation) -> Outcome:
    interest = sum(item.interest_fen for item in loans.paid_installments(op.session,
                                                                          op.customer.id))
    if interest == 0:
        return refused("您还没有已支付的利息，暂时无法开具发票。")
    delivery = _delivery_masked(op)
    return Outcome("done", {"invoice_no": new_id("INV"), "amount": yuan(interest),
                            "delivery_masked": delivery},
                   f"利息发票已开具，金额{yuan_text(interest)}元，将发送到{delivery}。")


OPERATIONS: dict[str, Callable[[Operation], Outcome]] = {
    "verify_identity": _verify_identity, "change_phone": _change_phone,
    "reset_password": _reset_password, "update_profile": _update_profile,
    "freeze_account": _freeze_account, "unfreeze_account": _unfreeze_account,
    "close_account": _close_account, "limit_increase": _limit_increase,
    "limit_decrease": _limit_decrease, "cancel_loan": _cancel_loan,
    "early_repayment": _early_repayment, "partial_prepayment": _partial_prepayment,
    "change_auto_debit": _change_auto_debit, "defer_repayment": _defer_repayment,
    "restructure": _restructure, "change_bank_card": _change_bank_card,
    "unbind_card": _unbind_card, "issue_certificate": _issue_certificate,
    "issue_invoice": _issue_invoice,
}


def contract_gaps() -> list[str]:
    """A risk action each of the three places must know: its name (rules.py RiskAction), its
    parameters (schemas.py PARAMS_BY_ACTION) and what it does (OPERATIONS above). The flow linter
    reports these; the risk API refuses to start with any (an allowed action without an operation
    would fail only when a customer asks for it)."""
    actions = set(get_args(RiskAction))
    return ([f"{name} has no parameters in risk_api/schemas.py PARAMS_BY_ACTION"
             for name in sorted(actions - PARAMS_BY_ACTION.keys())]
            + [f"{name} has no operation in risk_api/operations.py OPERATIONS"
               for name in sorted(actions - OPERATIONS.keys())]
            + [f"{name} is not a risk action (risk_api/rules.py RiskAction)"
               for name in sorted((PARAMS_BY_ACTION.keys() | OPERATIONS.keys()) - actions)])
