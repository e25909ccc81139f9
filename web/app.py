"""The web app: the widget demo page and script, and the agent desk with its JSON API.

The desk's API proxies the risk API so the browser never holds the risk API token; the agent
recorded with a review decision is the one logged in, never one the browser names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from web import desk_session, pages
from web.config import Settings

STATIC = Path(__file__).resolve().parent / "static"


class ReviewVerdict(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=500)


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="web chat and agent desk", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def risk_api() -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=settings.risk_api_url, timeout=10,
                                 headers={"Authorization": f"Bearer {settings.risk_api_token}"})

    def logged_in_agent(request: Request) -> str | None:
        return desk_session.agent_of(settings.session_secret, request.cookies.get(desk_session.COOKIE_NAME))

    def require_agent(request: Request) -> str:
        agent = logged_in_agent(request)
        if agent is None:
            raise HTTPException(401, "login required")
        return agent

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

    @app.middleware("http")
    async def desk_switched_off(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/desk") and not (settings.desk_user and settings.desk_password):
            return JSONResponse({"detail": "agent desk not configured: set AGENT_DESK_USER and AGENT_DESK_PASSWORD"},
                                status_code=503)
        return await call_next(request)

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
        if not desk_session.credentials_match(user, password, settings.desk_user or "", settings.desk_password or ""):
            return RedirectResponse("/desk?failed=true", status_code=303)
        response = RedirectResponse("/desk", status_code=303)
        response.set_cookie(desk_session.COOKIE_NAME, desk_session.issue(settings.session_secret, user),
                            max_age=desk_session.SESSION_SECONDS, httponly=True, samesite="strict", path="/")
        return response

    @app.post("/desk/logout")
    def logout() -> Response:
        response = RedirectResponse("/desk", status_code=303)
        response.delete_cookie(desk_session.COOKIE_NAME, path="/")
        return response

    @app.get("/desk/api/queue")
    async def queue(request: Request) -> dict[str, Any]:
        require_agent(request)
        try:
            async with risk_api() as client:
                handoffs = await client.get("/handoffs", params={"status": "waiting"})
                reviews = await client.get("/reviews", params={"status": "pending"})
        except httpx.HTTPError as error:
            raise HTTPException(502, "risk API unavailable") from error
        if handoffs.status_code != 200 or reviews.status_code != 200:
            raise HTTPException(502, "risk API unavailable")
        return {"handoffs": handoffs.json(), "reviews": reviews.json()}

    @app.post("/desk/api/reviews/{review_id}/decision")
    async def decide(review_id: str, verdict: ReviewVerdict, request: Request) -> JSONResponse:
        agent = require_agent(request)
        try:
            async with risk_api() as client:
                answer = await client.post(f"/reviews/{review_id}/decision",
                                           json={"approve": verdict.approve, "agent": agent, "note": verdict.note})
        except httpx.HTTPError as error:
            raise HTTPException(502, "risk API unavailable") from error
        return JSONResponse(answer.json(), status_code=answer.status_code)

    return app
