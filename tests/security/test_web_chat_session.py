"""Chat sessions are issued by the web server (issue 11): signed tokens, a per-source limit
(many sessions from one place is how a phone number's owner gets locked out by guessing), CORS
only for the sites allowed to embed the widget; and in headless Chromium against the whole stack,
the widget keeps nothing in localStorage and never stores what the customer answers to prove
who they are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from risk_api.demo import customers_with_tag
from tests.conftest import Stack
from tests.web.widget_driver import Widget
from trust import chat_session
from web.app import create_app
from web.chromium import launch
from web.config import Settings

SECRET = "a-chat-session-secret-for-tests"
EMBEDDING_SITE = "https://www.example-lender.cn"
NOW = 1_800_000_000.0


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


SETTINGS = Settings(host="127.0.0.1", port=0, rasa_url="http://127.0.0.1:5005", risk_api_url="http://127.0.0.1:9",
                    risk_api_token="a-desk-role-token-for-tests", accounts_file=None,
                    rasa_internal_url="http://127.0.0.1:9", rasa_desk_token=None, session_secret="s" * 32,
                    chat_session_secret=SECRET,
                    chat_allowed_origins=frozenset({EMBEDDING_SITE}))


def client(app: Any, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(address, 40000)), base_url="http://chat.test")


async def test_the_server_issues_signed_sessions_that_rasa_can_verify() -> None:
    app = create_app(SETTINGS, Clock())
    async with client(app, "10.0.0.1") as browser:
        first, second = (await browser.post("/chat/session")).json(), (await browser.post("/chat/session")).json()
        assert (await browser.get("/chat/session")).status_code == 405
        assert (await browser.post("/chat/session", content=b"x" * 4096)).status_code == 413
        cached = (await browser.post("/chat/session")).headers["cache-control"]
    assert cached == "no-store"
    assert first["expires_at"] == NOW + chat_session.SESSION_SECONDS
    assert first["expires_in"] == chat_session.SESSION_SECONDS
    issued = [chat_session.verify(SECRET, each["token"], NOW + 60) for each in (first, second)]
    assert None not in issued and issued[0] != issued[1]
    assert chat_session.verify("another-secret-entirely", first["token"], NOW + 60) is None
    assert chat_session.verify(SECRET, first["token"], first["expires_at"]) is None


async def test_sessions_are_limited_per_source_address() -> None:
    clock = Clock()
    app = create_app(SETTINGS, clock)
    async with client(app, "10.0.0.1") as attacker, client(app, "10.0.0.2") as customer:
        for _ in range(SETTINGS.chat_sessions_per_source):
            assert (await attacker.post("/chat/session")).status_code == 200
        refused = await attacker.post("/chat/session")
        assert refused.status_code == 429 and "token" not in refused.json()
        assert 0 < int(refused.headers["retry-after"]) <= 600
        # A forged X-Forwarded-For does not buy a fresh quota when no proxy is configured.
        spoofed = await attacker.post("/chat/session", headers={"X-Forwarded-For": "203.0.113.7"})
        assert spoofed.status_code == 429
        assert (await customer.post("/chat/session")).status_code == 200  # other sources unaffected
        clock.now += 10 * 60 + 1
        assert (await attacker.post("/chat/session")).status_code == 200


async def test_behind_the_proxy_the_address_it_appended_is_the_source() -> None:
    app = create_app(replace(SETTINGS, behind_proxy=True), Clock())
    async with client(app, "10.0.0.9") as proxy:  # every request arrives from the proxy
        for _ in range(SETTINGS.chat_sessions_per_source):
            # The client's own X-Forwarded-For entry (first) is its word; the proxy's (last) counts.
            answer = await proxy.post("/chat/session", headers={"X-Forwarded-For": "1.1.1.1, 198.51.100.1"})
            assert answer.status_code == 200
        assert (await proxy.post("/chat/session",
                                 headers={"X-Forwarded-For": "2.2.2.2, 198.51.100.1"})).status_code == 429
        assert (await proxy.post("/chat/session", headers={"X-Forwarded-For": "198.51.100.2"})).status_code == 200


async def test_only_allowed_sites_get_a_session_from_the_browser() -> None:
    app = create_app(SETTINGS, Clock())
    async with client(app, "10.0.0.1") as browser:
        allowed = await browser.post("/chat/session", headers={"Origin": EMBEDDING_SITE})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == EMBEDDING_SITE
        assert "origin" in allowed.headers["vary"].lower()
        own = await browser.post("/chat/session", headers={"Origin": "http://chat.test"})
        assert own.status_code == 200 and own.headers["access-control-allow-origin"] == "http://chat.test"
        for foreign in ("https://evil.example", "null", "https://www.example-lender.cn.evil.example",
                        "http://www.example-lender.cn"):
            refused = await browser.post("/chat/session", headers={"Origin": foreign})
            assert refused.status_code == 403 and "token" not in refused.text, foreign
            assert "access-control-allow-origin" not in refused.headers, foreign
            preflight = await browser.options("/chat/session", headers={
                "Origin": foreign, "Access-Control-Request-Method": "POST"})
            assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
        preflight = await browser.options("/chat/session", headers={
            "Origin": EMBEDDING_SITE, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == EMBEDDING_SITE
        # Chat clients of the REST channel are not browsers: no Origin, no CORS headers, a session.
        plain = await browser.post("/chat/session")
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


# --- The widget in headless Chromium against the whole stack ------------------------------------

IDENTITY_SLOTS = ("phone_number", "customer_name", "id_last4", "otp_code")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        try:
            launched = launch(playwright)
        except RuntimeError as error:
            pytest.fail(str(error))
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="zh-CN")
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def storage(page: Page, name: str) -> dict[str, str]:
    return page.evaluate(f"Object.fromEntries(Object.keys({name}).map(k => [k, {name}.getItem(k)]))")


@pytest.mark.stack
def test_the_widget_keeps_no_identity_answers_and_nothing_in_local_storage(page: Page,
                                                                           running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[2]
    # What an earlier widget left in localStorage (the conversation, identity answers included).
    page.goto(running_stack.web_url + "/health")
    page.evaluate("localStorage.setItem('fin-chat:transcript:old', JSON.stringify([{text: '110101199001011234'}]))")

    widget = Widget(page, running_stack)
    widget.open()
    widget.say("我想提前还清")
    typed = []
    for _ in range(len(IDENTITY_SLOTS)):  # answer what the bot asks until it asks for no identity
        slot = widget.expecting
        if slot not in IDENTITY_SLOTS:
            break
        answer = (running_stack.latest_otp(customer["phone"]) if slot == "otp_code"
                  else customer[{"phone_number": "phone", "customer_name": "name", "id_last4": "id_last4"}[slot]])
        widget.say(answer)
        typed.append(answer)
    assert {customer["phone"], customer["name"], customer["id_last4"]} <= set(typed), widget.bot_texts
    # The customer sees what they typed …
    shown = page.locator(".fin-chat-user .fin-chat-text").all_text_contents()
    assert all(answer in shown for answer in typed)

    kept = storage(page, "sessionStorage")
    assert storage(page, "localStorage") == {}
    stored = json.dumps(kept, ensure_ascii=False)
    # … the tab keeps neither the answers nor anything else that identifies the customer.
    for answer in typed:
        assert answer not in stored, answer
    transcript = json.loads(kept["fin-chat:transcript"])
    user_entries = [entry["text"] for entry in transcript if entry["from"] == "user"]
    assert user_entries == ["我想提前还清"] + ["••••"] * len(typed)
    session = json.loads(kept["fin-chat:session"])
    seconds_left = session["expiresAt"] / 1000 - 60
    session_id = chat_session.verify(running_stack.keys.chat_session, session["token"], seconds_left)
    assert session_id is not None
    assert session_id not in page.content()  # the session id is shown nowhere

    # A reload shows the masked transcript, still in the same conversation.
    page.reload()
    widget.wait_connected()
    expect(page.locator(".fin-chat-user .fin-chat-text").last).to_have_text("••••")


@pytest.mark.stack
def test_an_ended_session_leaves_nothing_behind_and_a_new_one_starts(page: Page, running_stack: Stack) -> None:
    widget = Widget(page, running_stack)
    widget.open()
    widget.say("你好")
    before = json.loads(storage(page, "sessionStorage")["fin-chat:session"])

    # Rasa refuses the token (here: altered): the widget clears everything and starts over.
    page.evaluate("""() => {
        const session = JSON.parse(sessionStorage.getItem('fin-chat:session'));
        session.token = session.token.slice(0, -4) + 'AAAA';
        sessionStorage.setItem('fin-chat:session', JSON.stringify(session));
    }""")
    page.reload()
    widget.wait_connected()
    after = json.loads(storage(page, "sessionStorage")["fin-chat:session"])
    assert after["token"] != before["token"]
    assert page.locator(".fin-chat-user").count() == 0 and page.locator(".fin-chat-bot").count() == 0
    expect(page.locator(".fin-chat-system .fin-chat-text")).to_have_text("上一次会话已结束，已为您开始新的会话。")
    widget.say("你好")  # the new session works

    # The session's time is up (as the browser sees it): a reload starts a fresh one, nothing kept.
    page.evaluate("""() => {
        const session = JSON.parse(sessionStorage.getItem('fin-chat:session'));
        session.expiresAt = Date.now() - 1000;
        sessionStorage.setItem('fin-chat:session', JSON.stringify(session));
    }""")
    page.reload()
    widget.wait_connected()
    assert json.loads(storage(page, "sessionStorage")["fin-chat:session"])["token"] != after["token"]
    assert page.locator(".fin-chat-msg").count() == 0
