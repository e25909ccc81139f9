"""Scripted conversations for the quality tests, as the stream carries them: Rasa's events (as
its broker receives them, prepared by the broker's own writer-side code) and the phone
gateway's call events, on a virtual clock."""

from __future__ import annotations

from typing import Any

from quality.broker import RasaTurns
from quality.events import CALL, StreamEvent, customer_key
from quality.rules import FlowFacts, Inspector, load_rules

START = 1_767_225_600.0  # 2026-01-01 08:00 in Asia/Shanghai
CUSTOMER_KEY = customer_key("test-only-tracker-store-key")


class Script:
    def __init__(self, conversation_id: str, start: float = START, channel: str = "chat") -> None:
        self.conversation_id = conversation_id
        self.now = start
        self.channel = channel
        self.items: list[dict[str, Any] | StreamEvent] = []

    def wait(self, seconds: float) -> Script:
        self.now += seconds
        return self

    def _rasa(self, event: str, **fields: Any) -> Script:
        self.items.append({"sender_id": self.conversation_id, "event": event, "timestamp": self.now, **fields})
        return self

    def user(self, text: str, intent: str = "bill_inquiry", confidence: float = 0.95) -> Script:
        return self._rasa("user", text=text, input_channel="trusted",
                          parse_data={"text": text, "intent": {"name": intent, "confidence": confidence},
                                      "entities": []},
                          metadata={"channel": self.channel, "input": "speech", "caller_number": "13812345678"})

    def bot(self, text: str = "", **custom: Any) -> Script:
        return self._rasa("bot", text=text or None, data={"custom": custom} if custom else {}, metadata={})

    def slot(self, name: str, value: Any) -> Script:
        return self._rasa("slot", name=name, value=value)

    def action(self, name: str) -> Script:
        return self._rasa("action", name=name, policy="RulePolicy", confidence=1.0)

    def session_starts(self) -> Script:
        return self.action("action_session_start")._rasa("session_started").listen()

    def listen(self) -> Script:
        return self.action("action_listen")

    def call(self, kind: str, **data: Any) -> Script:
        self.items.append(StreamEvent(self.conversation_id, CALL, kind, self.now, data))
        return self

    # A phone call's usual moments.
    def call_opens(self, timezone: str | None = None) -> Script:
        return (self.call("call_started", channel=self.channel, priority_tier="normal", queue_returns=0,
                          known_caller=True, timezone=timezone)
                .call("bot_said", text="为保障您的权益，本次通话可能会被录音。", interruptible=False)
                .call("bot_started_speaking").wait(3).call("bot_stopped_speaking"))

    def caller_says(self, text: str, seconds: float, intent: str = "bill_inquiry", level: float = -20.0,
                    confidence: float = 0.95) -> Script:
        self.call("caller_started_speaking").wait(seconds)
        self.call("caller_stopped_speaking", seconds=seconds, level_dbfs=level)
        characters = len(text)
        self.call("caller_utterance", characters=characters, seconds=seconds,
                  characters_per_second=round(characters / seconds, 2))
        return self.user(text, intent, confidence)

    def bot_answers(self, text: str, after: float = 0.8, speaking: float = 3.0) -> Script:
        self.wait(after).bot(text).listen().call("bot_said", text=text, interruptible=True)
        return self.call("bot_started_speaking").wait(speaking).call("bot_stopped_speaking")


def stream(*scripts: Script) -> list[StreamEvent]:
    """The scripts' events as stored: Rasa's prepared as the broker does, positions numbered."""
    turns = RasaTurns(CUSTOMER_KEY)
    prepared: list[StreamEvent] = []
    for script in scripts:
        for item in script.items:
            prepared += [item] if isinstance(item, StreamEvent) else turns.feed(item)
    prepared += turns.rest()
    return [StreamEvent(e.conversation_id, e.source, e.kind, e.at, e.data, index)
            for index, e in enumerate(prepared, start=1)]


def inspect(*scripts: Script) -> Inspector:
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    for event in stream(*scripts):
        inspector.feed(event)
    return inspector


def rules_fired(inspector: Inspector, conversation_id: str) -> list[str]:
    return [hit.rule for hit in inspector.conversations[conversation_id].hits]


def verified_bill_chat(conversation_id: str, start: float = START, customer: str | None = None) -> Script:
    """A chat customer (by default one per conversation) verifies (L1), then hears their bill:
    nothing wrong in it."""
    return (Script(conversation_id, start)
            .session_starts()
            .user("我想查一下这个月账单").wait(1)
            .slot("requested_slot", "customer_name").bot("请问您的姓名？").listen()
            .wait(10).user("我叫张伟", intent="inform").wait(1)
            .slot("requested_slot", "id_last4").bot("请输入身份证后四位").listen()
            .wait(8).user("1234", intent="inform").wait(1)
            .slot("id_last4", "1234").slot("customer_id", customer or f"C-{conversation_id}")
            .slot("verified_level", "L1").slot("requested_slot", None)
            .bot("您第3期账单应还1200元").bot(flow="bill_inquiry", outcome="answer").listen())
