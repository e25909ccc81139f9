"""The web app: the widget demo page and script, chat sessions for the widget, and the agent
desk with its JSON API.

The desk's API proxies the risk API so the browser never holds the risk API token; the agent
recorded with a review decision or an accepted hand-over is the one logged in, never one the
browser names.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from trust import chat_session
from trust.asgi import BodyLimit
from web import labels, pages
from web.config import Settings
from web.desk_session import COOKIE_NAME, SESSION_SECONDS, DeskSessions, credentials_match
from web.throttle import Clock, Throttle

STATIC = Path(__file__).resolve().parent / "static"
# The risk API's review and hand-over ids: risk_api.db.new_id("R"), new_id("H"). Anything else
# never reaches its URL.
REVIEW_ID = r"^R-[0-9a-f]{20}$"
HANDOFF_ID = r"^H-[0-9a-f]{20}$"
HANDOFFS_PER_PAGE = 20
CHAT_SESSION_WINDOW_SECONDS = 10 * 60
LOGIN_FAILURES = 5  # per source address and per user name …
LOGIN_WINDOW_SECONDS = 15 * 60  # … within this window, then 429 until the oldest failure ages out
# Request bodies: a chat session needs none, a login form two short fields, a review verdict a
# 500-character note (JSON-escaped, up to 6 bytes a character).
CHAT_SESSION_MAX_BODY = 256
LOGIN_MAX_BODY = 2 * 1024
MAX_BODY = 8 * 1024
# The risk API unreachable, or an answer not shaped as its contract says: a 502, never a 500.
RISK_API_TROUBLE = (httpx.HTTPError, ValueError, TypeError, KeyError, AttributeError)
# The fields each review card shows (desk.js); nothing else, session ids above all, reaches the browser.
REVIEW_FIELDS = ("review_id", "action", "customer_id", "params", "reasons", "created_at")


class ReviewVerdict(BaseModel):
    # An `agent` from the browser is refused, not ignored: the agent is the one logged in.
    model_config = ConfigDict(extra="forbid")
    approve: bool
    note: str = Field(default="", max_length=500)


def body_limit_for(path: str) -> int:
    if path == "/chat/session":
        return CHAT_SESSION_MAX_BODY
    if path == "/desk/login":
        return LOGIN_MAX_BODY
    return MAX_BODY


def body_too_large(limit: int) -> dict[str, str]:
    return {"detail": f"request body over {limit} bytes"}


def known(value: str | None, words: Mapping[str, str], what: str) -> str | None:
    """A filter value the desk offers, else 422: nothing else is forwarded to the risk API."""
    if value is not None and value not in words:
        raise HTTPException(422, f"unknown {what}")
    return value


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

    def risk_api() -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=settings.risk_api_url, timeout=10,
                                 headers={"Authorization": f"Bearer {settings.risk_api_token}"})

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

    def logged_in_agent(request: Request) -> str | None:
        return desk_sessions.agent_of(request.cookies.get(COOKIE_NAME))

    def require_agent(request: Request) -> str:
        agent = logged_in_agent(request)
        if agent is None:
            raise HTTPException(401, "login required")
        return agent

    @app.middleware("http")
    async def desk_switched_off(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/desk") and not (settings.desk_user and settings.desk_password):
            return JSONResponse({"detail": "agent desk not configured: set AGENT_DESK_USER and AGENT_DESK_PASSWORD"},
                                status_code=503)
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
        if path.startswith("/desk") or path == "/chat/session":
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
    def desk(request: Request, failed: bool = False) -> str:
        agent = logged_in_agent(request)
        return pages.desk_page(agent) if agent else pages.login_page(failed)

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
        if not credentials_match(user, password, settings.desk_user or "", settings.desk_password or ""):
            login_failures_per_source.record(source)
            login_failures_per_user.record(user_key)
            return RedirectResponse("/desk?failed=true", status_code=303)
        desk_sessions.end(request.cookies.get(COOKIE_NAME))  # a new session at every login, never the old id
        response = RedirectResponse("/desk", status_code=303)
        response.set_cookie(COOKIE_NAME, desk_sessions.start(user), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=over_https(request), path="/")
        return response

    @app.post("/desk/logout")
    def logout(request: Request) -> Response:
        desk_sessions.end(request.cookies.get(COOKIE_NAME))
        response = RedirectResponse("/desk", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=over_https(request))
        return response

    @app.get("/desk/api/queue")
    async def queue(request: Request, status: str = "waiting", channel: str | None = None,
                    priority: str | None = None, flow: str | None = None,
                    handoff_id: Annotated[str | None, Query(pattern=HANDOFF_ID)] = None,
                    offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> dict[str, Any]:
        """One page of hand-overs (filtered; by default the waiting ones) and the pending reviews."""
        require_agent(request)
        wanted = {"status": None if status == "all" else known(status, labels.STATES, "status"),
                  "channel": known(channel, labels.CHANNELS, "channel"),
                  "priority": known(priority, labels.PRIORITIES, "priority"),
                  "flow": known(flow, flow_names, "flow"), "handoff_id": handoff_id}
        params = {key: value for key, value in wanted.items() if value is not None}
        try:
            async with risk_api() as client:
                handoffs = await client.get("/handoffs", params={**params, "limit": HANDOFFS_PER_PAGE,
                                                                 "offset": offset})
                reviews = await client.get("/reviews", params={"status": "pending"})
            if handoffs.status_code != 200 or reviews.status_code != 200:
                raise HTTPException(502, "risk API unavailable")
            return {"handoffs": [labels.handoff_for_desk(item) for item in handoffs.json()],
                    "total": int(handoffs.headers["x-total-count"]), "offset": offset,
                    "page_size": HANDOFFS_PER_PAGE,
                    "reviews": [{key: item.get(key) for key in REVIEW_FIELDS} for item in reviews.json()]}
        except RISK_API_TROUBLE as error:
            raise HTTPException(502, "risk API unavailable") from error

    @app.post("/desk/api/handoffs/{handoff_id}/accept")
    async def accept(handoff_id: Annotated[str, PathParam(pattern=HANDOFF_ID)], request: Request) -> JSONResponse:
        """The logged-in agent takes the hand-over; the risk API lets exactly one agent have it."""
        agent = require_agent(request)
        try:
            async with risk_api() as client:
                answer = await client.post(f"/handoffs/{handoff_id}/accept", json={"agent": agent})
            body = answer.json()
            if answer.status_code == 200:
                return JSONResponse({"handoff": labels.handoff_for_desk(body)})
            if answer.status_code in (404, 409):
                # Taken by a faster agent, ended or unknown: the risk API's Chinese message says which.
                detail = body["detail"]
                return JSONResponse({"detail": {"code": str(detail["code"]), "message": str(detail["message"])}},
                                    status_code=answer.status_code)
        except RISK_API_TROUBLE as error:
            raise HTTPException(502, "risk API unavailable") from error
        raise HTTPException(502, "risk API unavailable")

    @app.post("/desk/api/reviews/{review_id}/decision")
    async def decide(review_id: Annotated[str, PathParam(pattern=REVIEW_ID)], verdict: ReviewVerdict,
                     request: Request) -> JSONResponse:
        agent = require_agent(request)
        try:
            async with risk_api() as client:
                answer = await client.post(f"/reviews/{review_id}/decision",
                                           json={"approve": verdict.approve, "agent": agent, "note": verdict.note})
            return JSONResponse(answer.json(), status_code=answer.status_code)
        except (httpx.HTTPError, ValueError) as error:
            raise HTTPException(502, "risk API unavailable") from error

    return app
