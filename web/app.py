"""The web app: the widget demo page and script, chat sessions for the widget, and the agent
desk with its JSON API.

The desk's API proxies the risk API so the browser never holds the risk API token; the agent
recorded with a review decision or an accepted hand-over is the one logged in, never one the
browser names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from flowspec.model import FLOWS_DIR
from knowledge.proposals import ProposalStore
from risk_api_client import RiskApiHttp, RiskApiRefused, RiskApiUnavailable
from trust import chat_session
from trust.asgi import BodyLimit
from trust.http_pool import HttpPool
from trust.metrics import MetricsEndpoint
from web import conversation_refs, knowledge_desk, labels, pages
from web.accounts import Accounts, Agent, load_accounts
from web.config import Settings
from web.desk_session import COOKIE_NAME, SESSION_SECONDS, DeskSessions
from web.metrics import DESK_STREAMS, RELAY_LATENCY, RELAYED
from web.push import AlertFeed, StampWatcher
from web.throttle import Clock, Throttle

log = logging.getLogger("web")
STATIC = Path(__file__).resolve().parent / "static"
# The risk API's review and hand-over ids: risk_api.db.new_id("R"), new_id("H"). Anything else
# never reaches its URL.
REVIEW_ID = r"^R-[0-9a-f]{20}$"
HANDOFF_ID = r"^H-[0-9a-f]{20}$"
CONVERSATION_REF = conversation_refs.PATTERN
CHAT_CHANNEL = "webchat"  # the widget's Rasa input channel (bot/channels.py WebChatInput)
CAMPAIGN_ID = r"^[a-z][a-z0-9_]{0,47}$"  # a campaign's file name (ivr_config/campaign.schema.json)
# The customer's number on file, whole, masked or its last four digits (risk_api.records.PHONE_SEARCH).
PHONE_SEARCH = r"^(?:1\d{10}|1\d{2}\*{4}\d{4}|\d{4})$"
HANDOFFS_PER_PAGE = 20
# The desk's event stream: how often it looks at an open conversation, and sends a comment
# when nothing happened (proxies close streams that stay silent).
# The desk's event stream: each open conversation long-polls Rasa (a wait per read, a pause after
# a read that found nothing new), and the desk session is checked every SESSION_CHECK_SECONDS.
CONVERSATION_WAIT_SECONDS = 20.0
CONVERSATION_PAUSE_SECONDS = 0.2
SESSION_CHECK_SECONDS = 1.0
NEWS_BACKLOG = 64  # events a stream holds while its page is slow to read them
MAX_KNOWN_CONVERSATIONS = 4096  # alerted conversations whose kind (chat or call) is remembered
KIND_LOOKUP_SECONDS = 1.0  # asking Rasa whether an alerted conversation is a chat or a call
# How long a conversation Rasa could not place is not asked about again: a board opening, each
# new alert and each click would otherwise ask a Rasa that is down (or has forgotten it) every time.
KIND_UNKNOWN_SECONDS = 10.0
MAX_FIGURE_DAYS = 90  # the quality service's longest span
PENDING_PAGE = 20  # conversations awaiting review per page of the board (the worst first)
RELAY_TIMEOUT_SECONDS = 10.0
KEEPALIVE_SECONDS = 15.0
CHAT_SESSION_WINDOW_SECONDS = 10 * 60
LOGIN_FAILURES = 5  # per source address and per user name …
LOGIN_WINDOW_SECONDS = 15 * 60  # … within this window, then 429 until the oldest failure ages out
# Request bodies: a chat session needs none, a login form two short fields, a review verdict a
# 500-character note (JSON-escaped, up to 6 bytes a character).
CHAT_SESSION_MAX_BODY = 256
LOGIN_MAX_BODY = 2 * 1024
MAX_BODY = 8 * 1024
# A service behind the desk unreachable, or an answer not shaped as its contract says: a 502, never a 500.
UNREADABLE_ANSWER = (httpx.HTTPError, ValueError, TypeError, KeyError, AttributeError)
# Hand-overs no agent holds: any agent may look at one before claiming it.
UNCLAIMED = ("waiting", "unknown")
# The fields each review card shows (desk.js); nothing else, session ids above all, reaches the browser.
REVIEW_FIELDS = ("review_id", "action", "customer_id", "params", "reasons", "created_at")


class AgentReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=1000)


class Closing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disposition: Literal["resolved", "callback_booked", "ticket", "escalated"]
    note: str = Field(default="", max_length=500)


class Presence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["online", "away", "offline"]


class CustomerNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=500)


class CampaignControl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["active", "paused", "stopped"]


class ReviewVerdict(BaseModel):
    # An `agent` from the browser is refused, not ignored: the agent is the one logged in.
    model_config = ConfigDict(extra="forbid")
    approve: bool
    note: str = Field(default="", max_length=500)


# A step of the review of a quality hit (quality/reviews.py): the hit by its number in the
# conversation, a reason of up to 500 characters. The person is the one logged in.
QualityReason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class HitAppeal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hit: int = Field(ge=0, le=100_000)
    reason: QualityReason


class HitReview(HitAppeal):
    verdict: Literal["confirmed", "dismissed"]


class AppealDecision(HitAppeal):
    outcome: Literal["upheld", "rejected"]


def body_limit_for(path: str) -> int:
    if path in ("/chat/session", "/chat/handoff/callback"):
        return CHAT_SESSION_MAX_BODY
    if path == "/desk/login":
        return LOGIN_MAX_BODY
    if path == "/desk/api/knowledge/proposals":
        return knowledge_desk.MAX_BODY
    return MAX_BODY


def body_too_large(limit: int) -> dict[str, str]:
    return {"detail": f"request body over {limit} bytes"}


def known(value: str | None, words: Mapping[str, str], what: str) -> str | None:
    """A filter value the desk offers, else 422: nothing else is forwarded to the risk API."""
    if value is not None and value not in words:
        raise HTTPException(422, f"unknown {what}")
    return value


async def none() -> None:
    """Nothing to ask, in an `asyncio.gather` of things to ask."""


def content_security_policy(connect_to: str = "") -> str:
    """Scripts, styles and images from this server only, nothing inline, no framing."""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self'{connect_to}; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def rasa_origins(rasa_url: str) -> str:
    """Rasa's origin as the widget reaches it: the socket.io websocket, and HTTP for its fallback."""
    parts = urlsplit(rasa_url)
    websocket = "wss" if parts.scheme == "https" else "ws"
    return f" {parts.scheme}://{parts.netloc} {websocket}://{parts.netloc}"


def create_app(settings: Settings, clock: Clock = time.time) -> FastAPI:
    """`clock` (unix seconds) drives session expiry and throttling; tests pass their own."""
    app = FastAPI(title="web chat and agent desk", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    desk_sessions = DeskSessions(settings.session_secret, clock)
    chat_sessions_per_source = Throttle(settings.chat_sessions_per_source, CHAT_SESSION_WINDOW_SECONDS, clock)
    login_failures_per_source = Throttle(LOGIN_FAILURES, LOGIN_WINDOW_SECONDS, clock)
    login_failures_per_user = Throttle(LOGIN_FAILURES, LOGIN_WINDOW_SECONDS, clock)
    demo_policy = content_security_policy(rasa_origins(settings.rasa_url))
    default_policy = content_security_policy()
    flow_names = labels.flow_names()  # read now: a broken flow file stops the start, not a request
    # Read now too: a broken accounts file stops the start (ivr_config.loader.ConfigError).
    accounts: Accounts | None = load_accounts(settings.accounts_file) if settings.accounts_file else None

    risk_api = RiskApiHttp(settings.risk_api_url, settings.risk_api_token, timeout_seconds=10)
    rasa_relay = HttpPool(settings.rasa_internal_url, settings.rasa_desk_token, timeout=RELAY_TIMEOUT_SECONDS)
    dialler = HttpPool(settings.outbound_url, settings.outbound_desk_token, timeout=30)
    quality = HttpPool(settings.quality_url, settings.quality_api_token, timeout=10)
    # AMI's own action timeout is 10 s: a gateway answers before this gives up.
    phone_gateways = [HttpPool(url, settings.gateway_desk_token, timeout=15) for url in settings.gateway_urls]
    app.router.on_shutdown.append(risk_api.close)
    app.router.on_shutdown.append(rasa_relay.aclose)
    app.router.on_shutdown.append(dialler.aclose)
    app.router.on_shutdown.append(quality.aclose)
    for phone_gateway in phone_gateways:
        app.router.on_shutdown.append(phone_gateway.aclose)

    def source_of(request: Request) -> str:
        """The client's address; behind the proxy, the one it appended to X-Forwarded-For."""
        if settings.behind_proxy:
            forwarded = request.headers.get("x-forwarded-for", "").split(",")[-1].strip()
            if forwarded:
                return forwarded
        return request.client.host if request.client else "unknown"

    def over_https(request: Request) -> bool:
        if request.url.scheme == "https":
            return True
        return settings.behind_proxy and request.headers.get("x-forwarded-proto", "").strip().lower() == "https"

    def logged_in_agent(request: Request) -> Agent | None:
        return desk_sessions.agent_of(request.cookies.get(COOKIE_NAME))

    def require_agent(request: Request, permission: str) -> Agent:
        agent = logged_in_agent(request)
        if agent is None:
            raise HTTPException(401, "login required")
        if not agent.may(permission):
            raise HTTPException(403, "your role may not do this")
        return agent

    @app.middleware("http")
    async def desk_switched_off(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/desk") and accounts is None:
            return JSONResponse({"detail": "agent desk not configured: set AGENT_ACCOUNTS_FILE"}, status_code=503)
        return await call_next(request)

    app.add_middleware(BodyLimit, limit_for=body_limit_for, refusal=body_too_large)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        # Outermost, so refusals (413, 429, 503) carry these headers too.
        response: Response = await call_next(request)
        path = request.url.path
        response.headers["Content-Security-Policy"] = demo_policy if path == "/" else default_policy
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if path.startswith(("/desk", "/chat/")):
            response.headers["Cache-Control"] = "no-store"  # queue contents and tokens stay out of caches
        return response

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def demo() -> str:
        return pages.demo_page(settings.rasa_url)

    @app.get("/widget.js")
    def widget_script() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript")

    @app.get("/widget.css")
    def widget_style() -> FileResponse:
        return FileResponse(STATIC / "widget.css", media_type="text/css")

    def chat_cors(request: Request) -> dict[str, str] | None:
        """CORS headers for an allowed (or absent) Origin; None for a site not allowed to embed the widget."""
        origin = request.headers.get("origin")
        if origin is None:
            return {}  # not a browser's cross-site request: chat clients of the REST channel
        scheme = "https" if over_https(request) else request.url.scheme
        own_origin = f"{scheme}://{request.headers.get('host', '')}"
        if origin != own_origin and origin not in settings.chat_allowed_origins:
            return None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    @app.options("/chat/session")
    def chat_session_preflight(request: Request) -> Response:
        cors = chat_cors(request)
        if cors is None:
            return Response(status_code=403)
        return Response(status_code=204, headers={**cors, "Access-Control-Allow-Methods": "POST",
                                                  "Access-Control-Max-Age": "600"})

    @app.post("/chat/session")
    def new_chat_session(request: Request) -> JSONResponse:
        # Refused outright (not merely unreadable): another site cannot spend this source's quota.
        cors = chat_cors(request)
        if cors is None:
            return JSONResponse({"detail": "this site may not open chat sessions"}, status_code=403)
        source = source_of(request)
        if chat_sessions_per_source.blocked(source):
            # Many sessions from one source is how names get guessed past the per-session limits.
            return JSONResponse({"detail": "too many chat sessions from this address, try again later"},
                                status_code=429,
                                headers={**cors, "Retry-After": str(chat_sessions_per_source.retry_after(source))})
        chat_sessions_per_source.record(source)
        now = clock()
        issued = chat_session.issue(settings.chat_session_secret, now)
        # expires_in as well: the widget times the session by its own clock, which may be off.
        return JSONResponse({"token": issued.token, "expires_at": issued.expires_at,
                             "expires_in": issued.expires_at - int(now)}, headers=cors)

    @app.get("/desk", response_class=HTMLResponse)
    async def desk(request: Request, failed: bool = False) -> str:
        agent = logged_in_agent(request)
        return pages.desk_page(agent, await first_page(agent)) if agent else pages.login_page(failed)

    @app.post("/desk/login")
    async def login(request: Request) -> Response:
        # A plain form post, parsed here rather than pulling in python-multipart for two fields.
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        user = form.get("user", [""])[0]
        password = form.get("password", [""])[0]
        source, user_key = source_of(request), user.strip().casefold()
        # Checked before the password, and a right password is refused too while throttled:
        # otherwise the guessing would simply go on and learn when it hit.
        if login_failures_per_source.blocked(source) or login_failures_per_user.blocked(user_key):
            return HTMLResponse(pages.login_page(failed=False, throttled=True), status_code=429,
                                headers={"Retry-After": str(LOGIN_WINDOW_SECONDS)})
        agent = accounts.authenticate(user, password) if accounts else None
        if agent is None:
            login_failures_per_source.record(source)
            login_failures_per_user.record(user_key)
            return RedirectResponse("/desk?failed=true", status_code=303)
        try:  # no desk session that the audit log does not know of
            await risk("POST", f"/agents/{agent.login}/sessions", json={"event": "login"})
        except HTTPException:
            return HTMLResponse(pages.login_page(failed=False, unavailable=True), status_code=503)
        desk_sessions.end(request.cookies.get(COOKIE_NAME))  # a new session at every login, never the old id
        response = RedirectResponse("/desk", status_code=303)
        response.set_cookie(COOKIE_NAME, desk_sessions.start(agent), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=over_https(request), path="/")
        return response

    @app.post("/desk/logout")
    async def logout(request: Request) -> Response:
        agent = logged_in_agent(request)
        desk_sessions.end(request.cookies.get(COOKIE_NAME))  # first: logging out never fails
        if agent is not None:
            try:
                await risk("POST", f"/agents/{agent.login}/sessions", json={"event": "logout"})
            except HTTPException:
                log.warning("a desk log-out was not audited: risk API unavailable")
        if agent is not None and agent.may("handle"):
            # No chat is offered to an agent who left; if the risk API is down, it expires in a minute.
            with contextlib.suppress(HTTPException):
                await set_presence(agent, "offline")
        response = RedirectResponse("/desk", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=over_https(request))
        return response

    async def risk_listed(path: str, params: Mapping[str, Any]) -> tuple[list[Any], int]:
        """One page of a list and the total the risk API counts; a 502 when it cannot say."""
        try:
            return await risk_api.listed(path, params)
        except (RiskApiUnavailable, RiskApiRefused) as error:
            raise HTTPException(502, "risk API unavailable") from error

    async def risk(method: str, path: str, passed: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """The risk API's answer (on the one client of the risk API, with the desk role's token);
        its own refusal (its Chinese message) for the statuses in `passed`; a 502 for the rest."""
        try:
            return await risk_api.call(method, path, **kwargs)
        except RiskApiRefused as refusal:
            if refusal.status in passed:
                raise HTTPException(refusal.status, {"code": refusal.code, "message": refusal.message}) from None
            raise HTTPException(502, "risk API unavailable") from None
        except RiskApiUnavailable as error:
            raise HTTPException(502, "risk API unavailable") from error

    def answer_json(unavailable: Any, answer: httpx.Response, passed: tuple[int, ...] = ()) -> Any:
        """The body of a 200; the service's own refusal (its Chinese message) for the codes in
        `passed`; a 502 saying `unavailable` for anything else."""
        try:
            body = answer.json()
            if answer.status_code == 200:
                return body
            if answer.status_code in passed:
                detail = body["detail"]
                raise HTTPException(answer.status_code, {"code": str(detail["code"]),
                                                         "message": str(detail["message"])})
        except UNREADABLE_ANSWER as error:
            raise HTTPException(502, unavailable) from error
        raise HTTPException(502, unavailable)

    async def relay(do: str, session_id: str, **fields: Any) -> dict[str, Any]:
        """Rasa's live-agent route (bot/channels.py): join, say, leave, withdraw or read (a read
        with `wait` answers when the conversation grows or the wait is over)."""
        if not settings.rasa_desk_token:
            raise HTTPException(503, "live chat not configured: set RASA_DESK_TOKEN")
        try:
            with RELAY_LATENCY.labels(do).time():
                answer = await rasa_relay.client().post("/webhooks/webchat/agent",
                                                        json={"sender": session_id, "do": do, **fields},
                                                        timeout=RELAY_TIMEOUT_SECONDS + fields.get("wait", 0))
            RELAYED.labels(do, str(answer.status_code)).inc()
            if answer.status_code == 200:
                return dict(answer.json())
        except (httpx.HTTPError, ValueError, TypeError) as error:
            if isinstance(error, httpx.HTTPError):  # no answer at all (an unreadable one is counted)
                RELAYED.labels(do, "unreachable").inc()
            raise HTTPException(502, "assistant unavailable") from error
        if answer.status_code == 404:  # the conversation is gone (retention) or never reached Rasa
            raise HTTPException(404, {"code": "no_conversation", "message": "找不到这段对话的记录。"})
        raise HTTPException(502, "assistant unavailable")

    async def set_presence(agent: Agent, state: str) -> None:
        await risk("PUT", f"/agents/{agent.login}/presence", json={"state": state})

    async def handoff_of(handoff_id: str) -> dict[str, Any]:
        """The hand-over with its session id (kept on this server, never sent to the browser)."""
        return dict(await risk("GET", f"/handoffs/{handoff_id}", passed=(404,)))

    def for_desk(handoff: Mapping[str, Any]) -> dict[str, Any]:
        shown = labels.handoff_for_desk(handoff)
        holder = accounts.get(handoff.get("agent") or "") if accounts else None
        shown["agent_name"] = holder.display_name if holder else handoff.get("agent")
        return shown

    def may_see(agent: Agent, handoff: Mapping[str, Any]) -> bool:
        """A case nobody holds (waiting, or a call whose queue outcome is unknown) any agent may
        look at before claiming it; a taken one, its holder and supervisors."""
        return (handoff.get("status") in UNCLAIMED or handoff.get("agent") == agent.login
                or agent.may("supervise"))

    async def queue_page(agent: Agent, params: Mapping[str, str], offset: int) -> dict[str, Any]:
        """One page of hand-overs (filtered by `params`) and the pending reviews, each only for a
        role that works on it."""
        page: dict[str, Any] = {"handoffs": [], "total": 0, "offset": offset, "page_size": HANDOFFS_PER_PAGE,
                                "reviews": [], "mine": []}
        handles, reviews = agent.may("handle"), agent.may("review")
        # The three looks at the risk API go out together.
        listed, mine, pending = await asyncio.gather(
            risk_listed("/handoffs", {**params, "limit": HANDOFFS_PER_PAGE, "offset": offset})
            if handles else none(),
            # The agent's own open cases, whatever the filters: a phone call a queue member answered
            # pops up on that agent's desk (the gateway reports AMI AgentConnect with the member name).
            risk("GET", "/handoffs", params={"status": "accepted", "agent": agent.login,
                                             "limit": HANDOFFS_PER_PAGE}) if handles else none(),
            risk("GET", "/reviews", params={"status": "pending"}) if reviews else none())
        if listed is not None and mine is not None:
            handoffs, page["total"] = listed
            page["handoffs"] = [for_desk(item) for item in handoffs]
            page["mine"] = [for_desk(item) for item in mine]
        if pending is not None:
            page["reviews"] = [{**{key: item.get(key) for key in REVIEW_FIELDS},
                                "action_name": labels.action_names().get(str(item.get("action")), labels.UNKNOWN)}
                               for item in pending]
        return page

    @app.get("/desk/api/queue")
    async def queue(request: Request, status: str = "waiting", channel: str | None = None,
                    priority: str | None = None, flow: str | None = None,
                    handoff_id: Annotated[str | None, Query(pattern=HANDOFF_ID)] = None,
                    phone: Annotated[str | None, Query(pattern=PHONE_SEARCH)] = None,
                    offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> dict[str, Any]:
        """One page of hand-overs (filtered; by default the waiting ones) and the pending reviews."""
        agent = logged_in_agent(request)
        if agent is None:
            raise HTTPException(401, "login required")
        wanted = {"status": None if status == "all" else known(status, labels.STATES, "status"),
                  "channel": known(channel, labels.CHANNELS, "channel"),
                  "priority": known(priority, labels.PRIORITIES, "priority"),
                  "flow": known(flow, flow_names, "flow"), "handoff_id": handoff_id, "phone": phone}
        return await queue_page(agent, {key: value for key, value in wanted.items() if value is not None}, offset)

    async def first_page(agent: Agent) -> dict[str, Any] | None:
        """What the desk opens on (the waiting hand-overs' first page) and the desk stamp it shows,
        sent with the page itself: no round trip before the agent sees the queue. None when the
        risk API cannot say; the page then asks for it as for any other page."""
        # Taken before the list (the watcher's last look, at most a watch interval old): a change
        # after it reaches the page as a new stamp, never the other way round.
        stamp = watcher.stamp or await desk_stamp()
        try:
            return {**await queue_page(agent, {"status": "waiting"}, 0), "stamp": stamp}
        except HTTPException:
            return None

    async def desk_stamp() -> str | None:
        try:
            return str((await risk("GET", "/handoffs/stamp"))["stamp"])
        except (HTTPException, KeyError, TypeError):
            return None  # the risk API is down: the desks keep what they show, the watch goes on

    watcher = StampWatcher(desk_stamp)

    async def conversation_growth(session_id: str, news: asyncio.Queue[str]) -> None:
        """Long-polls Rasa's relay and tells the stream each time the conversation has new events:
        a customer's line reaches the agent's page as soon as Rasa has it."""
        length = 0
        while True:
            try:
                grown = int((await relay("read", session_id, after=length,
                                         wait=CONVERSATION_WAIT_SECONDS)).get("next", length))
            except (HTTPException, TypeError, ValueError):
                grown = length  # Rasa down or the conversation gone: look again after a pause
            if grown != length:
                length = grown
                await news.put(f"event: conversation\ndata: {json.dumps({'next': length})}\n\n")
            else:  # the wait ran out (or the read failed): no tight loop either way
                await asyncio.sleep(CONVERSATION_PAUSE_SECONDS)

    async def queue_changes(news: asyncio.Queue[str]) -> None:
        stamp = None
        while True:
            changed = await watcher.next_change(stamp, KEEPALIVE_SECONDS)
            if changed is not None:
                stamp = changed
                await news.put(f"event: queue\ndata: {json.dumps({'stamp': changed})}\n\n")

    # --- The supervisors' live quality board: the inspection's alerts, pushed. ---

    async def inspection_alerts(after: int) -> dict[str, Any] | None:
        if not settings.quality_api_token:
            return None
        try:
            answer = await quality.client().get("/alerts", params={"after": after})
            return dict(answer.json()) if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, TypeError):
            return None  # the inspection is down: the boards keep what they show

    alert_feed = AlertFeed(inspection_alerts)

    refs = conversation_refs.ConversationRefs(settings.session_secret)
    conversation_ref = refs.ref

    conversation_kinds: OrderedDict[str, str] = OrderedDict()  # conversation id -> "chat" or "call"
    unplaced_until: OrderedDict[str, float] = OrderedDict()  # conversation id -> when to ask Rasa again

    async def conversation_kind(conversation_id: str) -> str | None:
        """A chat (the widget's channel) or a call, as Rasa knows the conversation; None when it
        cannot say now (asked again after KIND_UNKNOWN_SECONDS)."""
        kind = conversation_kinds.get(conversation_id)
        if kind is None:
            if unplaced_until.get(conversation_id, 0.0) > time.monotonic():
                return None
            try:  # bounded: a slow Rasa must not hold the alerts back from the boards
                said = await asyncio.wait_for(relay("read", conversation_id, after=0), KIND_LOOKUP_SECONDS)
            except (HTTPException, TimeoutError):
                unplaced_until[conversation_id] = time.monotonic() + KIND_UNKNOWN_SECONDS
                while len(unplaced_until) > MAX_KNOWN_CONVERSATIONS:
                    unplaced_until.popitem(last=False)
                return None
            unplaced_until.pop(conversation_id, None)
            kind = conversation_kinds[conversation_id] = "chat" if said.get("channel") == CHAT_CHANNEL else "call"
            while len(conversation_kinds) > MAX_KNOWN_CONVERSATIONS:
                conversation_kinds.popitem(last=False)
        return kind

    async def alerts_for_board(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each alert with what the board offers for it: 接管 for a chat, 提高优先级 for a call."""
        conversations = list(dict.fromkeys(str(alert["conversation_id"]) for alert in alerts))
        kinds = dict(zip(conversations, await asyncio.gather(*map(conversation_kind, conversations)), strict=True))
        return [{**labels.alert_for_desk(alert, conversation_ref(str(alert["conversation_id"]))),
                 "kind": kinds[str(alert["conversation_id"])]} for alert in alerts]

    def alerted_conversation(ref: str) -> dict[str, Any]:
        alert = next((alert for alert in alert_feed.recent
                      if conversation_ref(str(alert["conversation_id"])) == ref), None)
        if alert is None:
            raise HTTPException(404, {"code": "no_alert", "message": "没有这个会话的近期告警。"})
        return dict(alert)

    async def alert_news(news: asyncio.Queue[str]) -> None:
        # First the recent ones (a board opening, or its stream opened again: the page keeps each once).
        stamp, epoch, seen = None, alert_feed.epoch, 0
        while True:
            changed = await alert_feed.watcher.next_change(stamp, KEEPALIVE_SECONDS)
            if changed is None:
                continue
            stamp = changed
            if alert_feed.epoch != epoch:
                epoch, seen = alert_feed.epoch, 0
            fresh = alert_feed.after(seen)
            if fresh:
                seen = fresh[-1]["seq"]
                shown = json.dumps(await alerts_for_board(fresh), ensure_ascii=False)
                await news.put(f"event: alerts\ndata: {shown}\n\n")

    def conversation_of(ref: str) -> str:
        conversation_id = refs.conversation_of(ref)
        if conversation_id is None:
            raise HTTPException(404, {"code": "unknown_conversation", "message": "没有这个会话。"})
        return conversation_id

    async def conversation_agent(session_id: str) -> str | None:
        """Who held the conversation's latest hand-over; None when no agent took part."""
        try:
            handoff = await risk("POST", "/handoffs/of-session", json={"session_id": session_id}, passed=(404,))
        except HTTPException as error:
            if error.status_code == 404:
                return None
            raise
        return str(handoff.get("agent") or "") or None

    def may_appeal(agent: Agent, held_by: str | None) -> bool:
        """The agent whose conversation it was appeals its hits; when no agent took part (the
        assistant alone), anyone who handles conversations may. A supervisor other than the
        appellant decides."""
        return agent.may("handle") and held_by in (None, agent.login)

    async def quality_call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not settings.quality_api_token:
            raise HTTPException(503, {"code": "quality_not_configured",
                                      "message": "质检服务未配置（QUALITY_API_TOKEN），暂无质检数据与服务指标。"})
        try:
            return await quality.client().request(method, path, **kwargs)
        except httpx.HTTPError as error:
            log.error("quality inspection unreachable: %s", type(error).__name__)
            raise HTTPException(503, {"code": "quality_unavailable",
                                      "message": "质检服务暂时无法连接，请稍后再试。"}) from None

    def name_of(login: str) -> str:
        holder = accounts.get(login) if accounts else None
        return holder.display_name if holder else login

    async def quality_view(agent: Agent, conversation_id: str, ref: str) -> dict[str, Any]:
        """What was said (masked, as the desk shows any conversation) and every hit of the
        inspection with its review and appeal, in Chinese, each with the steps this person may
        take on it. Supervisors see any conversation they have a reference to, an agent only one
        they could appeal."""
        try:
            held_by, known = await conversation_agent(conversation_id), True
        except HTTPException:
            if not agent.may("supervise"):
                raise
            held_by, known = None, False  # the risk API is down: no appeal offered meanwhile
        appeals = known and may_appeal(agent, held_by)
        if not agent.may("supervise") and not appeals:
            raise HTTPException(403, {"code": "not_your_conversation",
                                      "message": "只能查看自己接待过的会话的质检结果。"})
        try:
            review = answer_json("quality inspection unavailable",
                                 await quality_call("GET", f"/conversations/{quote(conversation_id, safe='')}/review"))
        except HTTPException:
            review = {}  # not inspected (yet), or the inspection is down: the transcript alone
        try:
            said = await relay("read", conversation_id, after=0)
        except HTTPException as error:
            if error.status_code != 404:
                raise
            said = {"missing": True}
        review = review if isinstance(review, dict) else {}
        hits = []
        for hit in (item for item in review.get("hits", []) if isinstance(item, dict)):
            appellant = next((step.get("by") for step in hit.get("steps", []) if step.get("step") == "appeal"), None)
            state = hit.get("state")
            may = [step for step, allowed in (
                ("review", agent.may("supervise") and state == "open"),
                ("appeal", appeals and state == "confirmed"),
                ("decide", agent.may("supervise") and state == "appealed" and appellant != agent.login)) if allowed]
            hits.append({**labels.hit_for_desk(hit, name_of), "may": may})
        return {"ref": ref, "messages": said.get("messages", []), "missing": bool(said.get("missing")),
                "score": review.get("score"), "hits": hits}

    @app.get("/desk/api/quality/conversations/{ref}")
    async def inspected_conversation(ref: Annotated[str, PathParam(pattern=CONVERSATION_REF)],
                                     request: Request) -> dict[str, Any]:
        """A conversation with a recent alert, or one opened from its hand-over: what was said and
        every hit with its review."""
        agent = logged_in_agent(request)
        if agent is None:
            raise HTTPException(401, "login required")
        if not agent.may("handle"):
            raise HTTPException(403, "your role may not do this")
        return await quality_view(agent, conversation_of(ref), ref)

    @app.get("/desk/api/handoffs/{handoff_id}/quality")
    async def handoff_quality(handoff_id: Annotated[str, PathParam(pattern=HANDOFF_ID)],
                              request: Request) -> dict[str, Any]:
        """The quality view of a hand-over's conversation, with the reference to review or appeal it by."""
        agent = require_agent(request, "handle")
        handoff = await handoff_of(handoff_id)
        if not may_see(agent, handoff):
            raise HTTPException(403, "another agent holds this case")
        session_id = str(handoff["session_id"])
        return await quality_view(agent, session_id, conversation_ref(session_id))

    @app.get("/desk/api/quality/pending")
    async def pending_reviews(request: Request, offset: Annotated[int, Query(ge=0, le=100_000)] = 0
                              ) -> dict[str, Any]:
        """The supervisors' list of work, one page from `offset`: conversations with hits to review
        or appeals to decide, the worst first (those the assistant handled alone too: they have no
        hand-over to open)."""
        require_agent(request, "supervise")
        answer = await quality_call("GET", "/reviews/pending", params={"limit": PENDING_PAGE, "offset": offset})
        pending = answer_json("quality inspection unavailable", answer)
        if not isinstance(pending, dict):
            return {"conversations": [], "total": 0, "offset": offset, "page_size": PENDING_PAGE}
        return {"conversations": [labels.pending_for_desk(item, conversation_ref(item["conversation_id"]))
                                  for item in pending.get("conversations", [])
                                  if isinstance(item, dict) and isinstance(item.get("conversation_id"), str)],
                "total": pending.get("total", 0), "offset": offset, "page_size": PENDING_PAGE}

    async def review_step(conversation_id: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One step of a hit's review at the inspection; its refusals (in Chinese) passed on."""
        answer = await quality_call("POST", f"/conversations/{quote(conversation_id, safe='')}/{path}", json=body)
        reviewed = answer_json("quality inspection unavailable", answer, passed=(400, 403, 404, 409, 503))
        return {"score": reviewed.get("score") if isinstance(reviewed, dict) else None}

    @app.post("/desk/api/quality/conversations/{ref}/review")
    async def review_hit(ref: Annotated[str, PathParam(pattern=CONVERSATION_REF)], review: HitReview,
                         request: Request) -> dict[str, Any]:
        """A supervisor confirms or dismisses one hit, with a reason."""
        supervisor = require_agent(request, "supervise")
        return await review_step(conversation_of(ref), "review", {**review.model_dump(), "by": supervisor.login})

    @app.post("/desk/api/quality/conversations/{ref}/appeal")
    async def appeal_hit(ref: Annotated[str, PathParam(pattern=CONVERSATION_REF)], appeal: HitAppeal,
                         request: Request) -> dict[str, Any]:
        """The agent of the conversation (anyone who handles conversations, when no agent took
        part) appeals a confirmed hit once, with a reason."""
        agent = require_agent(request, "handle")
        conversation_id = conversation_of(ref)
        if not may_appeal(agent, await conversation_agent(conversation_id)):
            raise HTTPException(403, {"code": "not_your_conversation", "message": "只有接待这段会话的坐席可以申诉。"})
        return await review_step(conversation_id, "appeal", {**appeal.model_dump(), "by": agent.login})

    @app.post("/desk/api/quality/conversations/{ref}/appeal/decision")
    async def decide_appeal(ref: Annotated[str, PathParam(pattern=CONVERSATION_REF)], decision: AppealDecision,
                            request: Request) -> dict[str, Any]:
        """A supervisor other than the appellant upholds (the hit is dismissed) or rejects an appeal."""
        supervisor = require_agent(request, "supervise")
        return await review_step(conversation_of(ref), "appeal/decision",
                                 {**decision.model_dump(), "by": supervisor.login})

    def supervisors_page(request: Request, refused: str, render: Callable[[Agent], str]) -> Response:
        """A page for supervisors: the login page for nobody, a 403 page for an agent."""
        agent = logged_in_agent(request)
        if agent is None:
            return RedirectResponse("/desk", status_code=303)
        if not agent.may("supervise"):
            return HTMLResponse(pages.forbidden_page(refused), status_code=403)
        return HTMLResponse(render(agent))

    @app.get("/desk/figures", response_class=HTMLResponse)
    def figures_page(request: Request) -> Response:
        charts = (STATIC / "vendor" / "chart.umd.js").is_file()
        return supervisors_page(request, "只有主管可以查看服务指标。", lambda agent: pages.figures_page(agent, charts))

    @app.get("/desk/api/quality/figures")
    async def daily_figures(request: Request,
                            days: Annotated[int, Query(ge=1, le=MAX_FIGURE_DAYS)] = 14) -> dict[str, Any]:
        """The inspection's daily figures for the charts (supervisors), oldest first."""
        require_agent(request, "supervise")
        answer = await quality_call("GET", "/figures/daily.json", params={"days": days})
        figures = answer_json("quality inspection unavailable", answer)
        days = figures.get("days") if isinstance(figures, dict) else None
        return {"days": [labels.figures_for_desk(day) for day in days] if isinstance(days, list) else []}

    @app.post("/desk/api/quality/conversations/{ref}/takeover")
    async def take_over(ref: Annotated[str, PathParam(pattern=CONVERSATION_REF)], request: Request) -> JSONResponse:
        """A supervisor takes an alerted chat over: its hand-over (an open one, or a new one at
        emergency priority) becomes theirs and they join the conversation as for any claimed chat.
        A phone call cannot be pulled from here (it reaches agents through the Asterisk queue)."""
        supervisor = require_agent(request, "supervise")
        alert = alerted_conversation(ref)
        session_id = str(alert["conversation_id"])
        said = await relay("read", session_id, after=0)
        if said.get("channel") != CHAT_CHANNEL:
            raise HTTPException(409, {"code": "not_a_chat", "message": "只能接管在线聊天；电话请通过坐席队列处理。"})
        handoff = await risk("POST", "/handoffs/takeover", json={
            "session_id": session_id, "channel": "chat", "agent": supervisor.login,
            "alert": labels.QUALITY_RULES.get(str(alert.get("rule")), "质检规则")},
            passed=(409,))  # another agent holds it: the risk API's refusal, in Chinese
        await relay("join", session_id, agent_name=supervisor.display_name)
        return JSONResponse({"handoff": for_desk(handoff)})

    @app.post("/desk/api/quality/conversations/{ref}/priority")
    async def raise_priority(ref: Annotated[str, PathParam(pattern=CONVERSATION_REF)],
                             request: Request) -> JSONResponse:
        """A supervisor moves an alerted call waiting for an agent to the front: its hand-over to
        emergency priority (risk API, audited; still any agent's to take), then the call up
        Asterisk's queue (the phone gateway). A chat is taken over instead."""
        supervisor = require_agent(request, "supervise")
        alert = alerted_conversation(ref)
        if not settings.gateway_desk_token or not phone_gateways:
            raise HTTPException(503, {"code": "gateway_not_configured",
                                      "message": "电话网关未配置（GATEWAY_DESK_TOKEN），无法调整排队优先级。"})
        session_id = str(alert["conversation_id"])
        kind = await conversation_kind(session_id)
        if kind is None:  # Rasa could not say: never raise (and probe the gateways with) what may be a chat
            raise HTTPException(503, {"code": "conversation_unknown",
                                      "message": "暂时无法确认这是电话还是在线聊天，请稍后重试。"})
        if kind == "chat":
            raise HTTPException(409, {"code": "not_a_call", "message": "在线聊天无需排队优先级，请直接接管。"})
        raise_request = {"session_id": session_id, "agent": supervisor.login,
                         "alert": labels.QUALITY_RULES.get(str(alert.get("rule")), "质检规则")}
        # Checked, moved, then recorded: a raise the queue did not make is never on record (and
        # nothing waiting, or an agent already having it, leaves the queue alone): the risk API's Chinese.
        await risk("POST", "/handoffs/raise-priority", json={**raise_request, "check_only": True}, passed=(404, 409))
        queued = await raise_in_queue(session_id)
        try:
            handoff = await risk("POST", "/handoffs/raise-priority", json=raise_request, passed=(404, 409))
        except HTTPException as refusal:
            log.error("call raised in the queue, but its record failed: %s", refusal.status_code)
            raise HTTPException(502, {"code": "raised_not_recorded", "message": (
                "电话已在队列中提前，但优先级记录未能保存，请稍后刷新或联系管理员。")}) from None
        return JSONResponse({"handoff": for_desk(handoff),
                             "queue_priority": queued.get("priority") if isinstance(queued, dict) else None})

    async def raise_in_queue(call_id: str) -> Any:
        """Each gateway in turn until the one holding the call moves it up; 404 only when every
        gateway answered that it does not hold it, else the first other refusal (503: AMI or a
        gateway down)."""
        refusals: list[HTTPException] = []
        for phone_gateway in phone_gateways:
            try:
                moved = await phone_gateway.client().post("/queue/priority", json={"call_id": call_id})
                return answer_json("phone gateway unavailable", moved, passed=(404, 503))
            except httpx.HTTPError as error:
                log.error("phone gateway unreachable: %s", type(error).__name__)
                refusals.append(HTTPException(503, {"code": "gateway_unavailable",
                                                    "message": "电话网关无法连接，排队优先级未调整，请稍后再试。"}))
            except HTTPException as refusal:
                refusals.append(refusal)
        raise next((refusal for refusal in refusals if refusal.status_code != 404), refusals[0])

    @app.get("/desk/api/events")
    async def desk_events(request: Request,
                          conversation: Annotated[str | None, Query(pattern=HANDOFF_ID)] = None) -> StreamingResponse:
        """Server-Sent Events: `queue` when the hand-overs or reviews changed (the page asks for its
        list again), `conversation` when the open conversation has new lines (one the agent may
        see; any other is simply not watched), `alerts` for supervisors when the quality
        inspection raised alerts, `ended` when the desk session is over. The stream ends with the
        session."""
        agent = logged_in_agent(request)
        if agent is None:
            raise HTTPException(401, "login required")
        session_id = None
        if conversation is not None and agent.may("handle"):
            with contextlib.suppress(HTTPException):  # gone or the risk API down: the queue only
                handoff = await handoff_of(conversation)
                session_id = handoff["session_id"] if may_see(agent, handoff) else None

        async def stream() -> AsyncIterator[str]:
            news: asyncio.Queue[str] = asyncio.Queue(maxsize=NEWS_BACKLOG)
            async with contextlib.AsyncExitStack() as listening:
                listening.enter_context(DESK_STREAMS.track_inprogress())  # open from its first byte on
                yield "retry: 2000\n\n"
                await listening.enter_async_context(watcher.listening())
                watches = [asyncio.create_task(queue_changes(news))]
                if session_id is not None:
                    watches.append(asyncio.create_task(conversation_growth(session_id, news)))
                if agent.may("supervise") and settings.quality_api_token:
                    await listening.enter_async_context(alert_feed.watcher.listening())
                    watches.append(asyncio.create_task(alert_news(news)))
                try:
                    quiet = 0.0
                    while True:
                        try:
                            said = await asyncio.wait_for(news.get(), SESSION_CHECK_SECONDS)
                        except TimeoutError:
                            said = None
                        if logged_in_agent(request) is None or await request.is_disconnected():
                            break
                        quiet = 0.0 if said else quiet + SESSION_CHECK_SECONDS
                        if said:
                            yield said
                        elif quiet >= KEEPALIVE_SECONDS:
                            quiet = 0.0
                            yield ": keep-alive\n\n"
                    yield "event: ended\ndata: {}\n\n"
                finally:
                    for watch in watches:
                        watch.cancel()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})  # nginx: pass each event on at once

    @app.post("/desk/api/presence")
    async def presence(state: Presence, request: Request) -> dict[str, str]:
        """Online agents are offered chats; the desk repeats this every few seconds as a heartbeat."""
        agent = require_agent(request, "handle")
        await set_presence(agent, state.state)
        return {"state": state.state}

    @app.post("/desk/api/handoffs/{handoff_id}/accept")
    async def accept(handoff_id: Annotated[str, PathParam(pattern=HANDOFF_ID)], request: Request) -> JSONResponse:
        """The logged-in agent takes the hand-over; the risk API lets exactly one agent have it.
        A chat customer is told at once who took it, and the bot stops answering."""
        agent = require_agent(request, "handle")
        taken = await risk("POST", f"/handoffs/{handoff_id}/accept", json={"agent": agent.login}, passed=(404, 409))
        joined = True
        if taken.get("channel") == "chat":
            try:
                await relay("join", (await handoff_of(handoff_id))["session_id"], agent_name=agent.display_name)
            except HTTPException:
                joined = False  # taken all the same; the agent sees the customer was not told
        return JSONResponse({"handoff": for_desk(taken), "joined": joined})

    @app.get("/desk/api/handoffs/{handoff_id}/conversation")
    async def conversation(handoff_id: Annotated[str, PathParam(pattern=HANDOFF_ID)], request: Request,
                           after: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> dict[str, Any]:
        """The hand-over and what was said so far (from event `after` on), personal data masked."""
        agent = require_agent(request, "handle")
        handoff = await handoff_of(handoff_id)
        if not may_see(agent, handoff):
            raise HTTPException(403, "another agent holds this case")
        try:
            said = await relay("read", handoff["session_id"], after=after)
        except HTTPException as error:
            if error.status_code != 404:
                raise
            said = {"missing": True}
        return {"handoff": for_desk(handoff), "messages": said.get("messages", []), "next": said.get("next", after),
                "missing": bool(said.get("missing"))}

    @app.post("/desk/api/handoffs/{handoff_id}/messages")
    async def reply(handoff_id: Annotated[str, PathParam(pattern=HANDOFF_ID)], message: AgentReply,
                    request: Request) -> dict[str, bool]:
        agent = require_agent(request, "handle")
        handoff = await handoff_of(handoff_id)
        if handoff.get("channel") != "chat" or handoff.get("status") != "accepted" \
                or handoff.get("agent") != agent.login:
            raise HTTPException(409, {"code": "not_your_chat", "message": "只能回复自己接起、尚未结束的在线会话。"})
        await relay("say", handoff["session_id"], agent_name=agent.display_name, text=message.text)
        return {"sent": True}

    @app.post("/desk/api/handoffs/{handoff_id}/close")
    async def close(handoff_id: Annotated[str, PathParam(pattern=HANDOFF_ID)], closing: Closing,
                    request: Request) -> JSONResponse:
        """Closed with a disposition and a note; a chat goes back to the bot, which asks for a rating."""
        agent = require_agent(request, "handle")
        closed = await risk("POST", f"/handoffs/{handoff_id}/close", json={
            "agent": agent.login, "disposition": closing.disposition, "note": closing.note,
            "override": agent.may("supervise")}, passed=(404, 409))
        resumed = True
        if closed.get("channel") == "chat":
            try:
                await relay("leave", (await handoff_of(handoff_id))["session_id"], agent_name=agent.display_name)
            except HTTPException:
                resumed = False
        return JSONResponse({"handoff": for_desk(closed), "resumed": resumed})

    @app.post("/desk/api/handoffs/{handoff_id}/do-not-call")
    async def do_not_call(handoff_id: Annotated[str, PathParam(pattern=HANDOFF_ID)], request: Request) -> JSONResponse:
        """The customer asked never to be called again: campaigns skip them from now on."""
        agent = require_agent(request, "handle")
        done = await risk("POST", f"/handoffs/{handoff_id}/do-not-call", json={
            "agent": agent.login, "override": agent.may("supervise")}, passed=(404, 409))
        return JSONResponse({"do_not_call": bool(done.get("do_not_call"))})

    @app.post("/desk/api/reviews/{review_id}/decision")
    async def decide(review_id: Annotated[str, PathParam(pattern=REVIEW_ID)], verdict: ReviewVerdict,
                     request: Request) -> JSONResponse:
        agent = require_agent(request, "review")
        return JSONResponse(await risk("POST", f"/reviews/{review_id}/decision", passed=(404, 409),
                                       json={"approve": verdict.approve, "agent": agent.login, "note": verdict.note}))

    # --- Outbound campaigns, for supervisors: the dialler's own figures and its start / pause / stop. ---

    dialler_unavailable = {"code": "dialler_unavailable", "message": "外呼服务暂时无法连接。"}

    async def dialler_call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not settings.outbound_desk_token:
            raise HTTPException(503, {"code": "not_configured", "message": "外呼服务未配置（OUTBOUND_DESK_TOKEN）。"})
        try:
            return await dialler.client().request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise HTTPException(502, dialler_unavailable) from error

    @app.get("/desk/campaigns", response_class=HTMLResponse)
    def campaigns_page(request: Request) -> Response:
        return supervisors_page(request, "只有主管可以管理外呼活动。", pages.campaigns_page)

    @app.get("/desk/api/campaigns")
    async def campaigns(request: Request) -> list[dict[str, Any]]:
        require_agent(request, "supervise")
        listed = answer_json(dialler_unavailable, await dialler_call("GET", "/campaigns"))
        return [labels.campaign_for_desk(item) for item in listed]

    @app.post("/desk/api/campaigns/{campaign_id}/control")
    async def control_campaign(campaign_id: Annotated[str, PathParam(pattern=CAMPAIGN_ID)], control: CampaignControl,
                               request: Request) -> dict[str, Any]:
        """The supervisor logged in is the one recorded with it, never a name from the browser."""
        agent = require_agent(request, "supervise")
        done = answer_json(dialler_unavailable, await dialler_call(
            "POST", f"/campaigns/{campaign_id}/control", json={"state": control.state, "by": agent.login}),
            passed=(404, 409))
        return {"id": done.get("id"), "state": done.get("state"),
                "state_name": labels.CAMPAIGN_STATES.get(str(done.get("state")), labels.UNKNOWN)}

    @app.get("/desk/campaigns/{campaign_id}/outcomes.csv")
    async def campaign_outcomes(campaign_id: Annotated[str, PathParam(pattern=CAMPAIGN_ID)],
                                request: Request) -> Response:
        require_agent(request, "supervise")
        answer = await dialler_call("GET", f"/campaigns/{campaign_id}/outcomes.csv")
        if answer.status_code != 200 or not answer.headers.get("content-type", "").startswith("text/csv"):
            answer_json(dialler_unavailable, answer, passed=(404,))  # its refusal, or a 502
        return Response(answer.content, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{campaign_id}-outcomes.csv"'})

    # --- The chat customer's side of a hand-over: the chat session token is the credential. ---

    def chat_session_of(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        session_id = chat_session.verify(settings.chat_session_secret, token, clock()) \
            if scheme.lower() == "bearer" else None
        if session_id is None:
            raise HTTPException(401, "a chat session token is required")
        return session_id

    async def waiting_of(session_id: str, seen: bool = False) -> dict[str, Any] | None:
        try:
            return dict(await risk("POST", "/handoffs/of-session", json={"session_id": session_id, "seen": seen},
                                   passed=(404,)))
        except HTTPException as error:
            if error.status_code == 404:
                return None
            raise

    async def agent_lines(session_id: str, after: int) -> list[dict[str, Any]]:
        """The agent's lines from event `after` on: what a widget that was disconnected missed."""
        try:
            said = await relay("read", session_id, after=after)
        except HTTPException:
            return []  # the socket still delivers what comes next; the next check retries
        return [{"seq": line.get("index"), "state": line.get("state"), "name": line.get("name"),
                 "text": line.get("text")} for line in said.get("messages", []) if line.get("from") == "agent"]

    def chat_answer(request: Request, body: Any, status: int = 200) -> JSONResponse:
        cors = chat_cors(request)
        if cors is None:
            return JSONResponse({"detail": "this site may not use the chat"}, status_code=403)
        return JSONResponse(body, status_code=status, headers=cors)

    @app.options("/chat/handoff{rest:path}")
    def chat_handoff_preflight(request: Request, rest: str) -> Response:
        cors = chat_cors(request)
        if cors is None:
            return Response(status_code=403)
        return Response(status_code=204, headers={**cors, "Access-Control-Allow-Methods": "GET, POST",
                                                  "Access-Control-Allow-Headers": "Authorization, Content-Type",
                                                  "Access-Control-Max-Age": "600"})

    @app.get("/chat/handoff")
    async def chat_handoff(request: Request,
                           after: Annotated[int | None, Query(ge=0, le=1_000_000)] = None) -> JSONResponse:
        """Where the customer's hand-over stands: place in the queue and expected wait, or the
        agent's name; whether to offer a callback or a message instead of waiting. Asking is how
        the customer shows they are still there (a waiting customer who stops asking has left).
        With `after`: the agent's lines from that event on, for a widget that was disconnected."""
        session_id = chat_session_of(request)
        handoff = await waiting_of(session_id, seen=True)
        if handoff is None:
            return chat_answer(request, {"state": "none"})
        missed = (await agent_lines(session_id, after)
                  if after is not None and handoff.get("agent") and settings.rasa_desk_token else [])
        holder = accounts.get(handoff.get("agent") or "") if accounts else None
        wait = handoff.get("estimated_wait_seconds")
        waiting = handoff.get("status") == "waiting"
        return chat_answer(request, {
            "state": handoff.get("status"), "position": handoff.get("position"), "estimated_wait_seconds": wait,
            "agent_name": holder.display_name if holder else None,
            "offer_alternatives": waiting and (not handoff.get("agents_online")
                                               or (wait or 0) >= settings.chat_wait_limit_seconds),
            "note_left": bool(handoff.get("customer_note")), "agent_lines": missed})

    @app.post("/chat/handoff/note")
    async def chat_note(note: CustomerNote, request: Request) -> JSONResponse:
        """The waiting customer leaves a message for the agent instead of waiting on."""
        session_id = chat_session_of(request)
        handoff = await waiting_of(session_id)
        if handoff is None or handoff.get("status") != "waiting":
            return chat_answer(request, {"detail": "no waiting hand-over"}, 409)
        await risk("POST", f"/handoffs/{handoff['handoff_id']}/customer-note",
                   json={"session_id": session_id, "text": note.text}, passed=(404, 409))
        return chat_answer(request, {"noted": True})

    @app.post("/chat/handoff/callback")
    async def chat_callback(request: Request) -> JSONResponse:
        """The waiting customer would rather be called back: the queue place is given up and the
        bot takes the conversation back into its callback flow."""
        session_id = chat_session_of(request)
        handoff = await waiting_of(session_id)
        if handoff is None or handoff.get("status") != "waiting":
            return chat_answer(request, {"detail": "no waiting hand-over"}, 409)
        await risk("POST", f"/handoffs/{handoff['handoff_id']}/withdraw", json={"session_id": session_id},
                   passed=(404, 409))
        await relay("withdraw", session_id)
        return chat_answer(request, {"withdrawn": True})

    knowledge = knowledge_desk.KnowledgeDesk(
        entries_dir=settings.knowledge_entries_dir, flows_dir=FLOWS_DIR, index_dir=settings.knowledge_index_dir,
        store=ProposalStore(settings.knowledge_proposals_url, clock))
    app.include_router(knowledge_desk.knowledge_routes(knowledge, logged_in_agent, require_agent, name_of))

    # Outermost: /metrics has the monitoring token of its own, and every answer is timed.
    app.add_middleware(MetricsEndpoint, service="web", token=settings.metrics_token)
    return app
