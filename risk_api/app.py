"""HTTP routes of the risk-check API (contract: docs/risk-api.md)."""
from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from risk_api import actions, audit, decisions, demo, outbound, presence, records, verification
from risk_api.clock import Clock, SystemClock
from risk_api.config import Settings
from risk_api.db import SCHEMA_VERSION, Customer, Database
from risk_api.errors import ApiError, api_error_handler, not_found, unauthorized, unknown_customer
from risk_api.metrics import HANDOFFS_CREATED, RISK_DECISIONS, WaitingHandoffs
from risk_api.operations import contract_gaps
from risk_api.reads import READS, summary
from risk_api.rules import RiskAction, load_rules
from risk_api.schemas import (
    NO_NUL,
    ActionRequest,
    ActionResponse,
    AgentPresenceView,
    AgentSessionEvent,
    Audited,
    CallbackRequest,
    CallbackResponse,
    CallerSummary,
    Channel,
    CustomerSummary,
    DecisionRequest,
    DecisionResponse,
    HandoffAccept,
    HandoffCallState,
    HandoffClose,
    HandoffCustomerNote,
    HandoffDetail,
    HandoffDoNotCall,
    HandoffOfSession,
    HandoffRaisePriority,
    HandoffRequest,
    HandoffResponse,
    HandoffStatus,
    HandoffTakeover,
    HandoffView,
    HandoffWithdrawal,
    Health,
    L1Methods,
    L1Request,
    L1Response,
    L2Request,
    L2Response,
    LineL1Request,
    LineVouch,
    LineVouchResponse,
    LookupRequest,
    OtpRequest,
    OtpResponse,
    PreferencesRequest,
    PreferencesResponse,
    PresenceUpdate,
    PromiseRequest,
    PromiseResponse,
    ReviewDecisionRequest,
    SessionId,
    SessionState,
    TicketKind,
    TicketRequest,
    TicketResponse,
)
from risk_api.sms import SmsMessage, SmsSender, load_sender
from trust.asgi import BearerGate, BodyLimit
from trust.metrics import MetricsEndpoint

log = logging.getLogger("risk_api")
T = TypeVar("T")
ReadName = Literal["profile", "limits", "bill", "schedule", "payoff_quote", "loan_application",
                   "disbursement", "cards", "ledger", "interest", "contract"]
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                       pattern=r"^[\x21-\x7e]+$")]
Limit = Annotated[int, Query(ge=1, le=500)]
CustomerPath = Annotated[str, Path(min_length=1, max_length=16, pattern=NO_NUL)]
CustomerQuery = Annotated[str | None, Query(max_length=16, pattern=NO_NUL)]
HandoffPath = Annotated[str, Path(max_length=40, pattern=NO_NUL)]
# An agent's login as the desk sends it in a body (schemas.AgentName: trimmed, 1-64 characters).
AgentPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\s\x00](?:[^\x00]*[^\s\x00])?$")]
_bearer = HTTPBearer(auto_error=False, description="RISK_API_TOKEN")
# The largest honest body is a ticket or hand-over (a 1,000-character summary and its details).
MAX_BODY = 64 * 1024
# Without a token: the health check, and the API's description (public, like its source).
OPEN_PATHS = ("/health", "/openapi.json", "/docs", "/docs/oauth2-redirect")


class Service:
    """Everything a request needs: database, rules, clock and SMS sender."""

    def __init__(self, settings: Settings, clock: Clock, sms: SmsSender) -> None:
        self.settings = settings
        self.clock = clock
        self.sms = sms
        self.rules = load_rules(settings.rules_path)
        self.db = Database(settings.database_url)
        if self.db.prepare_schema(lambda session: demo.seed(session, clock.now())):
            log.info("created schema version %s and seeded demo data", SCHEMA_VERSION)

    def run(self, work: Callable[[Session], T]) -> T:
        with self.db.transaction() as session:
            return work(session)

    def send(self, messages: list[SmsMessage]) -> None:
        for message in messages:
            self.sms.send(message, self.clock.now())


def create_app(settings: Settings | None = None, *, clock: Clock | None = None,
               sms_sender: SmsSender | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    if gaps := contract_gaps():
        raise RuntimeError("the risk API's actions disagree: " + "; ".join(gaps))
    service = Service(settings, clock or SystemClock(),
                      sms_sender or load_sender(settings.sms_sender, settings.sms_outbox))

    tokens = {"engine": settings.token, **settings.role_tokens}

    def role_of(credentials: HTTPAuthorizationCredentials | None) -> str:
        presented = credentials.credentials.encode() if credentials else b""
        for role, token in tokens.items():
            if hmac.compare_digest(presented, token.encode()):
                return role
        raise unauthorized()

    def allow(*roles: str) -> Callable[..., None]:
        """Only these callers: each role reaches its own routes and no other."""
        def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
            if role_of(credentials) not in roles:
                raise ApiError(403, "forbidden", "这个调用方无权访问该接口。")
        return check

    app = FastAPI(title="Risk-check API", version=str(SCHEMA_VERSION),
                  description="Customer lookup, identity verification, risk decisions and "
                              "account actions for the IVR/chat assistant.")
    app.state.service = service
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(OperationalError, _database_busy)
    app.add_exception_handler(RequestValidationError, _invalid_request)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", schema_version=SCHEMA_VERSION)

    engine = APIRouter(dependencies=[Depends(allow("engine"))])
    desk = APIRouter(dependencies=[Depends(allow("desk"))])
    lookup = APIRouter(dependencies=[Depends(allow("engine", "gateway", "dialer"))])
    # The gateway books a callback to the number calling when no agent answers (no identity:
    # an agent calls that number back and verifies then).
    callbacks = APIRouter(dependencies=[Depends(allow("engine", "gateway"))])
    phone = APIRouter(dependencies=[Depends(allow("gateway"))])
    # The outbound dialler: campaign selections, a customer's number just before a call, opt-outs.
    dialer = APIRouter(dependencies=[Depends(allow("dialer"))])
    _lookup_routes(lookup, service)
    _customer_routes(engine, service)
    _verification_routes(engine, service)
    _decision_routes(engine, desk, service)
    _record_routes(engine, desk, callbacks, service)
    _phone_routes(phone, service)
    _line_routes(phone, service)
    outbound.routes(dialer, service.run, service.clock.now)
    for router in (lookup, engine, desk, callbacks, phone, dialer):
        app.include_router(router)
    # Outermost last: no token → 401 before anything reads the body; then the size limit.
    app.add_middleware(BodyLimit, limit_for=lambda _path: MAX_BODY, refusal=_body_too_large)
    app.add_middleware(BearerGate, tokens=tokens.values(), open_paths=OPEN_PATHS,
                       refusal=_error_body(unauthorized()))
    # Outside the callers' gate: /metrics has the monitoring token of its own.
    app.add_middleware(MetricsEndpoint, service="risk_api", token=settings.metrics_token,
                       collectors=[WaitingHandoffs(service.run)])
    return app


def _error_body(error: ApiError) -> dict[str, Any]:
    return {"detail": {"code": error.code, "message": error.message}}


def _body_too_large(limit: int) -> dict[str, Any]:
    return _error_body(ApiError(413, "too_large", f"请求体超过 {limit} 字节。"))


async def _database_busy(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", type(exc).__name__)
    return JSONResponse(status_code=503, content={"detail": {
        "code": "busy", "message": "系统繁忙，请稍后再试。"}})


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    # Where and why, not the input itself: it may be personal data, or NaN (not JSON).
    assert isinstance(exc, RequestValidationError)
    errors = [{"type": error["type"], "loc": error["loc"], "msg": error["msg"]} for error in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


def _lookup_routes(api: APIRouter, service: Service) -> None:
    @api.post("/customers/lookup", response_model=CallerSummary)
    def customer_lookup(body: LookupRequest) -> dict[str, Any]:
        """In the body: no number in any URL or access log."""
        def work(session: Session) -> dict[str, Any]:
            customer = (session.get(Customer, body.customer_id) if body.customer_id else
                        session.query(Customer).filter(Customer.phone == body.phone).one_or_none())
            if customer is None:
                raise unknown_customer()
            return {**summary(customer, service.clock.now().date()), "phone": customer.phone}
        return service.run(work)


def _customer_routes(api: APIRouter, service: Service) -> None:
    def find(session: Session, customer_id: str) -> Customer:
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise unknown_customer()
        return customer

    @api.get("/sessions/{session_id}", response_model=SessionState)
    def verified_session(session_id: Annotated[SessionId, Path()]) -> SessionState:
        """Who this conversation proved to be, at which level, until when; 404 when it has not
        verified or its session ended. The engine's only source of identity."""
        def work(session: Session) -> SessionState:
            state = verification.live_session(session, session_id, service.clock.now())
            if state is None:
                raise not_found("no_session", "这个会话没有有效的身份核验。")
            return SessionState(customer_id=state.customer_id, level=state.level,  # type: ignore[arg-type]
                                expires_at=state.expires_at)
        return service.run(work)

    @api.get("/customers/{customer_id}", response_model=CustomerSummary)
    def customer_by_id(customer_id: CustomerPath) -> dict[str, Any]:
        return service.run(lambda s: summary(find(s, customer_id), service.clock.now().date()))

    @api.get("/customers/{customer_id}/{read}", response_model=dict[str, Any])
    def account_read(customer_id: CustomerPath, read: ReadName,
                     session_id: Annotated[SessionId | None, Query()] = None) -> dict[str, Any]:
        def work(session: Session) -> dict[str, Any]:
            customer = find(session, customer_id)
            now = service.clock.now()
            verification.require_level(session, session_id, customer.id, "L1", now)
            return READS[read](session, customer, now)
        return service.run(work)


def _verification_routes(api: APIRouter, service: Service) -> None:
    @api.post("/verification/l1", response_model=L1Response)
    def verify_l1(body: L1Request) -> L1Response:
        response, notices = service.run(
            lambda s: verification.verify_l1(s, service.rules, body, service.clock.now()))
        service.send(notices)
        return response

    @api.post("/verification/l1/methods", response_model=L1Methods)
    def l1_methods(body: Audited) -> L1Methods:
        """How this conversation may prove L1 now (the engine asks the questions of one of them)."""
        return service.run(lambda s: verification.l1_methods(s, service.rules, body, service.clock.now()))

    @api.post("/verification/l1/line", response_model=L1Response)
    def verify_l1_line(body: LineL1Request) -> L1Response:
        """L1 by the call's line, which the phone gateway vouched for, and ID last 6."""
        response, notices = service.run(
            lambda s: verification.verify_l1_line(s, service.rules, body, service.clock.now()))
        service.send(notices)
        return response

    @api.post("/verification/otp", response_model=OtpResponse)
    def send_otp(body: OtpRequest) -> OtpResponse:
        response, message = service.run(
            lambda s: verification.send_otp(s, body, service.clock.now(),
                                            service.settings.otp_sends_per_customer_hour))
        service.send([message])
        return response

    @api.post("/verification/l2", response_model=L2Response)
    def verify_l2(body: L2Request) -> L2Response:
        response, notices = service.run(lambda s: verification.verify_l2(s, body, service.clock.now()))
        service.send(notices)
        return response


def _decision_routes(api: APIRouter, desk: APIRouter, service: Service) -> None:
    @api.post("/customers/{customer_id}/decisions", response_model=DecisionResponse)
    def decide(customer_id: CustomerPath, body: DecisionRequest) -> DecisionResponse:
        decided = service.run(lambda s: decisions.decide(s, service.rules, customer_id, body,
                                                         service.clock.now()))
        RISK_DECISIONS.labels(decided.action, decided.decision).inc()
        return decided

    @api.post("/customers/{customer_id}/actions/{action}", response_model=ActionResponse)
    def act(customer_id: CustomerPath, action: RiskAction, body: ActionRequest,
            idempotency_key: IdempotencyKey) -> ActionResponse:
        def work(session: Session) -> tuple[ActionResponse, list[SmsMessage]]:
            return actions.perform(session, service.rules, customer_id, action,
                                   idempotency_key, body, service.clock.now())
        try:
            response, outbox = service.run(work)
        except IntegrityError:
            # Same key raced in from another account (or a unique value was taken): the
            # second attempt sees the committed row and answers replay/conflict/refusal.
            response, outbox = service.run(work)
        service.send(outbox)
        return response

    @desk.get("/reviews")
    def reviews(status: Literal["pending", "approved", "rejected"] | None = None,
                limit: Limit = 100) -> list[dict[str, Any]]:
        return service.run(lambda s: actions.list_reviews(s, status, limit))

    @desk.post("/reviews/{review_id}/decision")
    def review_decision(review_id: Annotated[str, Path(max_length=40, pattern=NO_NUL)],
                        body: ReviewDecisionRequest) -> dict[str, Any]:
        result, outbox = service.run(
            lambda s: actions.decide_review(s, review_id, body, service.clock.now()))
        service.send(outbox)
        return result

    @desk.get("/audit")
    def audit_log(customer_id: CustomerQuery = None,
                  limit: Limit = 50) -> list[dict[str, Any]]:
        return service.run(lambda s: audit.entries(s, customer_id, limit))


def _record_routes(api: APIRouter, desk: APIRouter, callbacks: APIRouter, service: Service) -> None:
    @api.post("/tickets", response_model=TicketResponse)
    def create_ticket(body: TicketRequest) -> TicketResponse:
        return service.run(lambda s: records.create_ticket(s, body, service.clock.now()))

    @desk.get("/tickets")
    def list_tickets(customer_id: CustomerQuery = None,
                     kind: TicketKind | None = None, limit: Limit = 100) -> list[dict[str, Any]]:
        return service.run(lambda s: records.list_tickets(s, customer_id, kind, limit))

    @api.post("/customers/{customer_id}/promises", response_model=PromiseResponse)
    def create_promise(customer_id: CustomerPath, body: PromiseRequest) -> PromiseResponse:
        return service.run(lambda s: records.create_promise(s, customer_id, body,
                                                            service.clock.now()))

    @api.post("/customers/{customer_id}/preferences", response_model=PreferencesResponse)
    def set_preferences(customer_id: CustomerPath,
                        body: PreferencesRequest) -> PreferencesResponse:
        return service.run(lambda s: records.set_preferences(s, customer_id, body,
                                                             service.clock.now()))

    @callbacks.post("/callbacks", response_model=CallbackResponse)
    def create_callback(body: CallbackRequest) -> CallbackResponse:
        return service.run(lambda s: records.create_callback(s, body, service.clock.now()))

    @api.post("/handoffs", response_model=HandoffResponse)
    def create_handoff(body: HandoffRequest) -> HandoffResponse:
        created = service.run(lambda s: records.create_handoff(s, body, service.clock.now()))
        HANDOFFS_CREATED.labels(body.priority, body.channel).inc()
        return created

    @desk.get("/handoffs", response_model=list[HandoffView])
    def list_handoffs(response: Response, status: HandoffStatus | None = None,
                      channel: Channel | None = None,
                      priority: Literal["normal", "high", "emergency"] | None = None,
                      flow: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")] = None,
                      handoff_id: Annotated[str | None, Query(max_length=40, pattern=NO_NUL)] = None,
                      agent: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL)] = None,
                      phone: Annotated[str | None, Query(pattern=records.PHONE_SEARCH)] = None,
                      limit: Limit = 100, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0
                      ) -> list[dict[str, Any]]:
        """One page in queue order (most urgent, then longest waiting); the list stays the body for
        the callers that read it whole, the number of all that match is in X-Total-Count.
        `phone`: the customer's number on file, whole, masked (138****5678) or its last four digits."""
        prefix, suffix = records.phone_search(phone) if phone else (None, None)
        where = records.HandoffFilter(status=status, channel=channel, priority=priority, flow=flow,
                                      handoff_id=handoff_id, agent=agent, phone_prefix=prefix, phone_suffix=suffix)
        page, total = service.run(lambda s: records.list_handoffs(s, where, limit, offset,
                                                                  now=service.clock.now()))
        response.headers["X-Total-Count"] = str(total)
        return page

    @desk.get("/handoffs/stamp")
    def handoffs_stamp() -> dict[str, str]:
        """An opaque stamp of the hand-overs and reviews: a new value, something changed."""
        return {"stamp": service.run(lambda s: records.desk_stamp(s, service.clock.now()))}

    @desk.post("/handoffs/of-session", response_model=HandoffDetail)
    def handoff_of_session(body: HandoffOfSession) -> dict[str, Any]:
        """The conversation's latest hand-over (any state) with its queue facts; 404 without one.
        In the body: a session id in no URL or access log."""
        return service.run(lambda s: records.handoff_of_session(s, body, service.clock.now()))

    @desk.post("/handoffs/takeover", response_model=HandoffDetail)
    def take_over(body: HandoffTakeover) -> dict[str, Any]:
        """A supervisor takes the conversation over (its open hand-over, or a new one), at
        emergency priority. In the body: a session id in no URL or access log."""
        return service.run(lambda s: records.take_over(s, body, service.clock.now()))

    @desk.post("/handoffs/raise-priority", response_model=HandoffDetail)
    def raise_priority(body: HandoffRaisePriority) -> dict[str, Any]:
        """A supervisor moves the conversation's waiting hand-over to emergency priority without
        taking it (a call waiting in Asterisk's queue). In the body: a session id in no URL."""
        return service.run(lambda s: records.raise_priority(s, body, service.clock.now()))

    @desk.get("/handoffs/{handoff_id}", response_model=HandoffDetail)
    def get_handoff(handoff_id: HandoffPath) -> dict[str, Any]:
        return service.run(lambda s: records.get_handoff(s, handoff_id, service.clock.now()))

    @desk.post("/handoffs/{handoff_id}/accept", response_model=HandoffView)
    def accept_handoff(handoff_id: HandoffPath, body: HandoffAccept) -> dict[str, Any]:
        return service.run(lambda s: records.accept_handoff(s, handoff_id, body,
                                                            service.clock.now()))

    @desk.post("/handoffs/{handoff_id}/close", response_model=HandoffView)
    def close_handoff(handoff_id: HandoffPath, body: HandoffClose) -> dict[str, Any]:
        return service.run(lambda s: records.close_handoff(s, handoff_id, body, service.clock.now()))

    @desk.post("/handoffs/{handoff_id}/do-not-call")
    def handoff_do_not_call(handoff_id: HandoffPath, body: HandoffDoNotCall) -> dict[str, Any]:
        """The hand-over's customer asked the agent never to be called again (campaigns skip them)."""
        return service.run(lambda s: records.handoff_do_not_call(s, handoff_id, body, service.clock.now()))

    @desk.post("/handoffs/{handoff_id}/customer-note", response_model=HandoffDetail)
    def customer_note(handoff_id: HandoffPath, body: HandoffCustomerNote) -> dict[str, Any]:
        return service.run(lambda s: records.leave_customer_note(s, handoff_id, body, service.clock.now()))

    @desk.post("/handoffs/{handoff_id}/withdraw", response_model=HandoffDetail)
    def withdraw(handoff_id: HandoffPath, body: HandoffWithdrawal) -> dict[str, Any]:
        return service.run(lambda s: records.withdraw_handoff(s, handoff_id, body, service.clock.now()))

    @desk.put("/agents/{agent}/presence", response_model=AgentPresenceView)
    def set_presence(agent: AgentPath, body: PresenceUpdate) -> dict[str, Any]:
        """The desk's heartbeat for a logged-in agent (online while they keep coming)."""
        return service.run(lambda s: presence.set_presence(s, agent, body, service.clock.now()))

    @desk.post("/agents/{agent}/sessions")
    def agent_session(agent: AgentPath, body: AgentSessionEvent) -> dict[str, Any]:
        """The desk's log-ins and log-outs, for the audit log."""
        return service.run(lambda s: presence.record_session(s, agent, body, service.clock.now()))

    @desk.get("/agents/presence", response_model=list[AgentPresenceView])
    def list_presence() -> list[dict[str, Any]]:
        return service.run(lambda s: presence.list_presence(s, service.clock.now()))


def _phone_routes(api: APIRouter, service: Service) -> None:
    @api.post("/handoffs/{handoff_id}/call-state", response_model=HandoffView)
    def handoff_call_state(handoff_id: HandoffPath, body: HandoffCallState) -> dict[str, Any]:
        return service.run(lambda s: records.phone_handoff_state(s, handoff_id, body, service.clock.now()))


def _line_routes(api: APIRouter, service: Service) -> None:
    @api.post("/verification/line", response_model=LineVouchResponse)
    def vouch_for_line(body: LineVouch) -> LineVouchResponse:
        """The line a call comes from, as the network (or the dialler) told the gateway: a
        keypad-only caller may then prove L1 with it and ID digits (rules.yaml `l1_methods`)."""
        return service.run(lambda s: verification.vouch_for_line(s, body, service.clock.now()))


@cache
def _default_app() -> FastAPI:
    return create_app()


def __getattr__(name: str) -> FastAPI:
    # `uvicorn risk_api.app:app` builds the app on first access, not at import (tests import
    # this module without RISK_API_TOKEN in the environment).
    if name == "app":
        return _default_app()
    raise AttributeError(name)
