"""The chat widget in headless Chromium against the real stack."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from risk_api.demo import customers_with_tag
from tests.web.conftest import WebStack
from tests.web.widget_driver import Widget

pytestmark = pytest.mark.stack


def test_early_repayment_with_l2_verification(page: Page, web_stack: WebStack) -> None:
    customer = customers_with_tag("normal")[0]
    widget = Widget(page, web_stack)
    widget.open()
    widget.say("你好")
    widget.say("我想提前还清")
    assert widget.expecting == "phone_number", widget.bot_texts
    widget.answer(customer, say={}, confirm="确认结清")
    widget.screenshot("early-repayment")
    assert any("今日结清金额为" in text for text in widget.bot_texts), widget.bot_texts
    assert any("已为您结清借款" in text for text in widget.bot_texts), widget.bot_texts
    expect(page.locator(".fin-chat-time").first).to_have_text(re.compile(r"^\d\d:\d\d$"))


def test_markup_in_messages_is_shown_as_text(page: Page, web_stack: WebStack) -> None:
    attack = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    widget = Widget(page, web_stack)
    widget.open()
    widget.say(attack)
    widget.screenshot("markup-as-text")
    expect(page.locator(".fin-chat-user .fin-chat-text").last).to_have_text(attack)
    assert page.locator(".fin-chat img, .fin-chat-log script").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_conversation_goes_on_after_rasa_restart_and_reload(page: Page, web_stack: WebStack) -> None:
    customer = customers_with_tag("normal")[1]
    widget = Widget(page, web_stack)
    widget.open()
    widget.say("我想提前还清")
    widget.say(customer["phone"])
    assert widget.expecting == "customer_name", widget.bot_texts
    shown = widget.bot_texts

    web_stack.restart("rasa")
    widget.wait_connected()  # the widget reconnected by itself, with the same chat session token
    page.reload()
    widget.wait_connected()
    assert widget.bot_texts == shown  # the visible conversation survived both
    widget.screenshot("after-restart")

    # The next answer continues the same flow: the tracker store kept the form's state.
    widget.say(customer["name"])
    assert widget.expecting == "id_last4", widget.bot_texts
    widget.answer(customer, say={}, confirm="暂不结清")
    assert any("暂不结清" in text for text in widget.bot_texts), widget.bot_texts


def test_works_at_mobile_width(page: Page, web_stack: WebStack) -> None:
    page.set_viewport_size({"width": 375, "height": 667})
    widget = Widget(page, web_stack)
    widget.open()
    widget.say("你好")
    panel = page.locator(".fin-chat-panel").bounding_box()
    assert panel is not None and panel["x"] >= 0 and panel["x"] + panel["width"] <= 375
    widget.screenshot("mobile")
