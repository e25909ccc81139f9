"""An outbound call's end tells the dialler what came of it, for the attempt the dialplan named:
the outcome from what the dialogue core signalled, sent in the background with a few tries, and
the real dialler service (on loopback) records it. No personal data in the gateway's logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowspec.model import repository_flowset
from outbound.queue import CONVERSATION_OUTCOMES
from outbound.service import OutboundSettings, service_app
from telephony.outcomes import PRECEDENCE, RIGHT_PARTY_ENDINGS, OutcomeReporter, conversation_outcome
from tests.loopback import JsonPeer, serving, serving_asgi
from tests.outbound.helpers import FixedClock, china, database_url, make_campaign
from tests.outbound.test_dialer import TUESDAY, customers, rig
from voice.dialogue import Reply

GATEWAY_TOKEN = "a-gateway-token-for-the-outcome-tests"


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """The dialler's queue on SQLite (tests/outbound runs it on PostgreSQL too)."""
    with database_url("sqlite", tmp_path) as url:
        yield url


def reply(*messages: dict[str, Any]) -> Reply:
    return Reply.from_messages([{"custom": message} for message in messages])


THIRD_PARTY_CALL = [reply({"flow": "overdue_reminder", "expect": {"slot": "right_party"}}),
                    reply({"flow": "overdue_reminder", "party": "third_party"},
                          {"flow": "overdue_reminder", "expect": {"slot": "recall_allowed"}})]


@pytest.mark.parametrize(("replies", "outcome"), [
    ([], "hung_up"),
    (THIRD_PARTY_CALL[:1], "hung_up"),
    (THIRD_PARTY_CALL, "third_party"),
    ([*THIRD_PARTY_CALL, reply({"flow": "overdue_reminder", "outcome": "third_party_refused"})], "third_party_refused"),
    ([reply({"party": "wrong_number"}), reply({"flow": "overdue_reminder", "outcome": "wrong_number"})],
     "wrong_number"),
    ([reply({"party": "opted_out"})], "opted_out"),
    ([reply({"party": "confirmed"}), reply({"flow": "overdue_reminder", "outcome": "answer"})], "completed"),
    ([reply({"party": "confirmed"}), reply({"flow": "overdue_reminder", "outcome": "answer"}),
      reply({"flow": "promise_to_pay", "outcome": "done"})], "promise_to_pay"),
    ([reply({"party": "confirmed"}), reply({"flow": "unsubscribe_marketing", "outcome": "done"}),
      reply({"flow": "overdue_reminder", "outcome": "answer"})], "opted_out"),
    ([reply({"party": "confirmed"}), reply({"flow": "callback_request", "outcome": "done"})], "callback_requested"),
    ([reply({"party": "confirmed"}), reply({"flow": "overdue_reminder", "outcome": "cancelled"})], "refused"),
    ([reply({"flow": "overdue_reminder", "outcome": "cancelled"})], "hung_up"),
    ([reply({"party": "confirmed"}), reply({"flow": "overdue_reminder", "outcome": "refused"})], "hung_up"),
    ([reply({"party": "confirmed"}), reply({"flow": "overdue_reminder", "outcome": "paid"})], "paid"),
    ([reply({"party": "confirmed"}), reply({"flow": "overdue_reminder", "outcome": "claims_paid"})], "claims_paid"),
    ([reply({"party": "confirmed"}),
      reply({"flow": "overdue_reminder", "outcome": "promise", "then": "promise_to_pay"})], "completed"),
    ([reply({"party": "confirmed"}),
      reply({"flow": "overdue_reminder", "outcome": "promise", "then": "promise_to_pay"}),
      reply({"flow": "promise_to_pay", "outcome": "done"})], "promise_to_pay"),
])
def test_the_outcome_is_the_strongest_thing_the_dialogue_signalled(replies: list[Reply], outcome: str) -> None:
    assert conversation_outcome(replies) == outcome


CONFIRMED_AND_HANDED_OVER = [
    reply({"party": "confirmed"}),
    reply({"flow": "overdue_reminder", "outcome": "handoff"}, {"handoff": {"reason": "转人工"}}),
]


@pytest.mark.parametrize(("replies", "handed_over", "callback_booked", "outcome"), [
    (CONFIRMED_AND_HANDED_OVER, True, False, "handed_over"),
    ([reply({"flow": "overdue_reminder", "expect": {"slot": "right_party"}})], True, False, "handed_over"),
    (CONFIRMED_AND_HANDED_OVER, False, True, "callback_requested"),  # the transfer declined, a callback booked
    (CONFIRMED_AND_HANDED_OVER, False, False, "hung_up"),  # declined, and the caller went before any callback
    ([*THIRD_PARTY_CALL, reply({"flow": "overdue_reminder", "outcome": "third_party"})], True, False, "third_party"),
    ([reply({"party": "confirmed"}), reply({"flow": "promise_to_pay", "outcome": "done"})], True, False,
     "promise_to_pay"),
])
def test_what_the_gateway_did_with_the_call_counts_too(replies: list[Reply], handed_over: bool,
                                                       callback_booked: bool, outcome: str) -> None:
    """A transfer to the agents' queue or a callback the gateway booked is what the dialler hears,
    unless the dialogue said something stronger before (a third party, a promise)."""
    assert conversation_outcome(replies, handed_over, callback_booked) == outcome


def test_the_outcomes_are_the_dialler_s_and_the_right_party_endings_the_flows() -> None:
    assert set(PRECEDENCE) | {"hung_up"} <= set(CONVERSATION_OUTCOMES)
    assert set(RIGHT_PARTY_ENDINGS) == set(repository_flowset().right_party.responses)


async def test_a_third_party_s_call_is_recorded_by_the_dialler_for_its_attempt(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = FixedClock(china(TUESDAY, 10))
    dialer, queue, originator = rig(db_url, {"c": make_campaign("c")}, clock, customers(clock))
    await dialer.tick()
    await dialer.drain()
    called = originator.sent[0]
    settings = OutboundSettings(risk_api_url="http://127.0.0.1:9", risk_api_token="t", number_key=b"k",
                                gateway_token=GATEWAY_TOKEN)
    caplog.set_level(logging.INFO, logger="telephony.outcomes")
    with serving_asgi(service_app(dialer, settings)) as url:
        reporter = OutcomeReporter(url, GATEWAY_TOKEN, retry_delays=(0, 0))
        reporter.report("call-uuid-1", called.attempt_id, conversation_outcome(THIRD_PARTY_CALL))
        await reporter.close()  # waits for the report under way
    assert reporter.reported == 1
    assert {a.id: a.conversation_outcome for a in queue.attempts()}[called.attempt_id] == "third_party"
    assert called.number not in caplog.text and called.attempt_id in caplog.text


class FlakyDialler(JsonPeer):
    """503 for the first `failures` reports, then 200; counts them."""

    failures = 0
    received: list[tuple[str, Any, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        FlakyDialler.received.append((self.path, self.body(), self.headers.get("Authorization", "")))
        if len(FlakyDialler.received) <= FlakyDialler.failures:
            self.answer({"detail": "busy"}, 503)
        else:
            self.answer({}, 404 if "unknown" in self.path else 200)


@pytest.mark.parametrize(("failures", "attempt", "tries", "reported"), [
    (2, "c:C100000:2026-03-13:1", 3, 1),  # two 503s, then recorded
    (5, "c:C100000:2026-03-13:1", 3, 0),  # still down after the last retry: given up, logged
    (0, "c:unknown:2026-03-13:1", 1, 0),  # refused: never tried again
])
async def test_a_report_is_retried_while_the_dialler_fails_and_not_when_it_refuses(
        failures: int, attempt: str, tries: int, reported: int, caplog: pytest.LogCaptureFixture) -> None:
    FlakyDialler.failures, FlakyDialler.received = failures, []
    with serving(FlakyDialler) as url:
        reporter = OutcomeReporter(url, GATEWAY_TOKEN, retry_delays=(0, 0))
        reporter.report("call-uuid-2", attempt, "wrong_number")
        await reporter.close()
    assert len(FlakyDialler.received) == tries and reporter.reported == reported
    assert FlakyDialler.received[0] == (f"/attempts/{attempt}/outcome", {"outcome": "wrong_number"},
                                        f"Bearer {GATEWAY_TOKEN}")
    if not reported:
        assert f"attempt {attempt}: outcome wrong_number not reported to the dialler after {tries} tries" in caplog.text


async def test_without_a_dialler_configured_nothing_is_sent_and_the_log_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="telephony.outcomes")
    reporter = OutcomeReporter(None, None)
    assert not reporter.enabled
    reporter.report("call-uuid-3", "c:C100000:2026-03-13:1", "hung_up")
    await reporter.close()
    assert "outcome hung_up not reported (OUTBOUND_URL / OUTBOUND_GATEWAY_TOKEN unset)" in caplog.text
    with pytest.raises(ValueError, match="not a conversation outcome"):
        reporter.report("call-uuid-3", "c:C100000:2026-03-13:1", "delighted")


async def test_a_call_torn_down_after_the_reporter_closed_is_logged_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    """A call whose teardown comes after the gateway began to stop: no request on a closed client."""
    FlakyDialler.failures, FlakyDialler.received = 0, []
    with serving(FlakyDialler) as url:
        reporter = OutcomeReporter(url, GATEWAY_TOKEN, retry_delays=(0,))
        await reporter.close()
        reporter.report("call-uuid-4", "c:C100000:2026-03-13:1", "third_party")
        await reporter.close()
    assert FlakyDialler.received == [] and reporter.reported == 0
    assert "attempt c:C100000:2026-03-13:1: outcome third_party not reported: the gateway is stopping" in caplog.text
