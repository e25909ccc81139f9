"""A hand-over reaches the agent desk, an agent finds it (in Chinese, paged, filtered) and claims
it there, and approves the risk review."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from risk_api.demo import customers_with_tag
from tests.accounts import AGENT, PASSWORD, SUPERVISOR, display_name
from tests.web.conftest import WebStack, artifact, set_presence
from tests.web.widget_driver import Widget
from web.labels import flow_names

pytestmark = pytest.mark.stack


def log_in(page: Page, web_stack: WebStack, password: str = PASSWORD, user: str = AGENT) -> None:
    page.goto(web_stack.web_url + "/desk")
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def test_desk_needs_login(page: Page, web_stack: WebStack) -> None:
    log_in(page, web_stack, password="wrong")
    expect(page.get_by_role("alert")).to_have_text("用户名或密码不正确。")
    assert httpx.get(web_stack.web_url + "/desk/api/queue").status_code == 401


def test_handoff_and_review_approved_on_the_desk(page: Page, web_stack: WebStack) -> None:
    customer = customers_with_tag("recent_phone_change")[0]
    set_presence(web_stack, "online", SUPERVISOR)  # someone to wait for: the chat waits for a person
    widget = Widget(page, web_stack)
    widget.open()
    widget.say("我要换银行卡")
    widget.answer(customer, say={"bank": "招商银行", "card_number": "6214830123456789"}, confirm="确认更换")
    expect(page.get_by_text("正在为您转接人工客服…").first).to_be_visible()
    widget.screenshot("handoff-in-widget")

    desk = page.context.new_page()
    log_in(desk, web_stack, user=SUPERVISOR)  # a supervisor both takes hand-overs and decides reviews
    desk.get_by_label("业务").select_option(label="更换银行卡")
    handoff = desk.locator("#handoffs li", has_text="更换银行卡").filter(has_text=customer["customer_id"])
    expect(handoff.first).to_be_visible(timeout=10_000)
    expect(handoff.first).to_contain_text("短信核身(L2)")
    review = desk.locator("#reviews li", has_text=customer["customer_id"]).filter(has_text="更换银行卡")
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
    assert decided["agent"] == SUPERVISOR and decided["note"] == "已电话核实本人"
    assert "review_decision" in str(audit), audit


def seed_handoff(web_stack: WebStack, flow: str, channel: str, priority: str = "normal",
                 summary: str = "客户要求人工服务") -> str:
    """A hand-over as the flow engine files it, from a conversation that never verified."""
    with web_stack.risk_api() as risk:
        created = risk.post("/handoffs", json={"session_id": f"desk-test-{uuid.uuid4().hex}", "channel": channel,
                                               "flow": flow, "reason": "客户要求人工", "priority": priority,
                                               "summary": summary})
    assert created.status_code == 200, created.text
    return str(created.json()["handoff_id"])


INJECTED = '<script>document.body.dataset.injected = "yes"</script><img src="x" alt="injected">'


def test_an_agent_pages_filters_and_claims_handoffs_shown_in_chinese(page: Page, web_stack: WebStack) -> None:
    blocked: list[str] = []  # what the Content-Security-Policy refused: nothing on a working desk
    page.on("console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text
            else None)
    # The only outbound hand-overs of this stack: 21, one more than a page.
    outbound = [seed_handoff(web_stack, "callback_request", "outbound") for _ in range(21)]
    seed_handoff(web_stack, "collection_complaint", "voice", priority="high")
    injected = seed_handoff(web_stack, "complaint", "chat", summary=INJECTED)

    log_in(page, web_stack)
    handoffs, info, status = page.locator("#handoffs"), page.locator("#page-info"), page.locator("#desk-status")
    cards = handoffs.locator("li.card")
    expect(cards.first).to_be_visible()
    expect(handoffs).to_contain_text("催收投诉 · 高")
    page.get_by_label("渠道").select_option(label="外呼")
    expect(info).to_have_text("第 1 / 2 页，共 21 条")
    expect(cards).to_have_count(20)
    expect(cards.filter(has_not_text="外呼")).to_have_count(0)
    expect(cards.first).to_contain_text("预约回电 · 普通")
    for words in ("未核身", "等待中"):
        expect(handoffs).to_contain_text(words)
    shown = handoffs.inner_text()
    assert "none" not in shown and not [flow for flow in flow_names() if flow in shown], shown
    page.screenshot(path=str(artifact("agent-desk-outbound-page-1")), full_page=True)

    page.get_by_role("button", name="下一页").click()
    expect(info).to_have_text("第 2 / 2 页，共 21 条")
    expect(cards).to_have_count(1)
    expect(page.get_by_role("button", name="下一页")).to_be_disabled()
    claimed = cards.first.get_attribute("data-handoff-id")
    assert claimed in outbound
    cards.first.get_by_role("button", name="接起").click()
    expect(status).to_have_text(f"已接起：预约回电（{claimed}）")
    # Its page emptied: the desk goes back to the last page that has hand-overs.
    expect(info).to_have_text("第 1 / 1 页，共 20 条")
    expect(handoffs.locator(f'li[data-handoff-id="{claimed}"]')).to_have_count(0)

    page.locator("#handoff-filters").get_by_label("状态").select_option(label="服务中")
    mine = handoffs.locator(f'li[data-handoff-id="{claimed}"]')
    expect(mine).to_contain_text("服务中")
    expect(mine).to_contain_text(display_name(AGENT))
    expect(mine.get_by_role("button", name="接起")).to_have_count(0)
    page.screenshot(path=str(artifact("agent-desk-claimed")), full_page=True)
    again = page.request.post(f"{web_stack.web_url}/desk/api/handoffs/{claimed}/accept")
    assert again.status == 409 and again.json()["detail"]["message"] == "这位客户已经由其他坐席接起。"

    # Another agent is faster between the click and its request: a clear message, a fresh list.
    page.locator("#handoff-filters").get_by_label("状态").select_option(label="等待中")
    expect(info).to_have_text("第 1 / 1 页，共 20 条")
    raced = cards.first.get_attribute("data-handoff-id")
    taken_first: list[int] = []

    def another_agent_first(route: Route) -> None:
        with web_stack.risk_api("desk") as risk:
            taken_first.append(risk.post(f"/handoffs/{raced}/accept", json={"agent": "other-agent"}).status_code)
        route.continue_()

    page.route("**/desk/api/handoffs/*/accept", another_agent_first)
    handoffs.locator(f'li[data-handoff-id="{raced}"]').get_by_role("button", name="接起").click()
    expect(status).to_have_text("接起失败：这位客户已经由其他坐席接起。列表已刷新。")
    expect(info).to_have_text("第 1 / 1 页，共 19 条")
    expect(handoffs.locator(f'li[data-handoff-id="{raced}"]')).to_have_count(0)
    assert taken_first == [200]
    page.unroute("**/desk/api/handoffs/*/accept")
    page.screenshot(path=str(artifact("agent-desk-taken-by-another")), full_page=True)

    # A summary is the customer's words: markup in it is shown as text, never run.
    page.get_by_label("编号").fill(injected)
    page.get_by_role("button", name="查找").click()
    expect(page.get_by_label("渠道")).to_be_disabled()
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text(INJECTED)
    expect(cards.first).to_contain_text(flow_names()["complaint"])
    expect(handoffs.locator("script, img")).to_have_count(0)
    expect(page.locator("body[data-injected]")).to_have_count(0)
    page.screenshot(path=str(artifact("agent-desk-injected-summary")), full_page=True)
    page.get_by_role("button", name="清除查找").click()
    expect(page.get_by_label("渠道")).to_be_enabled()
    expect(info).to_have_text("第 1 / 1 页，共 19 条")
    assert blocked == []


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


def test_a_call_a_queue_member_answers_pops_up_on_that_agents_desk(page: Page, web_stack: WebStack) -> None:
    """The gateway reports AMI AgentConnect (MemberName = the desk login): the agent's desk opens
    the hand-over's summary by itself, and the agent closes the case there after the call."""
    summary = "客户张**（已完成基本身份核验）。此次通过电话咨询「逾期协商」，客户原话：“我想谈谈还款”"
    handoff_id = seed_handoff(web_stack, "repayment_negotiation", "voice", priority="high", summary=summary)
    log_in(page, web_stack)
    expect(page.locator("body[data-updated]")).to_have_count(1)
    panel = page.locator("#conversation")
    expect(panel).to_be_hidden()
    with web_stack.risk_api("gateway") as gateway:
        answered = gateway.post(f"/handoffs/{handoff_id}/call-state", json={"state": "connected", "agent": AGENT})
    assert answered.status_code == 200, answered.text
    expect(panel).to_be_visible()
    expect(page.locator("#conversation-facts")).to_contain_text("我想谈谈还款")
    expect(page.locator("#desk-status")).to_have_text(f"来电已接通：协商还款（{handoff_id}）")
    expect(page.locator("#mine")).to_contain_text(handoff_id)
    expect(page.locator("#composer")).to_be_hidden()  # a call: nothing to type to the customer
    page.screenshot(path=str(artifact("agent-desk-call-popped")), full_page=True)
    closer = page.locator("#closer")
    closer.get_by_label("结束方式").select_option(label="已预约回电")
    closer.get_by_role("button", name="结束服务").click()
    expect(page.locator("#desk-status")).to_have_text(f"已结束服务：{handoff_id}（已预约回电）")
    expect(page.locator("#mine")).not_to_contain_text(handoff_id)
