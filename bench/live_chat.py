"""Live chat between a customer and an agent: how long a message takes to reach the other side.

A customer in the widget asks for a person, an agent claims the hand-over on the desk, and they
write to each other in turn, in two headless Chromium profiles. Each delivery is timed from the
Enter key to the line on the other page (Playwright's own polling included, so an upper bound);
the target is "within a second".
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx

from bench.stats import percentile
from web.chromium import launch

ROUND_TRIPS = 10
WAIT_MS = 30_000


def logged_in_desk(browser: Any, web_url: str, login: dict[str, str]) -> Any:
    """A desk page of its own browser profile, logged in, online, its events flowing."""
    desk = browser.new_context(locale="zh-CN").new_page()
    desk.goto(web_url + "/desk")
    desk.get_by_label("用户名").fill(login["user"])
    desk.get_by_label("密码").fill(login["password"])
    desk.get_by_role("button", name="登录").click()
    desk.locator("body[data-push='live']").wait_for(timeout=WAIT_MS)
    return desk


def figures(web_url: str, risk_url: str, desk_token: str, login: dict[str, str]) -> dict[str, Any]:
    from playwright.sync_api import Page, sync_playwright  # only `make bench` needs a browser

    def waiting_transfers() -> set[str]:
        with httpx.Client(base_url=risk_url, headers={"Authorization": f"Bearer {desk_token}"}, timeout=30) as risk:
            listed = risk.get("/handoffs", params={"status": "waiting", "channel": "chat",
                                                   "flow": "transfer_to_agent", "limit": 500}).json()
        return {item["handoff_id"] for item in listed}

    def send(page: Page, label: str, text: str) -> None:
        box = page.get_by_label(label, exact=False)
        box.fill(text)
        box.press("Enter")

    to_customer_ms: list[float] = []
    to_agent_ms: list[float] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        desk = logged_in_desk(browser, web_url, login)

        customer = browser.new_context(locale="zh-CN").new_page()
        customer.goto(web_url + "/")
        customer.locator(".fin-chat[data-connected='true']").wait_for(timeout=WAIT_MS)
        before = waiting_transfers()
        send(customer, "输入消息", "转人工")
        customer.locator(".fin-chat-handoff:visible").wait_for(timeout=WAIT_MS)
        created = waiting_transfers() - before
        if len(created) != 1:
            raise RuntimeError(f"expected one new hand-over, found {created}")
        handoff_id = created.pop()

        desk.get_by_label("编号", exact=False).fill(handoff_id)
        desk.get_by_role("button", name="查找").click()
        desk.locator(f'#handoffs li[data-handoff-id="{handoff_id}"] button.claim').click()
        desk.locator("#composer:visible").wait_for(timeout=WAIT_MS)
        customer.get_by_text("正在为您服务").wait_for(timeout=WAIT_MS)

        for number in range(ROUND_TRIPS):
            text = f"坐席第{number}条消息"
            began = time.perf_counter()
            send(desk, "回复客户", text)
            customer.locator(".fin-chat-agent .fin-chat-text", has_text=text).wait_for(timeout=WAIT_MS)
            to_customer_ms.append((time.perf_counter() - began) * 1000)
            text = f"客户第{number}条消息"
            began = time.perf_counter()
            send(customer, "输入消息", text)
            desk.locator("#transcript .said-customer", has_text=text).wait_for(timeout=WAIT_MS)
            to_agent_ms.append((time.perf_counter() - began) * 1000)
        browser.close()
    return {"round_trips": ROUND_TRIPS,
            "agent_to_customer_p50_ms": round(statistics.median(to_customer_ms), 1),
            "agent_to_customer_p95_ms": round(percentile(to_customer_ms, 0.95), 1),
            "customer_to_agent_p50_ms": round(statistics.median(to_agent_ms), 1),
            "customer_to_agent_p95_ms": round(percentile(to_agent_ms, 0.95), 1)}


ALERTS = 5
DISTRESS = "我真的走投无路了"  # ivr_config/quality/phrases.yaml, distress: a critical hit, an alert


def alert_figures(web_url: str, login: dict[str, str]) -> dict[str, Any]:
    """The supervisors' live board: from a distressed customer's Enter in the widget to the alert
    on the board (Rasa's event broker → the quality inspection → the desk's event stream), each
    time a new customer; the target is within 2 s."""
    from playwright.sync_api import sync_playwright  # only `make bench` needs a browser

    delivered_ms: list[float] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        board = logged_in_desk(browser, web_url, login)
        cards = board.locator("#alerts .card")
        for number in range(ALERTS):
            customer = browser.new_context(locale="zh-CN").new_page()
            customer.goto(web_url + "/")
            customer.locator(".fin-chat[data-connected='true']").wait_for(timeout=WAIT_MS)
            before = cards.count()
            box = customer.get_by_label("输入消息")
            box.fill(f"{DISTRESS}（{number}）")
            began = time.perf_counter()
            box.press("Enter")
            cards.nth(before).wait_for(timeout=WAIT_MS)
            delivered_ms.append((time.perf_counter() - began) * 1000)
            customer.context.close()
        browser.close()
    return {"alerts": ALERTS, "alert_p50_ms": round(statistics.median(delivered_ms), 1),
            "alert_max_ms": round(max(delivered_ms), 1)}
