"""The knowledge base's page in a real browser: an agent loads an entry from the desk's link,
is told what the linter refuses, proposes a better spoken answer; a reviewer sees the change field
by field and approves it, and the entries file has it. The web app on loopback with a fake risk API,
Debian's Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from knowledge.edits import find_entry
from knowledge.model import ENTRIES_DIR
from tests.accounts import AGENT, PASSWORD, REVIEWER
from tests.loopback import serving_asgi
from tests.security.test_web_desk import fake_risk_api, settings_for
from tests.web.conftest import artifact
from web.app import create_app

NEW_VOICE = "只能绑定本人名下的储蓄卡，信用卡不能绑定，也不能用信用卡还款。"
INDEXING_SECONDS = 180  # the real indexer embeds two categories from a cold cache


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    entries = tmp_path / "entries"
    entries.mkdir()
    for category in ("card", "anti_fraud"):
        shutil.copy(ENTRIES_DIR / f"{category}.yaml", entries)
    with fake_risk_api() as risk_api:
        settings = replace(settings_for(risk_api), knowledge_entries_dir=entries,
                           knowledge_index_dir=tmp_path / "index",
                           knowledge_proposals_url=f"sqlite:///{tmp_path / 'proposals.sqlite3'}")
        with serving_asgi(create_app(settings)) as web_url:
            yield web_url, entries


def log_in(page: Page, web_url: str, user: str) -> None:
    page.goto(web_url + "/desk")
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()


def test_an_agent_proposes_a_better_answer_and_a_reviewer_publishes_it(
        page: Page, browser: Browser, desk: tuple[str, Path]) -> None:
    web_url, entries = desk
    log_in(page, web_url, AGENT)
    page.get_by_role("link", name="知识库").click()
    page.get_by_label("条目编号").fill("card.credit_card")
    page.get_by_role("button", name="载入").click()
    expect(page.locator("#knowledge-entry-state")).to_have_text("已载入 card.credit_card（在用）")
    expect(page.get_by_label("标准问题")).to_have_value("能绑定信用卡吗")
    page.get_by_label("语音答复（电话，数字写成汉字）").fill("请拨打4008208820。")
    page.get_by_label("修改原因").fill("客户听不懂原来的说法")
    page.get_by_role("button", name="提交审核").click()
    expect(page.locator("#knowledge-status")).to_have_text("未提交：知识库检查未通过，未保存。")
    expect(page.locator("#knowledge-problems li")).to_have_text([  # a 10-digit number: digits, and personal data?
        "条目 card.credit_card 的语音答复：含七位以上连续数字（手机号、身份证号或卡号？），不能写入客户个人信息",
        "条目 card.credit_card 的语音答复：含阿拉伯数字，请按读法写成汉字（二十四小时、百分之二十四）"])

    page.get_by_label("语音答复（电话，数字写成汉字）").fill(NEW_VOICE)
    page.get_by_role("button", name="提交审核").click()
    expect(page.locator("#knowledge-status")).to_have_text("已提交审核：card.credit_card")
    mine = page.locator("#proposals li").first
    expect(mine.locator("h3")).to_have_text("修改 card.credit_card · 待审核")
    expect(mine.get_by_role("button", name="批准并发布：card.credit_card")).to_have_count(0)  # not an agent's to decide

    context = browser.new_context(locale="zh-CN")
    try:
        reviewer = context.new_page()
        reviewer.set_default_timeout(30_000)
        log_in(reviewer, web_url, REVIEWER)
        reviewer.goto(web_url + "/desk/knowledge")
        card = reviewer.locator("#proposals li").first
        expect(card).to_contain_text("语音答复（新）" + NEW_VOICE)
        expect(card).to_contain_text("客户听不懂原来的说法")
        card.get_by_label("审核意见：card.credit_card").fill("说法更清楚")
        card.get_by_role("button", name="批准并发布：card.credit_card").click()
        expect(reviewer.locator("#knowledge-status")).to_have_text(
            "card.credit_card：已发布，智能客服一分钟内用上新答案", timeout=INDEXING_SECONDS * 1000)
        reviewer.get_by_label("状态").select_option("approved")
        expect(reviewer.locator("#proposals li").first).to_contain_text("测审核：说法更清楚")
        reviewer.screenshot(path=str(artifact("knowledge-page-reviewer")), full_page=True)
    finally:
        context.close()
    published = find_entry(entries, "card.credit_card")
    assert published is not None and published.voice == NEW_VOICE
