"""The supervisors' live quality board, through the whole stack: a chat customer in distress →
Rasa's event broker → the quality inspection → an alert pushed to the supervisor's desk; the
supervisor opens the conversation and sees the line that raised it marked, takes it over and
writes to the customer. (How fast the alert arrives is measured by `make bench`; here every wait
is only a bound.)"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.accounts import SUPERVISOR, display_name
from tests.web.conftest import WebStack, artifact
from tests.web.test_agent_desk import log_in
from tests.web.widget_driver import Widget

pytestmark = pytest.mark.stack
DISTRESS = "我真的走投无路了"  # a phrase of ivr_config/quality/phrases.yaml's distress list


def test_a_customer_in_distress_raises_an_alert_the_supervisor_opens_and_takes_over(
        browser: Browser, web_stack: WebStack) -> None:
    supervisor_context = browser.new_context(locale="zh-CN", viewport={"width": 1024, "height": 768})
    customer_context = browser.new_context(locale="zh-CN")
    for context in (supervisor_context, customer_context):
        context.set_default_timeout(30_000)
    try:
        board = supervisor_context.new_page()
        log_in(board, web_stack, user=SUPERVISOR)
        expect(board.locator("body[data-push='live']")).to_have_count(1)
        expect(board.get_by_role("heading", name="实时质检告警")).to_be_visible()

        widget = Widget(customer_context.new_page(), web_stack)
        widget.open()
        widget.wait_connected()
        widget.say(DISTRESS)

        alert = board.locator("#alerts .card.severity-critical", has_text="客户情绪异常").first
        expect(alert).to_be_visible()  # pushed: nothing on the board asks for alerts
        alert.get_by_role("button", name="查看会话").click()
        marked = board.locator("#inspected-transcript .said-customer.said-hit", has_text=DISTRESS)
        expect(marked).to_have_count(1)
        expect(marked).to_contain_text("⚠ 客户情绪异常")
        expect(board.locator("#inspected-hits")).to_contain_text("客户情绪异常（严重）")
        board.screenshot(path=str(artifact("quality-board-alert")), full_page=True)

        # The assistant already handed the customer over (distress: emergency); the supervisor takes
        # that hand-over, no second one.
        alert.get_by_role("button", name="接管").click()
        expect(board.locator("#desk-status")).to_contain_text("已接管：情绪关怀（可能有危险）")
        customer = widget.page
        expect(customer.locator(".fin-chat-system").last).to_contain_text(f"我是人工客服{display_name(SUPERVISOR)}")
        reply = board.get_by_label("回复客户", exact=False)
        words = "您好，我们一直在，请告诉我发生了什么。"
        reply.fill(words)
        reply.press("Enter")
        expect(customer.locator(".fin-chat-agent .fin-chat-text").last).to_have_text(words)
        expect(board.locator("#transcript .said-customer").last).to_contain_text(DISTRESS)
        board.screenshot(path=str(artifact("quality-board-takeover")), full_page=True)
    finally:
        supervisor_context.close()
        customer_context.close()
