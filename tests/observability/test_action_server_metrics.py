"""The action server (rasa-sdk with this project's plugin, as the stack starts it) serves /metrics
to the monitoring token only, its own ACTION_SERVER_TOKEN refused there; and the flow engine's
metric helpers count what they are given, with bounded labels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY

from bot.metrics import record_flow_signal, record_nlu_confidence
from stack.services import ROOT, free_port
from tests.observability.scrape import METRICS_AUTH, METRICS_TOKEN, refusals
from tests.waiting import BOUND_SECONDS

ACTION_SERVER_TOKEN = f"test-action-server-{uuid.uuid4().hex}"
STARTUP_BOUND_SECONDS = 120  # the flow engine loads the flows and the knowledge base's index


@pytest.fixture(scope="module")
def action_server() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACTION_SERVER_TOKEN": ACTION_SERVER_TOKEN,
           "METRICS_TOKEN": METRICS_TOKEN, "RISK_API_URL": "http://127.0.0.1:9",
           "RISK_API_TOKEN": f"test-engine-{uuid.uuid4().hex}", "SANIC_HOST": "127.0.0.1"}
    process = subprocess.Popen([sys.executable, "-m", "rasa_sdk", "--actions", "bot.actions", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_BOUND_SECONDS
        while True:
            assert process.poll() is None, process.communicate()[1][-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the action server did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=BOUND_SECONDS)


def test_metrics_need_the_monitoring_token(action_server: str) -> None:
    assert refusals(action_server, ACTION_SERVER_TOKEN) == [401, 401, 401]
    # The metrics route opens nothing else: the action webhook still wants the action server's token.
    assert httpx.post(f"{action_server}/webhook", json={},
                      headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 401


def test_metrics_carry_the_flow_engine_families(action_server: str) -> None:
    text = httpx.get(f"{action_server}/metrics", headers=METRICS_AUTH).text
    assert "# TYPE ivr_bot_flow_outcomes_total counter" in text
    assert "# TYPE ivr_bot_nlu_confidence histogram" in text
    assert "# TYPE ivr_bot_knowledge_answers_total counter" in text
    assert "# TYPE ivr_bot_knowledge_unanswered_total counter" in text


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_flow_signals_and_confidence_are_counted_with_bounded_labels() -> None:
    ended = {"flow": "bill_inquiry", "outcome": "answered", "channel": "voice"}
    forged = {"flow": "bill_inquiry", "outcome": "answered", "channel": "other"}
    before, before_forged = sample("ivr_bot_flow_outcomes_total", ended), sample("ivr_bot_flow_outcomes_total", forged)
    record_flow_signal("voice", {"flow": "bill_inquiry", "outcome": "answered"})
    record_flow_signal("voice", {"asked": "id_last4"})  # not the end of a flow turn
    record_flow_signal("13812345678", {"flow": "bill_inquiry", "outcome": "answered"})  # never a label of its own
    assert sample("ivr_bot_flow_outcomes_total", ended) == before + 1
    assert sample("ivr_bot_flow_outcomes_total", forged) == before_forged + 1
    answered = {"entry": "early_repayment.fee", "channel": "chat"}
    answers_before = sample("ivr_bot_knowledge_answers_total", answered)
    record_flow_signal("chat", {"knowledge": "early_repayment.fee"})
    assert sample("ivr_bot_knowledge_answers_total", answered) == answers_before + 1
    unanswered_before = sample("ivr_bot_knowledge_unanswered_total", answered)
    record_flow_signal("chat", {"knowledge_nearest": "early_repayment.fee"})
    assert sample("ivr_bot_knowledge_unanswered_total", answered) == unanswered_before + 1
    assert sample("ivr_bot_knowledge_answers_total", answered) == answers_before + 1  # not an answer

    count_before = sample("ivr_bot_nlu_confidence_count", {"channel": "chat"})
    low_before = sample("ivr_bot_nlu_confidence_bucket", {"channel": "chat", "le": "0.5"})
    record_nlu_confidence("chat", {"intent": {"name": "check_bill", "confidence": 0.42}})
    record_nlu_confidence("chat", {"text": "/keypad"})  # no intent: nothing to observe
    assert sample("ivr_bot_nlu_confidence_count", {"channel": "chat"}) == count_before + 1
    assert sample("ivr_bot_nlu_confidence_bucket", {"channel": "chat", "le": "0.5"}) == low_before + 1
