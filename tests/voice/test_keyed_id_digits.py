"""Turn taking for ID digits on the keypad: `*` as the last key is the check character X, and
anywhere else still asks to hear the question again. The dialogue core is a stand-in that asks
for the ID number's last 6 characters every turn; no clock is involved (each answer completes
at its sixth key)."""

from __future__ import annotations

import asyncio
from typing import Any

from voice.dialogue import DialogueClient, Reply
from voice.frames import CallStarted, Direction, Keypress
from voice.pipeline import Pipeline
from voice.turns import Prompts, TurnConfig, TurnTaking

ID_LAST6 = {"slot": "id_last6", "type": "digits", "private": True, "length": 6, "check_character": True}


class AsksIdLast6(DialogueClient):
    """Keeps what each turn sent; every reply asks for the ID number's last 6 characters."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, sender: str, text: str, metadata: dict[str, Any]) -> Reply:
        self.sent.append(text)
        return Reply(expect=ID_LAST6)

    async def close(self) -> None:
        pass


async def keyed(keys: str) -> list[str]:
    """What the dialogue core received from a keypad-only call keying `keys` after the menu's 1."""
    dialogue = AsksIdLast6()
    turns = TurnTaking(dialogue, TurnConfig(prompts=Prompts(disclosure="")), speech_recognition=False)
    Pipeline([turns])
    await turns.process(CallStarted("call-keyed-id"), Direction.DOWNSTREAM)
    for key in "1" + keys:
        await turns.process(Keypress(key), Direction.DOWNSTREAM)
        while turns._tasks:  # each key after the turns it started were answered
            await asyncio.wait(set(turns._tasks))
    await turns.close()
    return dialogue.sent


async def test_star_as_the_last_key_of_id_digits_is_the_check_character_x() -> None:
    assert await keyed("12345*") == ["/bill_inquiry", "12345X"]


async def test_star_before_the_last_id_digit_still_asks_to_hear_the_question_again() -> None:
    assert await keyed("12*123456") == ["/bill_inquiry", "/repeat", "123456"]
