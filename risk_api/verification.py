"""Identity verification: L1, one-time codes and L2.

L1 has two methods, each allowed on the channels rules.yaml's `l1_methods` lists:
- `phone_name_id4`: the phone number, the name and the last 4 characters of the ID number;
- `line_id6`: for callers who can only use the keypad, no name but the line of the call as the
  phone gateway vouched for it (`vouch_for_line`, the gateway's role only: never a number the
  engine or the caller names) and the last 6 characters of the ID number instead of 4: the day
  of birth besides the sequence number and check character, for the name the caller cannot say
  (about 1 in 340,000 per guess against 1 in 11,000). The check character X is keyed as `*`;
  the phone channel sends it as X.

Failures count per conversation and per customer (or per unregistered phone, so that unknown
numbers look the same as wrong answers), whichever the method. Three failures lock the
conversation for 30 minutes; the customer's own verification locks only after more failures,
across conversations, and the customer is told by SMS. So one conversation that knows a phone
number can no longer lock its owner out (chat sessions are rate-limited per source by the web
server).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import get_args

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from risk_api import audit
from risk_api.db import AuditEntry, Customer, OtpCode, VerificationSubject, VerifiedSession, VouchedLine
from risk_api.errors import ApiError, conflict, unknown_customer, verification_required
from risk_api.masking import mask_phone
from risk_api.rules import L1Method, RulesConfig
from risk_api.schemas import (
    Audited,
    L1Methods,
    L1Request,
    L1Response,
    L2Request,
    L2Response,
    LineL1Request,
    LineVouch,
    LineVouchResponse,
    OtpRequest,
    OtpResponse,
)
from risk_api.sms import SmsMessage
from trust.logs import session_ref

log = logging.getLogger("risk_api.verification")

MAX_FAILURES = 3  # per conversation
CUSTOMER_MAX_FAILURES = 5  # per customer, across conversations
LOCK_DURATION = timedelta(minutes=30)
SESSION_DURATION = timedelta(minutes=30)
OTP_LIFETIME = timedelta(minutes=5)
OTP_ATTEMPTS = 3
# SMS codes cost money and pester the phone's owner: a conversation gets 3 in 10 minutes (a
# first code and two after wrong answers); a customer gets `otp_sends_per_customer_hour` (5) an
# hour across conversations (Settings).
OTP_SENDS_PER_SESSION = 3
OTP_SESSION_WINDOW = timedelta(minutes=10)
OTP_CUSTOMER_WINDOW = timedelta(hours=1)
LEVEL_RANK = {"L1": 1, "L2": 2}
# How long the gateway's word on a call's line holds: longer than any call (a call back from the
# agents' queue is vouched for again).
LINE_LIFETIME = timedelta(hours=2)


def _subject(session: Session, key: str) -> VerificationSubject:
    """The failure counter row, created if missing and locked for this transaction."""
    query = select(VerificationSubject).where(VerificationSubject.key == key).with_for_update()
    subject = session.scalar(query)
    if subject is None:
        try:
            with session.begin_nested():
                session.add(VerificationSubject(key=key, failures=0, locked_until=None))
        except IntegrityError:
            pass  # created by a concurrent request: lock that one
        subject = session.scalars(query).one()
    return subject


def _session_key(session_id: str) -> str:
    # A digest: session ids may be longer than the key column (40).
    return "session:" + hashlib.sha256(session_id.encode()).hexdigest()[:32]


def _check_not_locked(subject: VerificationSubject, now: datetime) -> None:
    if subject.locked_until is not None and subject.locked_until > now:
        raise ApiError(423, "verification_locked",
                       "身份核验连续多次未通过，为保护您的账户安全已暂时锁定30分钟，请稍后再试或转人工客服。",
                       locked_until=subject.locked_until.isoformat())


def _register_failure(subject: VerificationSubject, now: datetime, limit: int) -> bool:
    """Counts a failure; True when it locks the subject."""
    subject.failures += 1
    if subject.failures >= limit:
        subject.locked_until = now + LOCK_DURATION
        subject.failures = 0  # the next round after the lock starts afresh
        return True
    return False


def _attempts_left(subject: VerificationSubject, now: datetime, limit: int = MAX_FAILURES) -> int:
    locked = subject.locked_until is not None and subject.locked_until > now
    return 0 if locked else limit - subject.failures


def _locked_notice(customer: Customer | None) -> list[SmsMessage]:
    if customer is None:
        return []
    return [SmsMessage(to=customer.phone, customer_id=customer.id, kind="verification_locked", code=None,
                       text="【演示】您的账户身份核验连续多次未通过，已暂时锁定30分钟。如非本人操作，请致电客服热线。")]


def _fail(session_subject: VerificationSubject, subject: VerificationSubject, customer: Customer | None,
          now: datetime) -> list[SmsMessage]:
    _register_failure(session_subject, now, MAX_FAILURES)
    return _locked_notice(customer) if _register_failure(subject, now, CUSTOMER_MAX_FAILURES) else []


def _left(session_subject: VerificationSubject, subject: VerificationSubject, now: datetime) -> int:
    return min(_attempts_left(session_subject, now), _attempts_left(subject, now, CUSTOMER_MAX_FAILURES))


def _lock_end(session_subject: VerificationSubject, subject: VerificationSubject,
              now: datetime) -> datetime | None:
    ends = [end for end in (_locked_until(session_subject, now), _locked_until(subject, now)) if end]
    return max(ends) if ends else None


def _locked_until(subject: VerificationSubject, now: datetime) -> datetime | None:
    locked = subject.locked_until is not None and subject.locked_until > now
    return subject.locked_until if locked else None


def _verified_session(session: Session, session_id: str) -> VerifiedSession | None:
    return session.scalar(select(VerifiedSession)
                          .where(VerifiedSession.session_id == session_id).with_for_update())


def verify_l1(session: Session, rules: RulesConfig, request: L1Request,
              now: datetime) -> tuple[L1Response, list[SmsMessage]]:
    """Phone, name and ID last 4 (`phone_name_id4`)."""
    _check_method(rules, "phone_name_id4", request)
    return _verify_l1(session, request, request.phone, "phone_name_id4", now, lambda customer: (
        customer.name == request.name and _same(customer.id_number[-4:], request.id_last4)))


def verify_l1_line(session: Session, rules: RulesConfig, request: LineL1Request,
                   now: datetime) -> tuple[L1Response, list[SmsMessage]]:
    """The line the gateway vouched for and ID last 6 (`line_id6`)."""
    _check_method(rules, "line_id6", request)
    line = _vouched_line(session, request, now)
    if line is None:
        log.warning("session %s: L1 by a line no gateway vouched for on %s", session_ref(request.session_id),
                    request.channel)
        raise _method_refused()
    return _verify_l1(session, request, line.phone, "line_id6", now,
                      lambda customer: _same(customer.id_number[-6:], request.id_last6))


def _same(on_file: str, given: str) -> bool:
    """ID characters, in constant time; x and X alike."""
    return hmac.compare_digest(on_file.upper(), given.upper())


def _verify_l1(session: Session, request: Audited, phone: str, method: L1Method, now: datetime,
               proves: Callable[[Customer], bool]) -> tuple[L1Response, list[SmsMessage]]:
    """One L1 attempt: `phone` says whom it is about, `proves` checks the answers against them."""
    customer = session.scalar(select(Customer).where(Customer.phone == phone))
    subject = _subject(session, f"customer:{customer.id}" if customer else f"phone:{phone}")
    session_subject = _subject(session, _session_key(request.session_id))
    _check_not_locked(session_subject, now)
    _check_not_locked(subject, now)
    notices: list[SmsMessage] = []
    matched = customer is not None and proves(customer)
    if matched and customer is not None:
        subject.failures = session_subject.failures = 0
        _set_session_level(session, request.session_id, customer.id, "L1", now)
    else:
        notices = _fail(session_subject, subject, customer, now)
    audit.record(session, at=now, kind="verification_l1", inputs={**request.model_dump(), "method": method},
                 customer_id=customer.id if customer else None, channel=request.channel,
                 session_id=request.session_id, decision="verified" if matched else "failed")
    return L1Response(verified=matched, level="L1" if matched else None,
                      customer_id=customer.id if matched and customer else None,
                      attempts_left=_left(session_subject, subject, now),
                      locked_until=_lock_end(session_subject, subject, now)), notices


def _check_method(rules: RulesConfig, method: L1Method, request: Audited) -> None:
    if not rules.allows_l1(method, request.channel):
        log.warning("session %s: L1 method %s is off on %s (rules.yaml l1_methods)",
                    session_ref(request.session_id), method, request.channel)
        raise _method_refused()


def _method_refused() -> ApiError:
    # Not a wrong answer (nothing counts toward a lock): this conversation cannot verify this way.
    return ApiError(403, "verification_method_refused", "抱歉，当前无法通过这种方式核验身份，请转人工客服为您办理。")


def vouch_for_line(session: Session, request: LineVouch, now: datetime) -> LineVouchResponse:
    """The phone gateway's word on which line this call comes from; said again, it replaces the
    previous word and holds for another LINE_LIFETIME."""
    expires_at = now + LINE_LIFETIME
    session.merge(VouchedLine(session_id=request.session_id, channel=request.channel, phone=request.phone,
                              expires_at=expires_at))
    customer_id = session.scalar(select(Customer.id).where(Customer.phone == request.phone))
    audit.record(session, at=now, kind="line_vouched", inputs=request.model_dump(), customer_id=customer_id,
                 channel=request.channel, session_id=request.session_id)
    return LineVouchResponse(expires_at=expires_at)


def l1_methods(session: Session, rules: RulesConfig, request: Audited, now: datetime) -> L1Methods:
    allowed = [method for method in get_args(L1Method) if rules.allows_l1(method, request.channel)]
    if "line_id6" in allowed and _vouched_line(session, request, now) is None:
        allowed.remove("line_id6")
    return L1Methods(methods=allowed)


def _vouched_line(session: Session, request: Audited, now: datetime) -> VouchedLine | None:
    """The line the gateway vouched for this conversation, on its channel, still holding."""
    line = session.get(VouchedLine, request.session_id)
    return line if line is not None and line.channel == request.channel and line.expires_at > now else None


def _set_session_level(session: Session, session_id: str, customer_id: str, level: str,
                       now: datetime) -> None:
    state = _verified_session(session, session_id)
    if state is None or state.customer_id != customer_id:
        if state is not None:
            session.delete(state)
            session.flush()
        state = VerifiedSession(session_id=session_id, customer_id=customer_id, level=level,
                                expires_at=now, last_l2_at=None, step_up_requested_at=None)
        session.add(state)
    if level == "L2" or state.level != "L2" or state.expires_at <= now:
        state.level = level
    state.expires_at = now + SESSION_DURATION
    if level == "L2":
        state.last_l2_at = now


def session_level(session: Session, session_id: str | None, customer_id: str,
                  now: datetime) -> VerifiedSession | None:
    if not session_id:
        return None
    state = _verified_session(session, session_id)
    if state is None or state.customer_id != customer_id or state.expires_at <= now:
        return None
    return state


def live_session(session: Session, session_id: str, now: datetime) -> VerifiedSession | None:
    """The conversation's verified session, whichever customer it proved to be, if still live."""
    state = _verified_session(session, session_id)
    return state if state is not None and state.expires_at > now else None


def require_level(session: Session, session_id: str | None, customer_id: str, level: str,
                  now: datetime) -> VerifiedSession:
    state = session_level(session, session_id, customer_id, now)
    if state is None or LEVEL_RANK[state.level] < LEVEL_RANK[level]:
        raise verification_required()
    return state


def _code_hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


def _check_otp_quota(session: Session, customer_id: str, session_id: str, now: datetime,
                     per_customer_hour: int) -> None:
    for limit, window, per_session in ((OTP_SENDS_PER_SESSION, OTP_SESSION_WINDOW, True),
                                       (per_customer_hour, OTP_CUSTOMER_WINDOW, False)):
        sent = (select(func.min(AuditEntry.at), func.count()).where(
            AuditEntry.customer_id == customer_id, AuditEntry.kind == "otp_sent",
            AuditEntry.at > now - window))
        if per_session:
            sent = sent.where(AuditEntry.session_id == session_id)
        oldest, count = session.execute(sent).one()
        if count >= limit:
            raise ApiError(429, "otp_rate_limited", "验证码发送过于频繁，请稍后再试，或转人工客服为您办理。",
                           retry_after_seconds=max(1, int((oldest + window - now).total_seconds())))


def send_otp(session: Session, request: OtpRequest, now: datetime, per_customer_hour: int
             ) -> tuple[OtpResponse, SmsMessage]:
    """Stores a new code (replacing the previous one); the caller sends the SMS after commit."""
    customer = session.get(Customer, request.customer_id)
    if customer is None:
        raise unknown_customer()
    _check_not_locked(_subject(session, _session_key(request.session_id)), now)
    _check_not_locked(_subject(session, f"customer:{customer.id}"), now)
    if session_level(session, request.session_id, customer.id, now) is None:
        raise conflict("l1_required", "请先完成基本身份核验（手机号、姓名和身份证后四位）。")
    _check_otp_quota(session, customer.id, request.session_id, now, per_customer_hour)
    code = f"{secrets.randbelow(10**6):06d}"
    salt = secrets.token_hex(8)
    existing = session.get(OtpCode, customer.id, with_for_update=True)
    if existing is not None:
        session.delete(existing)
        session.flush()
    session.add(OtpCode(customer_id=customer.id, session_id=request.session_id, salt=salt,
                        code_hash=_code_hash(salt, code), expires_at=now + OTP_LIFETIME,
                        attempts_left=OTP_ATTEMPTS))
    audit.record(session, at=now, kind="otp_sent", inputs=request.model_dump(),
                 customer_id=customer.id, channel=request.channel, session_id=request.session_id)
    message = SmsMessage(
        to=customer.phone, customer_id=customer.id, kind="otp", code=code,
        text=f"【演示】您的验证码为{code}，5分钟内有效。工作人员不会向您索要验证码，请勿告诉他人。")
    response = OtpResponse(sent=True, masked_phone=mask_phone(customer.phone),
                           expires_in_seconds=int(OTP_LIFETIME.total_seconds()))
    return response, message


def verify_l2(session: Session, request: L2Request, now: datetime) -> tuple[L2Response, list[SmsMessage]]:
    customer = session.get(Customer, request.customer_id)
    if customer is None:
        raise unknown_customer()
    subject = _subject(session, f"customer:{customer.id}")
    session_subject = _subject(session, _session_key(request.session_id))
    _check_not_locked(session_subject, now)
    _check_not_locked(subject, now)
    notices: list[SmsMessage] = []
    if session_level(session, request.session_id, customer.id, now) is None:
        raise conflict("l1_required", "请先完成基本身份核验（手机号、姓名和身份证后四位）。")
    otp = session.get(OtpCode, customer.id, with_for_update=True)
    usable = (otp is not None and otp.session_id == request.session_id
              and otp.expires_at > now and otp.attempts_left > 0)
    matched = usable and otp is not None and hmac.compare_digest(
        otp.code_hash, _code_hash(otp.salt, request.code))
    if matched:
        subject.failures = session_subject.failures = 0
        session.delete(otp)
        _set_session_level(session, request.session_id, customer.id, "L2", now)
    else:
        if usable and otp is not None:
            otp.attempts_left -= 1
        notices = _fail(session_subject, subject, customer, now)
    audit.record(session, at=now, kind="verification_l2", inputs=request.model_dump(),
                 customer_id=customer.id, channel=request.channel,
                 session_id=request.session_id, decision="verified" if matched else "failed")
    code_attempts = otp.attempts_left if usable and otp is not None and not matched else 0
    attempts_left = _left(session_subject, subject, now)
    if not matched and code_attempts:
        attempts_left = min(attempts_left, code_attempts)
    return L2Response(verified=matched, level="L2" if matched else None,
                      attempts_left=attempts_left, locked_until=_lock_end(session_subject, subject, now)), notices
