"""One `validate_<type>` per slot type: the customer's words in, the slot's value (or None) out.

They follow rasa-sdk's `validate_<slot>` convention, keyed by slot type because every flow's
slots are declared in YAML: a flow gets a new amount slot without a line of Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.actions.parsing import parse_amount, parse_date, parse_days, parse_digits
from flowspec.model import Slot, load_answers
from flowspec.slot_types import SLOT_TYPES

RATING_WORDS = {"非常满意": 5, "很满意": 5, "满意": 4, "一般": 3, "非常不满意": 1, "不满意": 2}
NAME_FILLERS = re.compile(r"^(我叫|我是|名字是|姓名是|叫|是)|[，。,.!！\s]")


@dataclass(frozen=True)
class Utterance:
    """What the customer just said or pressed, with what NLU made of it."""

    text: str
    intent: str | None = None
    banks: Sequence[dict[str, Any]] = ()
    answering: bool = True  # False: picking values out of the request that started the flow


def validate_amount(slot: Slot, said: Utterance) -> float | None:
    value = parse_amount(said.text, strict=not said.answering)
    if value is None:
        return None
    if value < slot.options.get("min", 0.01) or value > slot.options.get("max", 10_000_000):
        return None
    return value


def validate_days(slot: Slot, said: Utterance) -> int | None:
    value = parse_days(said.text)
    if value is None or value < slot.options.get("min", 1) or value > slot.options.get("max", 366):
        return None
    return value


def validate_date(slot: Slot, said: Utterance) -> str | None:
    value = parse_date(said.text)
    return value.isoformat() if value else None


def validate_yes_no(slot: Slot, said: Utterance) -> bool | None:
    if said.intent == "affirm":
        return True
    if said.intent == "deny":
        return False
    text = said.text.strip()
    if text in ("1", "2"):  # keypad: 1 yes, 2 no
        return text == "1"
    answers = load_answers()
    if any(word in text for word in answers.no):  # negations first: 不是 contains 是
        return False
    return True if any(word in text for word in answers.yes) else None


def validate_digits(slot: Slot, said: Utterance) -> str | None:
    digits = parse_digits(said.text)
    length = slot.options.get("length")
    low = slot.options.get("min_length", length or 1)
    high = slot.options.get("max_length", length or 64)
    if "X" in digits[:-1]:
        return None
    return digits if low <= len(digits) <= high else None


def validate_phone(slot: Slot, said: Utterance) -> str | None:
    digits = parse_digits(said.text)
    return digits if re.fullmatch(r"1\d{10}", digits) else None


def validate_choice(slot: Slot, said: Utterance) -> Any:
    choices = slot.options["choices"]
    text = said.text.strip()
    if text.isdecimal() and 1 <= int(text) <= len(choices):
        return choices[int(text) - 1]["value"]
    matches = [
        choice for choice in choices
        if any(word in text for word in [choice["say"], *choice.get("words", [])])
    ]
    if "match_order" in slot.options:  # the first heard in that order wins (不是 before 是)
        heard = {str(choice["value"]): choice["value"] for choice in matches}
        return next((heard[value] for value in slot.options["match_order"] if value in heard), None)
    return matches[0]["value"] if len(matches) == 1 else None


def validate_rating(slot: Slot, said: Utterance) -> int | None:
    for word, score in sorted(RATING_WORDS.items(), key=lambda item: -len(item[0])):
        if word in said.text:
            return score
    digits = parse_digits(said.text)
    if digits in ("1", "2", "3", "4", "5"):
        return int(digits)
    return None


def validate_bank(slot: Slot, said: Utterance) -> str | None:
    for bank in said.banks:
        if any(word in said.text for word in [bank["name"], *bank.get("aliases", [])]):
            return str(bank["name"])
    return None


def validate_text(slot: Slot, said: Utterance) -> str | None:
    text = said.text.strip()
    if slot.proves == "name":
        text = NAME_FILLERS.sub("", text)
    return text if len(text) >= slot.options.get("min_chars", 2) else None


VALIDATORS: dict[str, Callable[[Slot, Utterance], Any]] = {
    "amount": validate_amount,
    "days": validate_days,
    "date": validate_date,
    "yes_no": validate_yes_no,
    "digits": validate_digits,
    "phone": validate_phone,
    "choice": validate_choice,
    "rating": validate_rating,
    "bank": validate_bank,
    "text": validate_text,
}
if set(VALIDATORS) != set(SLOT_TYPES):  # a type added to the registry needs its validator, and back
    raise ImportError(f"validators {sorted(VALIDATORS)} do not match the slot types {sorted(SLOT_TYPES)}")


def validate(slot: Slot, said: Utterance) -> Any:
    return VALIDATORS[slot.type](slot, said)
