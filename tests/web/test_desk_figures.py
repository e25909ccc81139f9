"""The service figures on the desk (supervisors): the quality inspection's daily figures through the
web server, drawn by Chart.js served from the web server itself, in headless Chromium. Against
the real web app on loopback and a fake inspection service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from stack.services import free_port
from tests.accounts import AGENT, PASSWORD, SUPERVISOR
from tests.loopback import JsonPeer, serving, serving_asgi
from tests.security.test_web_desk_events import logged_in, web_settings
from web.app import create_app

QUALITY_TOKEN = "a-quality-token-for-figure-tests"


def day(date: str, conversations: int, contained: int, reasons: list[list[Any]]) -> dict[str, Any]:
    handovers = conversations - contained
    return {"date": date, "conversations": conversations, "contained": contained,
            "containment_rate": round(contained / conversations, 4), "handovers": handovers,
            "handover_rate": round(handovers / conversations, 4), "handover_reasons": reasons,
            "identity_checks": 10, "identity_passed": 9, "identity_pass_rate": 0.9,
            "average_handling_seconds": 42.5, "voice_calls": 4, "barge_in_rate": 0.25, "silence_rate": 0.5,
            "low_confidence": [["嗯那个啥", 3]], "identified_conversations": 8, "first_contact_resolution": 0.875,
            "knowledge_answers": [["early_repayment.fee", 5], ["credit_report.overdue_record", 2]],
            "unanswered_by_entry": [["card.credit_card", 4]], "outbound_dials": 12, "outbound_answered": 7,
            "outbound_skipped": [["do_not_call", 3], ["a_rule_added_later", 1]]}


DAYS = [day("2026-01-01", 20, 15, [["客户要求人工", 4], ["身份核验未通过", 1]]),
        day("2026-01-02", 10, 8, [["客户要求人工", 2]]),
        day("2026-01-03", 40, 36, [["身份核验未通过", 3], ["客户要求人工", 1]])]
asked: list[tuple[str, dict[str, list[str]]]] = []


class FakeQuality(JsonPeer):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = urlsplit(self.path)
        asked.append((self.headers.get("Authorization", ""), parse_qs(path.query)))
        if path.path == "/figures/daily.json":
            days = int(parse_qs(path.query).get("days", ["14"])[0])
            self.answer({"days": DAYS[-days:]})
        else:
            self.answer([])

    def do_POST(self) -> None:  # noqa: N802 - the risk API's side of a desk login (it audits logins)
        self.body()
        self.answer({})


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    with serving(FakeQuality) as quality, serving_asgi(create_app(web_settings(
            quality, quality_url=quality, quality_api_token=QUALITY_TOKEN))) as url:
        yield url


def test_the_figures_are_for_supervisors_and_passed_on_with_the_inspections_token(web: str) -> None:
    with logged_in(web, AGENT) as desk:
        assert desk.get("/desk/api/quality/figures").status_code == 403
        assert desk.get("/desk/figures").status_code == 403
    with logged_in(web, SUPERVISOR) as board:
        figures = board.get("/desk/api/quality/figures", params={"days": 2})
        assert figures.status_code == 200
        # As the inspection sent them, but the dialler's skip rules in Chinese (one the desk does not know: 其他).
        named = [["免打扰", 3], ["其他", 1]]
        assert figures.json()["days"] == [{**day, "outbound_skipped": named} for day in DAYS[-2:]]
        assert asked[-1] == (f"Bearer {QUALITY_TOKEN}", {"days": ["2"]})
        for bad in ("0", "91", "a week"):
            assert board.get("/desk/api/quality/figures", params={"days": bad}).status_code == 422
        assert 'href="/desk/figures"' in board.get("/desk").text
    assert httpx.get(f"{web}/desk/api/quality/figures").status_code == 401


def test_without_the_inspection_the_figures_say_why(web: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    for quality, code in (({"quality_url": down, "quality_api_token": QUALITY_TOKEN}, "quality_unavailable"),
                          ({}, "quality_not_configured")):
        with serving(FakeQuality) as risk_api, serving_asgi(create_app(web_settings(risk_api, **quality))) as other, \
                logged_in(other, SUPERVISOR) as board:
            answer = board.get("/desk/api/quality/figures")
            assert answer.status_code == 503 and answer.json()["detail"]["code"] == code
            assert "质检服务" in answer.json()["detail"]["message"]


def test_a_supervisor_sees_the_days_drawn_by_chart_js(web: str, page: Page) -> None:
    assert page.context.request.post(f"{web}/desk/login", form={"user": SUPERVISOR, "password": PASSWORD}).ok
    page.goto(f"{web}/desk/figures")
    expect(page.locator("#figures-status")).to_contain_text("3")  # not a string predicate: the CSP forbids eval
    drawn = page.evaluate("""() => ['rates-chart', 'calls-chart', 'reasons-chart'].map(id => {
        const chart = Chart.getChart(document.getElementById(id));
        return {labels: chart.data.labels, data: chart.data.datasets.map(set => [set.label, set.data])};
    })""")
    rates, calls, reasons = drawn
    assert rates["labels"] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert rates["data"][0] == ["自助解决率", [0.75, 0.8, 0.9]]
    assert rates["data"][3] == ["首次解决率", [0.875, 0.875, 0.875]]
    assert calls["data"] == [["打断率", [0.25, 0.25, 0.25]], ["静默率", [0.5, 0.5, 0.5]]]
    assert reasons["labels"] == ["客户要求人工", "身份核验未通过"] and reasons["data"] == [["转人工次数", [7, 4]]]
    rows = page.locator("#figures-table tbody tr")
    assert rows.count() == 3 and rows.nth(2).locator("td").nth(2).text_content() == "90.0%"
    assert rows.nth(2).locator("td").nth(8).text_content() == "12（7 接通）"
    assert page.locator("#low-confidence li").first.text_content() == "嗯那个啥（3 次）"
    assert page.locator("#knowledge-answers li").all_text_contents() == [
        "early_repayment.fee（5 次）", "credit_report.overdue_record（2 次）"]
    assert page.locator("#unanswered-by-entry li").all_text_contents() == ["card.credit_card（4 次）"]
    assert page.locator("#outbound-skipped li").all_text_contents() == ["免打扰（3 次）", "其他（1 次）"]
