"""The desk learns of a customer's line as soon as Rasa has it: the live-agent relay's read waits
for the conversation to grow (bot/channels.py), woken by the message in this process or finding
it on its next look when another Rasa process took it. Run in Rasa's environment
(relay_scenarios.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.rasa_scenarios import needs_rasa, run_in_rasa

SCENARIOS = Path(__file__).with_name("relay_scenarios.py")

pytestmark = needs_rasa


def run(scenario: str) -> dict[str, Any]:
    seen: dict[str, Any] = run_in_rasa(SCENARIOS, scenario, timeout=180)
    return seen


def customer_lines(answer: dict[str, Any]) -> list[str]:
    return [line["text"] for line in answer["messages"] if line["from"] == "customer"]


def test_a_waiting_read_answers_with_the_customers_line_when_it_arrives() -> None:
    seen = run("woken")
    assert seen["waited"], "the read waited for a line instead of answering at once"
    assert seen["answer"]["status"] == 200
    assert customer_lines(seen["answer"]) == ["我的账单不对"]
    assert seen["answer"]["next"] == seen["length"] + 1
    assert seen["left_waiting"] == 0, "nothing kept for a conversation no read waits on"


def test_a_line_another_rasa_process_took_is_found_on_the_next_look() -> None:
    seen = run("heard_elsewhere")
    assert customer_lines(seen["answer"]) == ["还在吗"]
    assert seen["left_waiting"] == 0


def test_a_read_answers_at_once_when_lines_exist_and_empty_when_the_wait_runs_out() -> None:
    seen = run("at_once_and_run_out")
    assert customer_lines(seen["already"]) == ["转人工"] and seen["already"]["next"] == seen["length"]
    assert seen["ran_out"]["messages"] == [] and seen["ran_out"]["next"] == seen["length"]
    assert seen["malformed"] == [400] * 5, "a wait below 0, above 25 s or not a number is refused"
    assert seen["unknown"] == 404
    assert seen["left_waiting"] == 0


def test_a_read_does_not_wait_for_a_turn_holding_the_conversations_lock() -> None:
    seen = run("beside_a_turn")
    assert isinstance(seen["answer"], dict), seen["answer"]
    assert customer_lines(seen["answer"]) == ["转人工"] and seen["answer"]["next"] == seen["length"]
