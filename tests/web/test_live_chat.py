"""A chat customer gets a person: the hand-over waits on the desk, an agent claims it, they write
to each other, and when the agent closes the case the bot comes back with the survey. Also: no
agent online (a callback instead), a message left instead of waiting, two agents and one case.
Two browser contexts on Debian's Chromium: one customer, one (or two) agents."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.accounts import AGENT, SECOND_AGENT, display_name
from tests.web.conftest import WebStack, artifact, set_presence
from tests.web.test_agent_desk import INJECTED, log_in
from tests.web.widget_driver import Widget

pytestmark = pytest.mark.stack


@pytest.fixture
def contexts(browser: Browser, request: pytest.FixtureRequest) -> Iterator[list[BrowserContext]]:
    """Separate browser profiles (customer, agents): no shared cookies or storage."""
    opened: list[BrowserContext] = []

    def new() -> BrowserContext:
        context = browser.new_context(locale="zh-CN", viewport={"width": 1024, "height": 768})
        context.set_default_timeout(30_000)
        opened.append(context)
        return context

    yield [new(), new(), new()]
    for index, context in enumerate(opened):
        for number, each in enumerate(context.pages):
            each.screenshot(path=str(artifact(f"{request.node.name}-{index}-{number}")), full_page=True)
        context.close()


def waiting_chat_transfers(web_stack: WebStack) -> set[str]:
    with web_stack.risk_api("desk") as risk:
        listed = risk.get("/handoffs", params={"status": "waiting", "channel": "chat", "flow": "transfer_to_agent",
                                               "limit": 100}).json()
    return {item["handoff_id"] for item in listed}


def handoff(web_stack: WebStack, handoff_id: str) -> dict[str, object]:
    with web_stack.risk_api("desk") as risk:
        return dict(risk.get(f"/handoffs/{handoff_id}").json())


def ask_for_a_person(widget: Widget, web_stack: WebStack) -> str:
    """The customer asks for a person; the id of the hand-over that made."""
    before = waiting_chat_transfers(web_stack)
    widget.say("转人工")
    created = waiting_chat_transfers(web_stack) - before
    assert len(created) == 1, created
    return created.pop()


def type_in_widget(page: Page, text: str) -> None:
    """A message while a person answers: no bot turn to wait for."""
    box = page.get_by_label("输入消息")
    box.fill(text)
    box.press("Enter")


def test_a_customer_and_an_agent_chat_and_the_bot_resumes_with_the_survey(
        contexts: list[BrowserContext], web_stack: WebStack) -> None:
    set_presence(web_stack, "offline")
    customer_context, agent_context, second_context = contexts
    desk = agent_context.new_page()
    log_in(desk, web_stack)  # online from the moment the desk opens
    expect(desk.get_by_label("在线状态")).to_have_value("online")
    # Updates come pushed (its safety poll is once a minute: the waits below would time out first).
    expect(desk.locator("body[data-push='live']")).to_have_count(1)
    other_desk = second_context.new_page()
    log_in(other_desk, web_stack, user=SECOND_AGENT)

    customer = customer_context.new_page()
    widget = Widget(customer, web_stack)
    widget.open()
    expect(desk.locator("body[data-updated]")).to_have_count(1)  # the heartbeat has gone out
    handoff_id = ask_for_a_person(widget, web_stack)
    banner = customer.locator(".fin-chat-handoff")
    expect(banner).to_contain_text("排队中：您前面还有")
    assert any("正在为您转接人工客服" in text for text in widget.bot_texts), widget.bot_texts

    # While waiting, the bot no longer answers: the message waits for the agent.
    type_in_widget(customer, "我的账单为什么多了一笔")
    for each in (desk, other_desk):  # earlier tests left many waiting: look it up by its id
        each.get_by_label("编号").fill(handoff_id)
        each.get_by_role("button", name="查找").click()
    card = desk.locator(f'#handoffs li[data-handoff-id="{handoff_id}"]')
    expect(card).to_contain_text("转人工 · 普通")
    other_card = other_desk.locator(f'#handoffs li[data-handoff-id="{handoff_id}"]')
    expect(other_card.get_by_role("button", name="接起")).to_have_count(1)
    card.get_by_role("button", name="接起").click()
    expect(desk.locator("#desk-status")).to_have_text(f"已接起：转人工（{handoff_id}）")
    transcript = desk.locator("#transcript")
    expect(transcript.locator(".said-customer").last).to_contain_text("我的账单为什么多了一笔")
    expect(banner).to_have_text(f"人工客服 {display_name(AGENT)} 正在为您服务")
    expect(customer.locator(".fin-chat-system").last).to_contain_text(f"我是人工客服{display_name(AGENT)}")

    # The other agent sees it taken, and cannot take it.
    expect(other_card).to_contain_text("服务中")
    expect(other_card.get_by_role("button", name="接起")).to_have_count(0)
    taken = other_desk.request.post(f"{web_stack.web_url}/desk/api/handoffs/{handoff_id}/accept")
    assert taken.status == 409
    peek = other_desk.request.get(f"{web_stack.web_url}/desk/api/handoffs/{handoff_id}/conversation")
    assert peek.status == 403

    reply = desk.get_by_label("回复客户", exact=False)
    desk.get_by_role("button", name="请稍等，我为您查询一下。").click()
    expect(reply).to_have_value("请稍等，我为您查询一下。")
    reply.press("Enter")
    agent_said = customer.locator(".fin-chat-agent .fin-chat-text")
    expect(agent_said.last).to_have_text("请稍等，我为您查询一下。")
    expect(customer.locator(".fin-chat-agent .fin-chat-who").last).to_have_text(f"人工客服 {display_name(AGENT)}")

    # A reload keeps the agent and what was said.
    customer.reload()
    widget.wait_connected()
    expect(banner).to_have_text(f"人工客服 {display_name(AGENT)} 正在为您服务")
    expect(agent_said.last).to_have_text("请稍等，我为您查询一下。")
    type_in_widget(customer, "好的我等一下")
    expect(transcript.locator(".said-customer").last).to_contain_text("好的我等一下")

    # What the agent writes while the customer's page is away is there when it comes back, once.
    customer.goto("about:blank")
    reply.fill("账单明细已发到您的邮箱")
    reply.press("Enter")
    expect(transcript.locator(".said-agent").last).to_contain_text("账单明细已发到您的邮箱")
    widget.open()  # the same tab: its session and transcript are kept
    expect(agent_said.last).to_have_text("账单明细已发到您的邮箱")
    expect(agent_said.filter(has_text="账单明细已发到您的邮箱")).to_have_count(1)
    expect(agent_said.filter(has_text="请稍等，我为您查询一下。")).to_have_count(1)

    # An agent's words are text, whatever they contain.
    reply.fill(INJECTED)
    reply.press("Enter")
    expect(agent_said.last).to_have_text(INJECTED)
    expect(customer.locator(".fin-chat-log script, .fin-chat-log img")).to_have_count(0)
    expect(customer.locator("body[data-injected]")).to_have_count(0)
    customer.screenshot(path=str(artifact("live-chat-customer")), full_page=True)
    desk.screenshot(path=str(artifact("live-chat-agent")), full_page=True)

    closer = desk.locator("#closer")
    closer.get_by_label("结束方式").select_option(label="已解决")
    closer.get_by_label("处理备注").fill("已解释账单明细")
    closer.get_by_role("button", name="结束服务").click()
    expect(desk.locator("#desk-status")).to_have_text(f"已结束服务：{handoff_id}（已解决）")
    expect(customer.locator(".fin-chat-system").last).to_contain_text("人工客服已结束本次服务")
    expect(banner).to_be_hidden()
    expect(customer.locator(".fin-chat-bot .fin-chat-text").last).to_contain_text("请您为刚才的服务打个分")
    widget.choose("5分 非常满意")
    assert "感谢您的评价" in widget.bot_texts[-1], widget.bot_texts
    closed = handoff(web_stack, handoff_id)
    assert (closed["status"], closed["disposition"], closed["closed_by"]) == ("closed", "resolved", AGENT), closed
    assert closed["close_note"] == "已解释账单明细" and closed["handling_seconds"] is not None


def test_with_no_agent_online_the_customer_is_offered_a_callback(page: Page, web_stack: WebStack) -> None:
    set_presence(web_stack, "offline")
    widget = Widget(page, web_stack)
    widget.open()
    handoff_id = ask_for_a_person(widget, web_stack)
    assert "现在没有人工客服在线" in widget.bot_texts[-1], widget.bot_texts
    assert not any("正在为您转接" in text for text in widget.bot_texts), widget.bot_texts
    expect(page.locator(".fin-chat-handoff")).to_be_hidden()
    widget.choose("预约回电")
    assert widget.expecting is not None  # the callback flow asks its first question
    assert handoff(web_stack, handoff_id)["status"] == "waiting"  # an agent may still take it later


def test_a_waiting_customer_leaves_a_message_instead(page: Page, web_stack: WebStack) -> None:
    set_presence(web_stack, "offline")
    # Online, but the wait reaches the stack's limit (CHAT_WAIT_LIMIT_SECONDS=0: any wait does).
    set_presence(web_stack, "online", SECOND_AGENT)
    try:
        widget = Widget(page, web_stack)
        widget.open()
        handoff_id = ask_for_a_person(widget, web_stack)
        alternatives = page.locator(".fin-chat-alternatives")
        expect(alternatives).to_be_visible()
        alternatives.get_by_role("button", name="留言").click()
        type_in_widget(page, "请明天上午给我回电话，手机13812345678")
        expect(page.locator(".fin-chat-system").last).to_contain_text("留言已提交")
        expect(page.locator(".fin-chat-handoff")).to_have_text("已收到您的留言，客服会尽快处理")
        expect(alternatives).to_be_hidden()
        noted = handoff(web_stack, handoff_id)
        assert noted["status"] == "waiting"
        assert "请明天上午给我回电话" in str(noted["customer_note"]) and "13812345678" not in str(noted), noted
    finally:
        set_presence(web_stack, "offline", SECOND_AGENT)
