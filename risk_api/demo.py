"""Deterministic demo data: 240 obviously synthetic customers, 10 per persona tag.

Names, ID numbers, phones, cards and amounts come from a fixed seed; dates are relative to
the day of generation so that e.g. "due in 3 days" is true on the day the database is seeded.
`personas()` gives the tests and the demo the clear-text credentials of one customer per tag.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from random import Random
from typing import Any

from sqlalchemy.orm import Session

from risk_api.clock import CHINA_TZ
from risk_api.dates import add_months, add_working_days
from risk_api.db import DEFAULT_CUSTOMER_TIMEZONE, Application, Card, Customer, Installment, LedgerEntry, Loan

SEED = 20240917
PERSONA_TAGS = (
    "normal", "settled", "overdue", "due_soon", "frozen", "frozen_fraud", "temp_limit_expired",
    "loan_reviewing", "loan_rejected", "disbursed_not_arrived", "disbursed_today",
    "auto_debit_off", "single_card", "recent_phone_change", "recent_device_change",
    "shared_device", "multi_lender", "elderly", "hardship", "do_not_call",
    "duplicate_deduction", "repayment_failed", "repayment_pending", "vip",
)
CUSTOMERS_PER_TAG = 40
SHARED_DEVICE_GROUP = 5  # shared_device customers are grouped five to a device
SURNAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何林罗高"
# "测" (test) in every given name makes the names obviously synthetic.
GIVEN_NAMES = "甲乙丙丁戊己庚辛壬癸"
BANKS = (("招商银行", "6214"), ("中国建设银行", "6217"), ("中国工商银行", "6222"),
         ("中国农业银行", "6228"), ("中国银行", "6216"), ("交通银行", "6225"))
CITIES = ((39.90, 116.40), (31.23, 121.47), (23.13, 113.26), (30.57, 104.07), (34.34, 108.94))
LOAN_PERIODS = 12
# Customers living outside China's time zone, by their occurrence within their tag: the sixth of
# each tag lives in Xinjiang on local time, the seventh in London (outbound calls keep their hours).
TIMEZONE_BY_OCCURRENCE = {5: "Asia/Urumqi", 6: "Europe/London"}


@dataclass(frozen=True)
class Identity:
    index: int
    customer_id: str
    tag: str
    name: str
    gender: str
    birth_date: date
    id_number: str
    phone: str

    @property
    def occurrence(self) -> int:
        """0 for the first customer with this tag, 1 for the second, ..."""
        return self.index // len(PERSONA_TAGS)

    def credentials(self) -> dict[str, Any]:
        title = "先生" if self.gender == "M" else "女士"
        return {
            "customer_id": self.customer_id, "tag": self.tag, "name": self.name,
            "phone": self.phone, "id_last4": self.id_number[-4:], "id_number": self.id_number,
            "gender": self.gender, "salutation": self.name[0] + title,
            "birth_date": self.birth_date.isoformat(),
        }


def identities() -> list[Identity]:
    rng = Random(SEED)
    people = []
    for index in range(len(PERSONA_TAGS) * CUSTOMERS_PER_TAG):
        tag = PERSONA_TAGS[index % len(PERSONA_TAGS)]
        birth_year = rng.randint(1945, 1958) if tag == "elderly" else rng.randint(1972, 2001)
        birth = date(birth_year, rng.randint(1, 12), rng.randint(1, 28))
        check_digit = rng.choice("0123456789")  # no X: keypads and digit slots cannot say it
        people.append(Identity(
            index=index,
            customer_id=f"C{100001 + index}",
            tag=tag,
            name=rng.choice(SURNAMES) + "测" + rng.choice(GIVEN_NAMES),
            gender=rng.choice("MF"),
            birth_date=birth,
            id_number=f"000000{birth:%Y%m%d}{index % 1000:03d}{check_digit}",
            phone=f"1990000{index + 1:04d}",
        ))
    return people


def customers_with_tag(tag: str) -> list[dict[str, Any]]:
    if tag not in PERSONA_TAGS:
        raise KeyError(f"unknown persona tag {tag!r}; known: {', '.join(PERSONA_TAGS)}")
    return [person.credentials() for person in identities() if person.tag == tag]


def personas() -> dict[str, dict[str, Any]]:
    """Per persona tag, the clear-text credentials of its first customer."""
    first: dict[str, dict[str, Any]] = {}
    for person in identities():
        first.setdefault(person.tag, person.credentials())
    return first


def seed(session: Session, now: datetime) -> None:
    rng = Random(SEED + 1)
    rows = [row for person in identities() for row in _customer_rows(person, rng, now)]
    # Parents first: without ORM relationships the flush does not order inserts by foreign key.
    for table in (Customer, Loan, Card, Application, Installment, LedgerEntry):
        session.add_all([row for row in rows if isinstance(row, table)])
        session.flush()


@dataclass(frozen=True)
class _Draws:
    """All random draws of one customer, taken up front so that the sequence never
    depends on the date (identical data whatever the day of generation)."""

    limit_yuan: int
    apr_bp: int
    principal_yuan: int
    city: tuple[float, float]
    card_count: int
    banks: list[tuple[str, str]]
    card_digits: list[int]
    paid_periods: int
    days_to_due: int
    overdue_days: int
    device_age_days: int
    phone_age_days: int


def _draw(rng: Random) -> _Draws:
    return _Draws(
        limit_yuan=rng.choice((20000, 30000, 50000, 80000)),
        apr_bp=rng.choice((1080, 1440, 1800, 2340)),
        principal_yuan=rng.choice((6000, 12000, 18000, 24000)),
        city=rng.choice(CITIES),
        card_count=rng.randint(1, 3),
        banks=rng.sample(BANKS, 3),
        card_digits=[rng.randrange(10**8) for _ in range(3)],
        paid_periods=rng.randint(3, 8),
        days_to_due=rng.randint(8, 25),
        overdue_days=rng.randint(1, 3),
        device_age_days=rng.randint(60, 400),
        phone_age_days=rng.randint(100, 700),
    )


def _customer_rows(person: Identity, rng: Random, now: datetime) -> list[Any]:
    draws = _draw(rng)
    today = now.date()
    tag = person.tag
    card_count = {"single_card": 1, "normal": 2}.get(tag, draws.card_count)
    cards = [
        Card(customer_id=person.customer_id, number=f"{prefix}0000{digits:08d}", bank=bank,
             is_repayment=position == 0, removed=False)
        for position, ((bank, prefix), digits)
        in enumerate(zip(draws.banks[:card_count], draws.card_digits, strict=False))
    ]
    customer = _customer(person, draws, now)
    rows: list[Any] = [customer, *cards]
    rows += _loans_and_applications(person, draws, now, cards[0])
    if tag == "repayment_failed":
        rows.append(LedgerEntry(
            customer_id=person.customer_id, loan_id=None, entry_date=today - timedelta(days=1),
            amount_fen=_next_amount(rows), kind="repayment", status="failed",
            failure_reason="银行卡余额不足", expected_post_date=None, receipt_no=None))
    if tag == "repayment_pending":
        rows.append(LedgerEntry(
            customer_id=person.customer_id, loan_id=None, entry_date=today,
            amount_fen=_next_amount(rows), kind="repayment", status="pending",
            failure_reason=None, expected_post_date=today + timedelta(days=1), receipt_no=None))
    return rows


def _customer(person: Identity, draws: _Draws, now: datetime) -> Customer:
    today = now.date()
    tag = person.tag
    frozen_reason = {"frozen": "customer_request", "frozen_fraud": "fraud"}.get(tag)
    real_name = {8: "unverified", 9: "pending"}.get(person.occurrence, "verified")
    if tag == "shared_device":
        device_id = f"DEV-SHARED-{person.occurrence // SHARED_DEVICE_GROUP}"
    else:
        device_id = f"DEV-{person.index:04d}"
    lender_days = (3, 8, 15, 22) if tag == "multi_lender" else (120,)
    temp_limit_fen, temp_expires = {
        "temp_limit_expired": (500000, today - timedelta(days=20)),
        "vip": (1000000, today + timedelta(days=40)),
    }.get(tag, (0, None))
    return Customer(
        id=person.customer_id, persona=tag, name=person.name, gender=person.gender,
        birth_date=person.birth_date, id_number=person.id_number, phone=person.phone,
        email=f"demo{person.index + 1:04d}@example.com",
        vip=tag == "vip", hardship=tag == "hardship", do_not_call=tag == "do_not_call",
        marketing_opt_out=tag == "do_not_call",
        account_status="frozen" if frozen_reason else "active", frozen_reason=frozen_reason,
        frozen_at=now - timedelta(days=1) if frozen_reason else None, closed_at=None,
        real_name_status=real_name, auto_debit=tag != "auto_debit_off",
        phone_changed_on=today - timedelta(
            days=10 if tag == "recent_phone_change" else draws.phone_age_days),
        device_id=device_id,
        device_changed_on=today - timedelta(
            days=2 if tag == "recent_device_change" else draws.device_age_days),
        usual_lat=draws.city[0], usual_lon=draws.city[1],
        timezone=TIMEZONE_BY_OCCURRENCE.get(person.occurrence, DEFAULT_CUSTOMER_TIMEZONE),
        other_lender_applications=[(today - timedelta(days=d)).isoformat() for d in lender_days],
        credit_limit_fen=(200000 if tag == "vip" else draws.limit_yuan) * 100,
        temp_limit_fen=temp_limit_fen, temp_limit_expires_on=temp_expires,
        apr_bp=draws.apr_bp, address=None, employer=None, emergency_contact=None,
    )


def _loans_and_applications(
    person: Identity, draws: _Draws, now: datetime, card: Card
) -> list[Any]:
    today = now.date()
    tag = person.tag
    cid = person.customer_id
    if tag == "loan_rejected":
        return [Application(
            id=f"A{person.index + 1:05d}", customer_id=cid, status="rejected",
            amount_fen=2000000, applied_on=today - timedelta(days=5),
            decided_on=today - timedelta(days=4), retry_after=today + timedelta(days=26))]
    if tag in ("settled", "loan_reviewing"):
        first_due = add_months(today, -LOAN_PERIODS - 2)
        rows = _loan(person, draws, card, first_due, LOAN_PERIODS,
                     _at(add_months(first_due, -1), 10), arrived=True)
        if tag == "loan_reviewing":
            rows.append(Application(
                id=f"A{person.index + 1:05d}R", customer_id=cid, status="reviewing",
                amount_fen=1000000, applied_on=today - timedelta(days=1), decided_on=None,
                retry_after=None))
        return rows
    if tag in ("disbursed_not_arrived", "disbursed_today"):
        disbursed_at = (now - timedelta(minutes=30) if tag == "disbursed_today"
                        else _at(add_working_days(today, -2), 10))
        return _loan(person, draws, card, add_months(disbursed_at.date(), 1), 0, disbursed_at,
                     arrived=False)
    next_due = today + timedelta(days={
        "overdue": -draws.overdue_days, "due_soon": 3, "repayment_failed": 2,
        "repayment_pending": 1}.get(tag, draws.days_to_due))
    first_due = add_months(next_due, -draws.paid_periods)
    return _loan(person, draws, card, first_due, draws.paid_periods,
                 _at(add_months(first_due, -1), 10), arrived=True)


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=CHINA_TZ)


def _loan(person: Identity, draws: _Draws, card: Card, first_due: date, paid_periods: int,
          disbursed_at: datetime, *, arrived: bool) -> list[Any]:
    loan_id = f"L{person.index + 1:05d}"
    principal_fen = min(draws.principal_yuan, draws.limit_yuan) * 100
    settled = paid_periods >= LOAN_PERIODS
    loan = Loan(
        id=loan_id, customer_id=person.customer_id, contract_no=f"HT-DEMO-{person.index + 1:05d}",
        principal_fen=principal_fen, periods=LOAN_PERIODS, signed_on=disbursed_at.date(),
        status="settled" if settled else "active",
        settled_on=add_months(first_due, LOAN_PERIODS - 1) if settled else None,
        disbursed_at=disbursed_at,
        arrived_at=disbursed_at + timedelta(hours=2) if arrived else None,
        card_number=card.number, bank=card.bank)
    rows: list[Any] = [loan, Application(
        id=f"A{person.index + 1:05d}", customer_id=person.customer_id, status="disbursed",
        amount_fen=principal_fen, applied_on=disbursed_at.date() - timedelta(days=1),
        decided_on=disbursed_at.date(), retry_after=None)]
    remaining = principal_fen
    for period in range(1, LOAN_PERIODS + 1):
        share = principal_fen // LOAN_PERIODS
        principal = remaining if period == LOAN_PERIODS else share
        interest = round(remaining * draws.apr_bp / 10000 / 12)
        due = add_months(first_due, period - 1)
        paid = period <= paid_periods
        rows.append(Installment(
            loan_id=loan_id, period=period, due_date=due, principal_fen=principal,
            interest_fen=interest, fee_fen=0, status="paid" if paid else "unpaid",
            paid_on=due if paid else None, deferred=False))
        if paid:
            rows += _repayment_entries(person, loan_id, due, principal + interest,
                                       duplicate=period == paid_periods)
        remaining -= principal
    return rows


def _repayment_entries(person: Identity, loan_id: str, day: date, amount_fen: int, *,
                       duplicate: bool) -> list[LedgerEntry]:
    count = 2 if duplicate and person.tag == "duplicate_deduction" else 1
    return [LedgerEntry(
        customer_id=person.customer_id, loan_id=loan_id, entry_date=day, amount_fen=amount_fen,
        kind="repayment", status="posted", failure_reason=None, expected_post_date=None,
        receipt_no=f"RC-DEMO-{loan_id}-{day:%Y%m%d}-{n}") for n in range(count)]


def _next_amount(rows: list[Any]) -> int:
    unpaid = [row for row in rows if isinstance(row, Installment) and row.status == "unpaid"]
    first = min(unpaid, key=lambda row: row.period)
    return first.principal_fen + first.interest_fen
