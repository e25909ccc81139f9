"""Every slot type a flow may declare, and what each one means to everyone who reads answers.

One place for what used to be spread over the engine, the hand-over summary and the phone: the
flow schema's `type` enum lists exactly these names (tests/flows/test_slot_types.py walks it),
the dialogue core has one validator per type (bot/actions/validators.py, checked at import) and
the phone's keypad and recogniser grammars read `keypad` here. A new type is added here, in the
schema's enum and with its validator; the words that answer it are in flows/shared/answers.yml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# On the phone: `digits` typed one key at a time (ended by #) and said digit by digit (a digit
# grammar); `key` one key answers (1 yes / 2 no, the n-th choice, a rating); `speech` said only.
Keypad = Literal["digits", "key", "speech"]


@dataclass(frozen=True)
class SlotType:
    name: str
    label: str  # how the agent's summary names an answer of this type (a slot's `label` wins)
    keypad: Keypad
    loggable: bool  # its values may be logged: names, numbers and free text are personal data
    prefillable: bool  # taken from the message that starts the flow ("推迟两天")
    masked: bool  # shown to agents with all but its last 4 characters hidden


SLOT_TYPES: dict[str, SlotType] = {slot_type.name: slot_type for slot_type in (
    SlotType("amount", "金额", "speech", loggable=True, prefillable=True, masked=False),
    SlotType("days", "天数", "speech", loggable=True, prefillable=True, masked=False),
    SlotType("date", "日期", "speech", loggable=True, prefillable=True, masked=False),
    SlotType("yes_no", "确认", "key", loggable=True, prefillable=False, masked=False),
    SlotType("digits", "号码", "digits", loggable=False, prefillable=False, masked=True),
    SlotType("phone", "手机号", "digits", loggable=False, prefillable=False, masked=True),
    SlotType("choice", "选择", "key", loggable=True, prefillable=False, masked=False),
    SlotType("rating", "评分", "key", loggable=True, prefillable=False, masked=False),
    # Not prefillable: "我那张工行卡想换掉" names the old card, not the new one.
    SlotType("bank", "银行", "speech", loggable=True, prefillable=False, masked=False),
    SlotType("text", "说明", "speech", loggable=False, prefillable=False, masked=False),
)}


def types_with(keypad: Keypad) -> frozenset[str]:
    """The types answered on the phone's keypad this way."""
    return frozenset(name for name, slot_type in SLOT_TYPES.items() if slot_type.keypad == keypad)
