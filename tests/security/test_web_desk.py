"""Attacks on the agent desk (issue 11): password guessing, a replayed cookie after logout,
framing and injected scripts, development secrets in production, a crafted review or hand-over id
or filter forwarded into the risk API's URL, an agent name from the browser, oversized bodies.
Each against the real web app and a fake risk API that records what reaches it, with the
legitimate path shown still working."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from stack.services import ROOT, SERVICES_VENV, free_port
from tests.accounts import AGENT, PASSWORD, REVIEWER, accounts_file
from tests.loopback import JsonPeer, serving
from web.app import create_app
from web.config import Settings
from web.desk_session import COOKIE_NAME

USER = AGENT
REVIEW_ID = "R-0123456789abcdef0123"
HANDOFF_ID = "H-0123456789abcdef0123"
SESSION_ID = "0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRiskApi:
    """A risk API on loopback that records every request and answers like the real one."""

    url: str
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    summary: str = "…"  # of every hand-over it lists

    def forwarded_posts(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """The POSTs that reached it, but for the audit of each log-in (POST /agents/<login>/sessions)."""
        return [(method, path, body) for method, path, body in self.requests
                if method == "POST" and not (path.startswith("/agents/") and path.endswith("/sessions"))]


def _handler(record: FakeRiskApi) -> type[JsonPeer]:
    class Handler(JsonPeer):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            record.requests.append(("GET", self.path, None))
            if self.path.startswith("/handoffs"):
                self.answer([{"handoff_id": HANDOFF_ID, "session_id": SESSION_ID, "priority": "normal",
                               "flow": "callback_request", "customer_id": "C001", "verified_level": "none",
                               "channel": "voice", "status": "waiting", "agent": None, "reason": "asked",
                               "summary": record.summary, "created_at": "now", "accepted_at": None}],
                             headers={"X-Total-Count": "41"})
            else:
                self.answer([])

        def do_PUT(self) -> None:  # noqa: N802 - presence
            length = int(self.headers.get("Content-Length", 0))
            record.requests.append(("PUT", self.path, json.loads(self.rfile.read(length) or b"null")))
            self.answer({"state": "online"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"null")
            record.requests.append(("POST", self.path, body))
            if not self.path.endswith("/accept"):
                self.answer({"status": "approved"})
            elif self.path in record.accepted:  # as the real one: the first agent has it
                self.answer({"detail": {"code": "handoff_taken", "message": "这位客户已经由其他坐席接起。"}}, 409)
            else:
                record.accepted.add(self.path)
                self.answer({"handoff_id": HANDOFF_ID, "flow": "callback_request", "priority": "high",
                              "channel": "outbound", "verified_level": "L1", "status": "accepted",
                              "agent": body["agent"], "customer_id": "C001", "reason": "asked", "summary": "…",
                              "created_at": "now", "accepted_at": "now"})

    return Handler


@contextmanager
def fake_risk_api() -> Iterator[FakeRiskApi]:
    record = FakeRiskApi("")
    with serving(_handler(record)) as url:
        record.url = url
        yield record


@pytest.fixture
def risk_api() -> Iterator[FakeRiskApi]:
    with fake_risk_api() as record:
        yield record


def settings_for(risk_api: FakeRiskApi) -> Settings:
    return Settings(host="127.0.0.1", port=0, rasa_url="http://127.0.0.1:5005", risk_api_url=risk_api.url,
                    risk_api_token="a-desk-role-token-for-tests", accounts_file=str(accounts_file()),
                    rasa_internal_url="http://127.0.0.1:9", rasa_desk_token=None,
                    session_secret="s" * 32, chat_session_secret="c" * 32, chat_allowed_origins=frozenset())


def client(app: Any, address: str = "10.0.0.1", base_url: str = "http://desk.test") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(address, 40000)), base_url=base_url)


async def log_in(browser: httpx.AsyncClient, user: str = USER, password: str = PASSWORD,
                 headers: dict[str, str] | None = None) -> httpx.Response:
    return await browser.post("/desk/login", data={"user": user, "password": password}, headers=headers)


def presenting(cookie: str) -> dict[str, str]:
    """The desk cookie sent as is (a replay needs no cookie jar)."""
    return {"Cookie": f"{COOKIE_NAME}={cookie}"}


def cookie_of(response: httpx.Response) -> str:
    match = re.search(rf"{COOKIE_NAME}=([^;]+)", response.headers.get("set-cookie", ""))
    assert match, response.headers
    return match.group(1)


async def test_password_guessing_is_throttled_per_source_and_per_user(risk_api: FakeRiskApi) -> None:
    clock = Clock()
    app = create_app(settings_for(risk_api), clock)
    async with client(app, "10.0.0.1") as attacker, client(app, "10.0.0.2") as agent:
        # One source, many user names: the source is stopped, even with the right password.
        for guess in range(5):
            assert (await log_in(attacker, f"user{guess}", "guess")).status_code == 303
        throttled = await log_in(attacker)
        assert throttled.status_code == 429 and "登录失败次数过多" in throttled.text
        assert COOKIE_NAME not in throttled.headers.get("set-cookie", "")
        assert (await log_in(agent)).status_code == 303  # the agent elsewhere is not affected

    async with client(app, "10.0.1.1") as fresh_source:
        # One user name from many sources: the name is stopped.
        for source in range(5):
            async with client(app, f"10.0.2.{source}") as guesser:
                assert (await log_in(guesser, USER, f"guess{source}")).headers["location"] == "/desk?failed=true"
        assert (await log_in(fresh_source)).status_code == 429

        clock.now += 15 * 60 + 1  # the failures age out of the window
        allowed = await log_in(fresh_source)
        assert allowed.status_code == 303 and allowed.headers["location"] == "/desk"
        assert cookie_of(allowed)


async def test_a_logged_out_or_replaced_session_is_refused_when_its_cookie_is_replayed(
        risk_api: FakeRiskApi) -> None:
    app = create_app(settings_for(risk_api), Clock())
    async with client(app) as browser, client(app, "10.9.9.9") as thief:
        first = cookie_of(await log_in(browser))
        queue = await thief.get("/desk/api/queue", headers=presenting(first))
        assert queue.status_code == 200
        assert SESSION_ID not in queue.text and "session_id" not in queue.text  # never reaches the browser
        assert queue.json()["handoffs"][0]["customer_id"] == "C001"

        # Logging in again replaces the session: the old cookie is dead.
        second = cookie_of(await log_in(browser, headers=presenting(first)))
        assert second != first
        assert (await thief.get("/desk/api/queue", headers=presenting(first))).status_code == 401

        await browser.post("/desk/logout", headers=presenting(second))
        assert (await thief.get("/desk/api/queue", headers=presenting(second))).status_code == 401
        page = await thief.get("/desk", headers=presenting(second))
        assert "登录" in page.text and USER not in page.text

        forged = second.split(".")[0] + "." + "0" * 64
        assert (await thief.get("/desk/api/queue", headers=presenting(forged))).status_code == 401


async def test_a_session_ends_after_one_shift(risk_api: FakeRiskApi) -> None:
    clock = Clock()
    app = create_app(settings_for(risk_api), clock)
    async with client(app) as browser:
        cookie = cookie_of(await log_in(browser))
        clock.now += 8 * 3600
        assert (await browser.get("/desk/api/queue", headers=presenting(cookie))).status_code == 401


async def test_the_cookie_is_secure_over_https_and_forwarded_proto_only_behind_the_proxy(
        risk_api: FakeRiskApi) -> None:
    direct = create_app(settings_for(risk_api), Clock())
    async with client(direct) as plain, client(direct, base_url="https://desk.test") as tls:
        assert "secure" not in (await log_in(plain)).headers["set-cookie"].lower()
        assert "secure" in (await log_in(tls)).headers["set-cookie"].lower()
        # Not behind a proxy: anyone could send the header, so it changes nothing.
        spoofed = await log_in(plain, headers={"X-Forwarded-Proto": "https"})
        assert "secure" not in spoofed.headers["set-cookie"].lower()
    proxied = create_app(replace(settings_for(risk_api), behind_proxy=True), Clock())
    async with client(proxied) as behind:
        forwarded = await log_in(behind, headers={"X-Forwarded-Proto": "https"})
        assert "secure" in forwarded.headers["set-cookie"].lower()


def inline_code(html: str) -> list[str]:
    """Inline scripts, event handler attributes and style attributes: what the CSP forbids (a JSON
    data block is not code: the browser never runs it)."""
    return (re.findall(r"<script(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>", html)
            + re.findall(r"\son[a-z]+\s*=", html) + re.findall(r"\sstyle\s*=", html) + re.findall(r"<style", html))


def first_page_of(html: str) -> dict[str, Any]:
    """The queue page the desk came with (its JSON data block)."""
    blocks = re.findall(r'<script type="application/json" id="first-page">(.*?)</script>', html, re.S)
    assert len(blocks) == 1, blocks
    return dict(json.loads(blocks[0]))


async def test_security_headers_on_every_response_and_no_inline_code(risk_api: FakeRiskApi) -> None:
    app = create_app(settings_for(risk_api), Clock())
    async with client(app) as browser:
        cookie = cookie_of(await log_in(browser))
        responses = {
            "demo page": await browser.get("/"),
            "widget": await browser.get("/widget.js"),
            "desk login": await browser.get("/desk"),
            "desk": await browser.get("/desk", headers=presenting(cookie)),
            "static": await browser.get("/static/desk.css"),
            "not found": await browser.get("/nothing-here"),
            "unauthorised": await browser.get("/desk/api/queue"),
            "too large": await browser.post("/desk/login", content=b"x" * 10_000),
        }
    for name, response in responses.items():
        headers = response.headers
        assert headers["x-frame-options"] == "DENY", name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["referrer-policy"] == "no-referrer", name
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, name
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, name
    # The demo page may reach Rasa (the widget's websocket); the desk may not.
    assert "ws://127.0.0.1:5005" in responses["demo page"].headers["content-security-policy"]
    assert "ws://" not in responses["desk"].headers["content-security-policy"]
    assert responses["desk"].headers["cache-control"] == "no-store"
    for name in ("demo page", "desk login", "desk"):
        assert inline_code(responses[name].text) == [], name
    assert USER in responses["desk"].text


async def test_malformed_review_ids_are_refused_before_anything_is_forwarded(risk_api: FakeRiskApi) -> None:
    app = create_app(settings_for(risk_api), Clock())
    async with client(app) as browser:
        await log_in(browser, REVIEWER)
        for crafted in ("R-0123456789abcdef0123%3Fagent%3Dmallory", "H-0123456789abcdef0123",
                        "R-0123456789ABCDEF0123", "R-0123456789abcdef01234", "R-xyz", "%2E%2E",
                        "R-0123456789abcdef012%00"):
            answer = await browser.post(f"/desk/api/reviews/{crafted}/decision", json={"approve": True})
            assert answer.status_code == 422, (crafted, answer.text)
        # An agent name from the browser is refused too: the agent is the one logged in.
        forged_agent = await browser.post(f"/desk/api/reviews/{REVIEW_ID}/decision",
                                          json={"approve": True, "agent": "mallory"})
        assert forged_agent.status_code == 422
        assert not risk_api.forwarded_posts()

        approved = await browser.post(f"/desk/api/reviews/{REVIEW_ID}/decision",
                                      json={"approve": True, "note": "已电话核实"})
    assert approved.status_code == 200
    assert risk_api.requests[-1] == ("POST", f"/reviews/{REVIEW_ID}/decision",
                                     {"approve": True, "agent": REVIEWER, "note": "已电话核实"})


async def test_malformed_handoff_ids_are_refused_and_the_agent_is_the_one_logged_in(risk_api: FakeRiskApi) -> None:
    app = create_app(settings_for(risk_api), Clock())
    async with client(app) as browser:
        assert (await browser.post(f"/desk/api/handoffs/{HANDOFF_ID}/accept")).status_code == 401
        await log_in(browser)
        for crafted in ("H-0123456789abcdef0123%3Fagent%3Dmallory", REVIEW_ID, "H-0123456789ABCDEF0123",
                        "H-0123456789abcdef01234", "H-xyz", "%2E%2E", "H-0123456789abcdef012%00",
                        "H-0123456789abcdef0123%2F..%2F..%2Freviews"):
            answer = await browser.post(f"/desk/api/handoffs/{crafted}/accept")
            assert answer.status_code in (404, 422), (crafted, answer.text)
        assert not risk_api.forwarded_posts()

        # The body is not read: a name the browser sends changes nothing.
        taken = await browser.post(f"/desk/api/handoffs/{HANDOFF_ID}/accept", json={"agent": "mallory"})
        assert taken.status_code == 200, taken.text
        assert taken.json()["handoff"]["agent"] == USER and taken.json()["handoff"]["status_name"] == "服务中"
        again = await browser.post(f"/desk/api/handoffs/{HANDOFF_ID}/accept")
    assert again.status_code == 409
    assert again.json()["detail"]["message"] == "这位客户已经由其他坐席接起。"
    assert risk_api.forwarded_posts() == [
        ("POST", f"/handoffs/{HANDOFF_ID}/accept", {"agent": USER})] * 2


async def test_the_queue_names_everything_in_chinese_and_forwards_only_filters_it_offers(
        risk_api: FakeRiskApi) -> None:
    app = create_app(settings_for(risk_api), Clock())
    async with client(app) as browser:
        await log_in(browser)
        page = await browser.get("/desk")
        queue = await browser.get("/desk/api/queue", params={"status": "all", "channel": "outbound",
                                                             "priority": "high", "flow": "callback_request",
                                                             "offset": 40})
        for crafted in ({"status": "finished"}, {"channel": "fax"}, {"priority": "urgent"}, {"flow": "no_such_flow"},
                        {"flow": "callback_request&status=accepted"}, {"offset": "-1"}, {"handoff_id": "H-1"},
                        {"handoff_id": f"{HANDOFF_ID}&status=accepted"}):
            refused = await browser.get("/desk/api/queue", params=crafted)
            assert refused.status_code == 422, (crafted, refused.text)
    forwarded = [parse_qs(urlsplit(path).query) for method, path, _ in risk_api.requests
                 if path.startswith("/handoffs?")]
    # The desk page came with its first page: the waiting ones and the agent's own open cases.
    mine = {"status": ["accepted"], "agent": [USER], "limit": ["20"]}
    assert sorted(forwarded[:2], key=str) == sorted([{"status": ["waiting"], "limit": ["20"], "offset": ["0"]},
                                                     mine], key=str)
    # Then the page asked for, and the agent's own open cases again (whatever the filters).
    assert sorted(forwarded[2:], key=str) == sorted([{"channel": ["outbound"], "priority": ["high"],
                                                      "flow": ["callback_request"], "limit": ["20"],
                                                      "offset": ["40"]}, mine], key=str)
    assert first_page_of(page.text)["handoffs"][0]["flow_name"] == "预约回电"
    assert queue.status_code == 200, queue.text
    body = queue.json()
    assert (body["total"], body["offset"], body["page_size"]) == (41, 40, 20)
    card = body["handoffs"][0]
    assert (card["flow_name"], card["priority_name"], card["channel_name"], card["verified_name"],
            card["status_name"]) == ("预约回电", "普通", "电话", "未核身", "等待中")
    assert "callback_request" not in queue.text and "none" not in queue.text
    for words in ("<option value=\"callback_request\">预约回电</option>", "<option value=\"outbound\">外呼</option>",
                  "<option value=\"waiting\" selected>等待中</option>", "<option value=\"emergency\">紧急</option>"):
        assert words in page.text


async def test_the_desk_comes_with_its_first_page_and_a_summary_cannot_break_out_of_it(
        risk_api: FakeRiskApi) -> None:
    risk_api.summary = '客户说：</script><script>alert(1)</script><!-- & <img src=x onerror=alert(2)>'
    app = create_app(settings_for(risk_api), Clock())
    async with client(app) as browser:
        await log_in(browser)
        page = await browser.get("/desk")
    assert page.status_code == 200
    # Inside the block every < > & is escaped: the words cannot close it or open markup.
    outside = re.sub(r'<script type="application/json" id="first-page">.*?</script>', "", page.text, flags=re.S)
    assert inline_code(outside) == [] and "<img" not in page.text and "<!--" not in page.text
    assert page.text.count("</script>") == outside.count("</script>") + 1
    first = first_page_of(page.text)
    assert first["handoffs"][0]["summary"] == risk_api.summary, "the customer's words arrive intact, as data"
    assert (first["total"], first["offset"]) == (41, 0)


async def test_agents_search_by_a_phone_number_form_and_nothing_else_is_forwarded(risk_api: FakeRiskApi) -> None:
    app = create_app(settings_for(risk_api), Clock())
    async with client(app) as browser:
        await log_in(browser)
        for searched in ("13812345678", "138****5678", "5678"):
            found = await browser.get("/desk/api/queue", params={"phone": searched, "status": "all"})
            assert found.status_code == 200, found.text
        for crafted in ("138%", "1381234567", "138****567", "5678&status=accepted", "138_1234_5678", "*"):
            refused = await browser.get("/desk/api/queue", params={"phone": crafted})
            assert refused.status_code == 422, crafted
    phones = [parse_qs(urlsplit(path).query).get("phone") for method, path, _ in risk_api.requests
              if path.startswith("/handoffs?")]
    assert [phone for phone in phones if phone] == [["13812345678"], ["138****5678"], ["5678"]]


async def test_desk_log_ins_and_log_outs_reach_the_audit_log(risk_api: FakeRiskApi) -> None:
    app = create_app(settings_for(risk_api), Clock())
    async with client(app) as browser:
        assert (await log_in(browser, password="wrong")).headers["location"] == "/desk?failed=true"
        assert (await log_in(browser)).status_code == 303
        await browser.post("/desk/logout")
    audited = [(path, body) for method, path, body in risk_api.requests if path.endswith("/sessions")]
    assert audited == [(f"/agents/{USER}/sessions", {"event": "login"}),
                       (f"/agents/{USER}/sessions", {"event": "logout"})], "a failed password is no log-in"


async def test_a_log_in_the_audit_log_cannot_record_opens_no_desk_session() -> None:
    down = replace(settings_for(FakeRiskApi("")), risk_api_url=f"http://127.0.0.1:{free_port()}")
    async with client(create_app(down, Clock())) as browser:
        refused = await log_in(browser)
        assert refused.status_code == 503 and "审计服务不可用" in refused.text
        assert COOKIE_NAME not in refused.cookies
        assert (await browser.get("/desk/api/queue")).status_code == 401


async def test_oversized_bodies_are_refused_and_not_forwarded(risk_api: FakeRiskApi) -> None:
    app = create_app(settings_for(risk_api), Clock())

    async def streamed(size: int) -> Any:  # no Content-Length: the limit must count what arrives
        for _ in range(size // 1024):
            yield b"x" * 1024

    async with client(app) as browser:
        await log_in(browser)
        big_note = {"approve": True, "note": "x" * 200_000}
        assert (await browser.post(f"/desk/api/reviews/{REVIEW_ID}/decision", json=big_note)).status_code == 413
        assert (await browser.post(f"/desk/api/reviews/{REVIEW_ID}/decision",
                                   content=streamed(64 * 1024))).status_code == 413
        assert (await browser.post("/desk/login", content=streamed(64 * 1024))).status_code == 413
    assert not risk_api.forwarded_posts()


def web_env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "IVR_ENV"}
    env.update({"PYTHONPATH": str(ROOT), "WEB_HOST": "127.0.0.1", "WEB_PORT": str(free_port()),
                "RISK_API_URL": "http://127.0.0.1:9", "RISK_API_TOKEN": "a-desk-role-token-for-tests",
                "AGENT_ACCOUNTS_FILE": str(accounts_file()), "WEB_SESSION_SECRET": "w" * 32,
                "CHAT_SESSION_SECRET": "c" * 32,
                "RASA_DESK_TOKEN": "a-rasa-desk-token-for-tests", "OUTBOUND_DESK_TOKEN": "an-outbound-token-for-tests",
                "QUALITY_API_TOKEN": "a-quality-token-for-tests", "METRICS_TOKEN": "a-metrics-token-for-tests",
                "GATEWAY_DESK_TOKEN": "a-gateway-desk-token-for-tests"})
    env.update(overrides)
    return env


@pytest.mark.parametrize("name", ["WEB_SESSION_SECRET", "CHAT_SESSION_SECRET", "RISK_API_TOKEN", "RASA_DESK_TOKEN",
                                  "OUTBOUND_DESK_TOKEN", "QUALITY_API_TOKEN", "METRICS_TOKEN", "GATEWAY_DESK_TOKEN"])
def test_development_secrets_stop_the_server_outside_development(name: str) -> None:
    done = subprocess.run([str(SERVICES_VENV / "bin" / "python"), "-m", "web"], cwd=ROOT,
                          env=web_env(**{name: "dev-only-agent-password"}), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert f"{name} is a development value" in done.stderr and "IVR_ENV=development" in done.stderr


@pytest.fixture
def development_server(tmp_path: Path) -> Iterator[str]:
    """`python -m web` as `make run` starts it: IVR_ENV=development and the repository's accounts."""
    env = web_env(IVR_ENV="development", AGENT_ACCOUNTS_FILE=str(ROOT / "ivr_config" / "agents.dev.yaml"))
    url = f"http://127.0.0.1:{env['WEB_PORT']}"
    with (tmp_path / "web.log").open("wb") as log:
        process = subprocess.Popen([str(SERVICES_VENV / "bin" / "python"), "-m", "web"], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):  # bounded: up to ~20 s for the interpreter to start
            if process.poll() is not None:
                pytest.fail((tmp_path / "web.log").read_text())
            try:
                if httpx.get(url + "/health", timeout=0.2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the web server did not answer /health")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_in_development_the_server_starts_and_refuses_oversized_bodies_on_the_wire(development_server: str) -> None:
    with httpx.Client(base_url=development_server, timeout=10) as http:
        login = http.post("/desk/login", data={"user": "agent", "password": "dev-only-agent-password"})
        # The right password, but no risk API here to audit the log-in: no desk session without it.
        assert login.status_code == 503 and "审计服务不可用" in login.text
        assert COOKIE_NAME not in login.cookies
        assert http.post("/desk/login", content=b"user=x&password=" + b"y" * 100_000).status_code == 413
        chunked = http.post("/desk/login", content=iter([b"user=x&password="] + [b"y" * 1024] * 64))
        assert chunked.status_code == 413
        assert http.get("/").headers["x-frame-options"] == "DENY"
