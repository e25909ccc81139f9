"""The outbound campaigns page in a real browser: a supervisor sees each campaign in Chinese,
pauses one and stops another (after saying yes to the question), and finds the CSV link. The web
app and the dialler service on loopback, Debian's Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from outbound.queue import Queue
from tests.accounts import PASSWORD, SUPERVISOR
from tests.loopback import serving_asgi
from tests.security.test_web_campaigns import DIALLER_TOKEN, serving_dialler
from tests.security.test_web_desk import fake_risk_api, settings_for
from tests.web.conftest import artifact
from web.app import create_app


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[str, Queue]]:
    with fake_risk_api() as risk_api, serving_dialler(tmp_path) as (dialler_url, queue):
        settings = replace(settings_for(risk_api), outbound_url=dialler_url, outbound_desk_token=DIALLER_TOKEN)
        with serving_asgi(create_app(settings)) as web_url:
            yield web_url, queue


def test_a_supervisor_pauses_and_stops_campaigns_on_the_page(page: Page, desk: tuple[str, Queue]) -> None:
    web_url, queue = desk
    page.goto(web_url + "/desk")
    page.get_by_label("用户名").fill(SUPERVISOR)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.get_by_role("link", name="外呼活动").click()
    running = page.locator('#campaigns li[data-campaign-id="c"]')
    expect(running.locator("h3")).to_have_text("测试外呼 · 进行中")
    expect(running).to_contain_text("已接通 3")
    expect(running.get_by_role("link", name="导出结果 CSV")).to_have_attribute("href", "/desk/campaigns/c/outcomes.csv")
    switched_off = page.locator('#campaigns li[data-campaign-id="off"]')
    expect(switched_off.get_by_role("button", name="启动：测试外呼")).to_have_count(0)  # its file says off

    running.get_by_role("button", name="暂停：测试外呼").click()
    expect(page.locator("#campaigns-status")).to_have_text("测试外呼：已暂停")
    expect(running.locator("h3")).to_have_text("测试外呼 · 已暂停")
    assert queue.campaign_states()["c"]["state"] == "paused"

    answers: list[str] = []

    def say_no_then_yes(dialog: Dialog) -> None:
        answers.append(dialog.message)
        dialog.dismiss() if len(answers) == 1 else dialog.accept()

    page.on("dialog", say_no_then_yes)
    running.get_by_role("button", name="停止：测试外呼").click()
    assert queue.campaign_states()["c"]["state"] == "paused", "said no: nothing stopped"
    running.get_by_role("button", name="停止：测试外呼").click()
    expect(running.locator("h3")).to_have_text("测试外呼 · 已停止")
    assert "排队中的呼叫将全部取消" in answers[0] and queue.campaign_states()["c"]["state"] == "stopped"
    page.screenshot(path=str(artifact("campaigns-page")), full_page=True)
