"""A hand-over reaches the agent desk, and an agent approves the risk review there."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from risk_api.demo import customers_with_tag
from tests.web.conftest import DESK_PASSWORD, DESK_USER, WebStack, artifact
from tests.web.widget_driver import Widget

pytestmark = pytest.mark.stack


def log_in(page: Page, web_stack: WebStack, password: str = DESK_PASSWORD) -> None:
    page.goto(web_stack.web_url + "/desk")
    page.get_by_label("用户名").fill(DESK_USER)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def test_desk_needs_login(page: Page, web_stack: WebStack) -> None:
    log_in(page, web_stack, password="wrong")
    expect(page.get_by_role("alert")).to_have_text("用户名或密码不正确。")
    assert httpx.get(web_stack.web_url + "/desk/api/queue").status_code == 401


def test_handoff_and_review_approved_on_the_desk(page: Page, web_stack: WebStack) -> None:
    customer = customers_with_tag("recent_phone_change")[0]
    widget = Widget(page, web_stack)
    widget.open()
    widget.say("我要换银行卡")
    widget.answer(customer, say={"bank": "招商银行", "card_number": "6214830123456789"}, confirm="确认更换")
    expect(page.get_by_text("正在为您转接人工客服…").first).to_be_visible()
    widget.screenshot("handoff-in-widget")

    desk = page.context.new_page()
    log_in(desk, web_stack)
    handoff = desk.locator("#handoffs li", has_text="change_bank_card").filter(has_text=customer["customer_id"])
    expect(handoff.first).to_be_visible(timeout=10_000)
    expect(handoff.first).to_contain_text("L2")
    review = desk.locator("#reviews li", has_text=customer["customer_id"]).filter(has_text="change_bank_card")
    expect(review).to_have_count(1, timeout=10_000)
    review_id = review.get_attribute("data-review-id")
    review.get_by_label("审核备注").fill("已电话核实本人")
    desk.screenshot(path=str(artifact("agent-desk-before-approve")), full_page=True)
    review.get_by_role("button", name="批准", exact=False).first.click()
    expect(desk.locator("#desk-status")).to_contain_text(f"已批准：{review_id}")
    expect(desk.locator(f'#reviews li[data-review-id="{review_id}"]')).to_have_count(0, timeout=10_000)
    desk.screenshot(path=str(artifact("agent-desk-approved")), full_page=True)

    with web_stack.risk_api("desk") as risk:
        approved = risk.get("/reviews", params={"status": "approved"}).json()
        audit = risk.get("/audit", params={"customer_id": customer["customer_id"], "limit": 50}).json()
    decided = next(item for item in approved if item["review_id"] == review_id)
    assert decided["agent"] == DESK_USER and decided["note"] == "已电话核实本人"
    assert "review_decision" in str(audit), audit



def test_logout_ends_the_session_on_the_server(page: Page, web_stack: WebStack) -> None:
    blocked: list[str] = []  # what the Content-Security-Policy refused: nothing on a working desk
    page.on("console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text
            else None)
    log_in(page, web_stack)
    expect(page.locator("body[data-updated]")).to_have_count(1)  # desk.js ran and loaded the queue
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "desk_session")
    replay = {"Cookie": f"desk_session={cookie}"}
    assert httpx.get(web_stack.web_url + "/desk/api/queue", headers=replay).status_code == 200

    page.get_by_role("button", name="退出").click()
    expect(page.get_by_label("用户名")).to_be_visible()
    assert httpx.get(web_stack.web_url + "/desk/api/queue", headers=replay).status_code == 401
    assert blocked == []
