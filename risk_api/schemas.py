"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these)."""
from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from risk_api.rules import Channel, Decision, L1Method, LineChannel, RiskAction

# Session ids are the channels' own ids (Rasa sender ids, phone-call ids): anything printable.
SessionId = Annotated[str, StringConstraints(min_length=1, max_length=128,
                                             pattern=r"^[^\s\x00]+$")]
Phone = Annotated[str, StringConstraints(pattern=r"^1[0-9]{10}$")]
NO_NUL = r"^[^\x00]*$"
CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=NO_NUL)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
AgentName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


def _two_decimals(value: float) -> float:
    if round(value, 2) != value:
        raise ValueError("金额最多保留两位小数")
    return value


Amount = Annotated[float, Field(gt=0, le=10_000_000), AfterValidator(_two_decimals)]


def _unstorable(value: Any) -> str | None:
    """What in a JSON body the databases cannot store: NUL in text (PostgreSQL), NaN or an
    infinity (JSON columns). Python's JSON parser accepts both."""
    if isinstance(value, str) and "\x00" in value:
        return "text must not contain NUL characters"
    if isinstance(value, float) and not math.isfinite(value):
        return "numbers must be finite (no NaN or Infinity)"
    children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    if isinstance(children, list):
        return next((problem for child in children if (problem := _unstorable(child))), None)
    return None


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # Refused here as a 422, not a 500 when the database refuses it later.
        if problem := _unstorable(data):
            raise ValueError(problem)
        return data


class Audited(Body):
    session_id: SessionId
    channel: Channel


# ---------------------------------------------------------------- customers & verification
class CustomerSummary(BaseModel):
    customer_id: str
    masked_name: str
    salutation: str
    age: int
    elderly: bool
    vip: bool
    hardship: bool
    do_not_call: bool
    marketing_opt_out: bool
    account_status: Literal["active", "frozen", "closed"]
    tags: list[str]
    timezone: str  # IANA zone of where the customer lives (outbound calling hours are local)


class LookupRequest(Body):
    """By the number calling (inbound), or by the customer a dialer called (outbound)."""
    phone: Phone | None = None
    customer_id: CustomerId | None = None

    @model_validator(mode="after")
    def _one_key(self) -> LookupRequest:
        if (self.phone is None) == (self.customer_id is None):
            raise ValueError("give exactly one of phone and customer_id")
        return self


class CallerSummary(CustomerSummary):
    phone: str  # the number on file: an outbound call's "caller number" is the one the dialer called


class SessionState(BaseModel):
    customer_id: str
    level: Literal["L1", "L2"]
    expires_at: datetime


class L1Request(Audited):
    phone: Phone
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    id_last4: Annotated[str, StringConstraints(pattern=r"^[0-9]{3}[0-9Xx]$")]


class LineL1Request(Audited):
    """L1 by the call's line (rules.yaml `l1_methods.line_id6`): the number is the one the phone
    gateway vouched for this session (`LineVouch`), never one the request names."""
    id_last6: Annotated[str, StringConstraints(pattern=r"^[0-9]{5}[0-9Xx]$")]


class L1Response(BaseModel):
    verified: bool
    level: Literal["L1"] | None
    customer_id: str | None
    attempts_left: int
    locked_until: datetime | None


class L1Methods(BaseModel):
    """The L1 methods this conversation may use now: the rules' for its channel, `line_id6` only
    while the phone gateway vouches for its line."""
    methods: list[L1Method]


class LineVouch(Audited):
    """The phone gateway's word on the line a call comes from (its role only)."""
    channel: LineChannel
    phone: Phone


class LineVouchResponse(BaseModel):
    expires_at: datetime


class OtpRequest(Audited):
    customer_id: CustomerId


class OtpResponse(BaseModel):
    sent: bool
    masked_phone: str
    expires_in_seconds: int


class L2Request(Audited):
    customer_id: CustomerId
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class L2Response(BaseModel):
    verified: bool
    level: Literal["L2"] | None
    attempts_left: int
    locked_until: datetime | None


# ---------------------------------------------------------------- decisions & actions
class GeoPoint(Body):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class DecisionRequest(Audited):
    action: RiskAction
    params: dict[str, Any] = Field(default_factory=dict)
    device_id: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    location: GeoPoint | None = None


class DecisionResponse(BaseModel):
    decision_id: str
    action: str
    decision: Decision
    reasons: list[str]
    explanation: str
    review_id: str | None


class ActionRequest(Audited):
    decision_id: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    params: dict[str, Any] = Field(default_factory=dict)


class ActionResponse(BaseModel):
    action: str
    status: Literal["done", "refused", "pending_review"]
    result: dict[str, Any]
    message: str


# Per-action parameters (lax: flows render templates, so "3000" arrives as a string).
class NoParams(Body):
    pass


class ChangePhoneParams(Body):
    new_phone: Phone


class ResetPasswordParams(Body):
    kind: Literal["login", "trade"]


class UpdateProfileParams(Body):
    field: Literal["address", "employer", "emergency_contact"]
    value: ShortText


class FreezeParams(Body):
    reason: ShortText = "客户申请冻结"


class LimitDecreaseParams(Body):
    new_limit: Annotated[float, Field(ge=0, le=10_000_000), AfterValidator(_two_decimals)]


class PartialPrepaymentParams(Body):
    amount: Amount


class AutoDebitParams(Body):
    enabled: bool


class DeferParams(Body):
    days: int = Field(ge=1, le=7)


def _restructure_periods(value: int) -> int:
    if value not in (3, 6, 12):
        raise ValueError("分期期数只能是3、6或12期")
    return value


class RestructureParams(Body):
    periods: Annotated[int, AfterValidator(_restructure_periods)]


class ChangeBankCardParams(Body):
    bank: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=20)]
    card_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{16,19}$")]


class UnbindCardParams(Body):
    card_tail: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]


class DeliveryParams(Body):
    delivery: Literal["app", "email"]


PARAMS_BY_ACTION: dict[str, type[Body]] = {
    "verify_identity": NoParams, "change_phone": ChangePhoneParams,
    "reset_password": ResetPasswordParams, "update_profile": UpdateProfileParams,
    "freeze_account": FreezeParams, "unfreeze_account": NoParams, "close_account": NoParams,
    "limit_increase": NoParams, "limit_decrease": LimitDecreaseParams, "cancel_loan": NoParams,
    "early_repayment": NoParams, "partial_prepayment": PartialPrepaymentParams,
    "change_auto_debit": AutoDebitParams, "defer_repayment": DeferParams,
    "restructure": RestructureParams, "change_bank_card": ChangeBankCardParams,
    "unbind_card": UnbindCardParams, "issue_certificate": DeliveryParams,
    "issue_invoice": DeliveryParams,
}


# ---------------------------------------------------------------- service records
TicketKind = Literal[
    "complaint", "collection_complaint", "bill_dispute", "fraud_report",
    "unauthorized_transaction", "credit_report_dispute", "privacy_request", "fee_waiver",
    "hardship", "repayment_proposal", "penalty_dispute", "deduction_issue", "survey",
]


class TicketRequest(Audited):
    kind: TicketKind
    customer_id: CustomerId | None = None
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=1000)]
    details: dict[str, Any] = Field(default_factory=dict)


class TicketResponse(BaseModel):
    ticket_id: str
    kind: str
    status: Literal["open"]


class PromiseRequest(Audited):
    date: date
    amount: float = Field(allow_inf_nan=False)


class PromiseResponse(BaseModel):
    promise_id: str
    date: date
    amount: float


class PreferencesRequest(Body):
    marketing_opt_out: StrictBool
    session_id: SessionId | None = None
    channel: Channel | None = None


class PreferencesResponse(BaseModel):
    customer_id: str
    marketing_opt_out: bool


class CallbackRequest(Audited):
    customer_id: CustomerId | None = None
    phone: Phone | None = None  # none: the verified customer's number on file
    # ISO 8601 or what the customer said ("明天下午三点"); unreadable text = next service slot.
    preferred_time: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                     max_length=100)]


class CallbackResponse(BaseModel):
    callback_id: str
    scheduled_for: datetime


class HandoffRequest(Audited):
    flow: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    reason: ShortText
    priority: Literal["normal", "high", "emergency"]
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=2000)]
    customer_id: CustomerId | None = None
    verified_level: Literal["none", "L1", "L2"] | None = None


class QueueFacts(BaseModel):
    """Where a hand-over stands in the desk's queue (position and wait only while it waits)."""
    agents_online: int  # agents whose last heartbeat said online within PRESENCE_TTL_SECONDS
    position: int | None  # 1-based place among the waiting hand-overs, in the desk's queue order
    estimated_wait_seconds: int | None


class HandoffResponse(QueueFacts):
    handoff_id: str


HandoffStatus = Literal["waiting", "accepted", "closed", "abandoned", "unknown"]
Disposition = Literal["resolved", "callback_booked", "ticket", "escalated"]


class HandoffView(BaseModel):
    """A hand-over as the desk lists it: never the conversation's session id. Times are ISO 8601
    with offset; waiting_seconds runs until an agent accepts or it ends (null for a hand-over
    abandoned before schema version 2, whose end was not recorded)."""
    handoff_id: str
    channel: str
    flow: str
    reason: str
    priority: str
    summary: str
    customer_id: str | None
    masked_phone: str | None  # the customer's number on file, e.g. 138****5678
    verified_level: str | None
    status: HandoffStatus
    agent: str | None
    created_at: str
    accepted_at: str | None
    closed_at: str | None
    closed_by: str | None
    disposition: Disposition | None
    close_note: str | None
    customer_note: str | None
    waiting_seconds: int | None
    handling_seconds: int | None  # closed_at - accepted_at, once closed


class HandoffDetail(HandoffView, QueueFacts):
    """One hand-over for the web server: with its session id (never for a browser)."""
    session_id: str


class HandoffAccept(Body):
    agent: AgentName


Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class HandoffClose(Body):
    agent: AgentName  # the agent logged in to the desk
    disposition: Disposition
    note: Note = ""
    override: StrictBool = False  # the web server sets it only for supervisors


class HandoffDoNotCall(Body):
    agent: AgentName  # the agent logged in to the desk
    override: StrictBool = False  # the web server sets it only for supervisors


class HandoffTakeover(Body):
    """A supervisor takes a conversation over from the live quality board: the web server vouches
    for the supervisor and found the conversation through an inspection alert."""
    session_id: SessionId
    channel: Channel
    agent: AgentName  # the supervisor logged in to the desk
    alert: ShortText  # the alert's rule, for the summary and the audit


class HandoffRaisePriority(Body):
    """A supervisor moves a waiting conversation (a phone call in the agents' queue) to the front
    from the live quality board, without taking it: the web server vouches for the supervisor."""
    session_id: SessionId
    agent: AgentName  # the supervisor logged in to the desk
    alert: ShortText  # the alert's rule, for the audit
    # Only say whether it may be raised (404/409 as for a raise), changing and auditing nothing:
    # the web server checks first, moves the call up Asterisk's queue, then records the raise.
    check_only: bool = False


class HandoffOfSession(Body):
    session_id: SessionId
    seen: StrictBool = False  # asked by the customer's own widget: the customer is still there


class HandoffCustomerNote(Body):
    session_id: SessionId  # the conversation the web server verified the chat token of
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class HandoffWithdrawal(Body):
    session_id: SessionId  # the conversation the web server verified the chat token of


PresenceState = Literal["online", "away", "offline"]


class PresenceUpdate(Body):
    state: PresenceState


class AgentSessionEvent(Body):
    event: Literal["login", "logout"]


class AgentPresenceView(BaseModel):
    agent: str
    state: PresenceState
    last_seen: str  # ISO 8601 with offset
    online: bool  # state online and last_seen within PRESENCE_TTL_SECONDS


class HandoffCallState(Body):
    """What Asterisk's queue did with a phone hand-over (the gateway reports it from AMI); unknown:
    the call left the queue while the gateway could not see it (answered or abandoned, not known)."""
    state: Literal["connected", "abandoned", "unknown"]
    agent: AgentName | None = None  # the queue member who answered


class ReviewDecisionRequest(Body):
    approve: StrictBool
    agent: AgentName
    note: Annotated[str, StringConstraints(max_length=500)] = ""


class Health(BaseModel):
    status: Literal["ok"]
    schema_version: int
