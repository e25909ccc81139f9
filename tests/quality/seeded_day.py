"""A seeded day of synthetic conversations built from a small table of kinds, each kind one
scripted conversation (the flows' texts and hand-over reasons) repeated `count` times at spread
start times. The tests count the expected figures from the table by hand, never from figures.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.quality.scripts import START, Script

HANDOFF = {"flow": "transfer_to_agent", "reason": "客户要求人工", "priority": "normal", "channel": "chat"}
DAY_BEFORE_2359 = START - 8 * 3600 - 60  # 2025-12-31 23:59 in Asia/Shanghai


def transfer_chat(conversation_id: str, start: float) -> Script:
    """Asks for a person and gets one: 4 s, hand-over "客户要求人工"."""
    return (Script(conversation_id, start).user("转人工", intent="transfer_to_agent").wait(4)
            .bot("正在为您转接", handoff=HANDOFF).listen())


def failed_identity_chat(conversation_id: str, start: float) -> Script:
    """Cannot give their name: 11 s, identity asked and not passed, hand-over "身份核验未通过"."""
    return (Script(conversation_id, start).user("查账单").wait(1).slot("requested_slot", "customer_name")
            .bot("请问您的姓名？").listen().wait(9).user("嗯那个啥", intent="inform", confidence=0.3).wait(1)
            .bot("转人工", handoff={**HANDOFF, "reason": "身份核验未通过"}).listen())


def empty_chat(conversation_id: str, start: float) -> Script:
    """Opened and left: the customer never says anything, so it is no conversation."""
    return Script(conversation_id, start).session_starts()


def _call(conversation_id: str, start: float) -> Script:
    return Script(conversation_id, start, channel="voice").call_opens().wait(1)


def plain_call(conversation_id: str, start: float) -> Script:
    """10.8 s, contained, one low-confidence utterance "嗯那个啥"."""
    return _call(conversation_id, start).caller_says("嗯那个啥", 2.0, confidence=0.3).bot_answers("好的").wait(1) \
        .call("call_ended")


def barge_in_call(conversation_id: str, start: float) -> Script:
    """10.8 s, contained, a barge-in, one low-confidence utterance "额度"."""
    return _call(conversation_id, start).call("barge_in", cause="speech") \
        .caller_says("额度", 2.0, confidence=0.5).bot_answers("好的").wait(1).call("call_ended")


def silent_then_transfer_call(conversation_id: str, start: float) -> Script:
    """15.8 s: a 9 s caller silence, then a hand-over "客户要求人工" (told by the bot and the call)."""
    return (_call(conversation_id, start).wait(8).caller_says("转人工", 2.0, intent="transfer_to_agent").wait(0.8)
            .bot("正在为您转接", handoff={**HANDOFF, "channel": "voice"}).listen()
            .call("control_handoff", reason="客户要求人工", flow="transfer_to_agent").wait(1).call("call_ended"))


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[[str, float], Script]
    count: int
    day_before: bool = False  # starts 23:59 the day before


def seeded_day(kinds: list[Kind], spacing: float = 10.0) -> list[Script]:
    """Every kind's conversations, interleaved in time from 08:00 (or 23:59 the day before)."""
    scripts: list[Script] = []
    slot = 0
    for kind in kinds:
        for n in range(kind.count):
            if kind.day_before:
                start = DAY_BEFORE_2359 + n * 0.01  # all begin within the last minute of the day before
            else:
                start, slot = START + slot * spacing, slot + 1
            scripts.append(kind.build(f"{kind.name}-{n}", start))
    return scripts
