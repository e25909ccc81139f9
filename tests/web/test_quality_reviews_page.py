"""Review and appeal on the desk page, in headless Chromium: a supervisor opens a hand-over's
quality results and dismisses a hit with a reason; the agent whose conversation it was appeals a
confirmed one. Against the real web app and inspection service on loopback, a fake risk API and
Rasa relay (tests/security/test_web_quality_reviews.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.accounts import AGENT, PASSWORD, SUPERVISOR
from tests.security.test_web_desk_events import logged_in
from tests.security.test_web_quality_reviews import ALONE, HELD, HELD_CASE, desk_with_inspection, step
from tests.web.conftest import artifact


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    with desk_with_inspection(tmp_path) as (url, _):
        yield url


def open_quality(page: Page, web: str, user: str) -> None:
    assert page.context.request.post(f"{web}/desk/login", form={"user": user, "password": PASSWORD}).ok
    page.goto(f"{web}/desk")
    page.locator(f"#handoffs .card[data-handoff-id='{HELD_CASE}']").get_by_role("button", name="查看对话").click()
    page.get_by_role("button", name="质检复核").click()


def test_a_supervisor_dismisses_a_hit_and_the_agent_appeals_a_confirmed_one(web: str, page: Page,
                                                                            browser: Browser) -> None:
    open_quality(page, web, SUPERVISOR)
    anger = page.locator("#inspected-hits .hit").filter(has_text="客户情绪激动")
    expect(anger.locator(".hit-state")).to_have_text("待复核")
    expect(page.locator("#inspected-title")).to_contain_text("质检得分 5")
    anger.get_by_role("button", name="撤销（误报）：客户情绪激动").click()
    expect(page.locator("#desk-status")).to_contain_text("请先填写理由")  # nothing sent without one
    anger.get_by_label("理由：客户情绪激动").fill("客户反问，不是投诉")
    anger.get_by_role("button", name="撤销（误报）：客户情绪激动").click()
    dismissed = page.locator("#inspected-hits .hit.state-dismissed")
    expect(dismissed).to_contain_text("复核 · 撤销 · 测主管")
    expect(dismissed).to_contain_text("客户反问，不是投诉")
    expect(dismissed.get_by_role("button")).to_have_count(0)
    expect(page.locator("#inspected-title")).to_contain_text("质检得分 20")
    assert HELD not in page.content()

    with logged_in(web, SUPERVISOR) as board:  # the insult confirmed, straight through the API
        ref = board.get(f"/desk/api/handoffs/{HELD_CASE}/quality").json()["ref"]
        assert step(board, ref, "review", hit=2, verdict="confirmed", reason="确有此语").status_code == 200
    context = browser.new_context(locale="zh-CN", viewport={"width": 1024, "height": 768})
    try:
        desk = context.new_page()
        open_quality(desk, web, AGENT)
        insult = desk.locator("#conversation #inspected-hits .hit").filter(has_text="出现禁用语")
        expect(insult.locator(".hit-state")).to_have_text("已确认")
        expect(desk.locator("#inspected-hits").get_by_role("button", name="确认违规：客户情绪激动")).to_have_count(0)
        insult.get_by_label("理由：出现禁用语").fill("这是客户的原话，我在复述")
        insult.get_by_role("button", name="申诉：出现禁用语").click()
        expect(desk.locator("#inspected-hits .hit.state-appealed")).to_contain_text("申诉 · 提出申诉 · 小测")
        desk.screenshot(path=str(artifact("quality-review-appealed")), full_page=True)
    finally:
        context.close()


def test_the_board_lists_the_conversations_awaiting_review_and_one_reviewed_leaves_it(web: str, page: Page) -> None:
    assert page.context.request.post(f"{web}/desk/login", form={"user": SUPERVISOR, "password": PASSWORD}).ok
    page.goto(f"{web}/desk")
    pending = page.locator("#pending .card")
    expect(pending).to_have_count(4)
    expect(page.locator("body")).to_have_attribute("data-pending", "4")
    first = pending.first
    expect(first.locator("h3")).to_have_text("在线 · 严重")
    expect(first).to_contain_text("客户情绪激动、未核身即告知账户信息、出现禁用语")
    first.get_by_role("button", name="复核会话").click()
    hits = page.locator("#inspected-hits .hit")
    expect(hits).to_have_count(3)
    for rule in ("客户情绪激动", "未核身即告知账户信息", "出现禁用语"):
        hit = hits.filter(has_text=rule)
        hit.get_by_label(f"理由：{rule}").fill("已核实")
        hit.get_by_role("button", name=f"确认违规：{rule}").click()
        expect(hit.locator(".hit-state")).to_have_text("已确认")
    expect(pending).to_have_count(3)  # reviewed through: off the list, without reloading the page
    expect(page.locator("body")).to_have_attribute("data-pending", "3")
    page.screenshot(path=str(artifact("quality-pending-reviews")), full_page=True)
    assert all(session not in page.content() for session in (HELD, ALONE))


def test_the_list_of_work_pages_through_many_conversations(tmp_path: Path, page: Page) -> None:
    with desk_with_inspection(tmp_path, more_alone=21) as (url, _):
        assert page.context.request.post(f"{url}/desk/login", form={"user": SUPERVISOR, "password": PASSWORD}).ok
        page.goto(f"{url}/desk")
        cards = page.locator("#pending .card")
        expect(cards).to_have_count(20)
        expect(page.locator("#pending-info")).to_have_text("第 1 / 2 页，共 25 个，最严重的在前")
        expect(page.locator("#pending-previous")).to_be_disabled()
        refs = page.locator("#pending .card button.open")
        first_page = [refs.nth(number).get_attribute("aria-label") for number in range(20)]
        page.locator("#pending-next").click()
        expect(page.locator("#pending-info")).to_have_text("第 2 / 2 页，共 25 个，最严重的在前")
        expect(cards).to_have_count(5)
        expect(page.locator("#pending-next")).to_be_disabled()
        page.locator("#pending-previous").click()
        expect(page.locator("#pending-info")).to_contain_text("第 1 / 2 页")
        expect(cards).to_have_count(20)
        assert [refs.nth(number).get_attribute("aria-label") for number in range(20)] == first_page
