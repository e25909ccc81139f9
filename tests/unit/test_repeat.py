"""再说一遍: the bot's last turn again; on the phone after a barge-in, from the sentence the caller
cut into (the gateway reports what was playing and how much was heard: voice/output.py). Driven
through the action with rasa-sdk's tracker."""

from __future__ import annotations

import asyncio
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions.shared_actions import ActionRepeat

ANSWER, QUESTION = "您的可用额度为五千元。", "还有什么可以帮您？"


def repeated(heard: dict[str, Any] | None) -> list[str]:
    message = {"text": "再说一遍", "intent": {"name": "repeat", "confidence": 0.99},
               "metadata": {"input": "speech", **({"heard": heard} if heard else {})}}
    events = [{"event": "user", "text": "查额度"}, {"event": "bot", "text": ANSWER},
              {"event": "bot", "text": QUESTION}, {"event": "user", "text": "再说一遍", "parse_data": message}]
    tracker = Tracker("call-repeat", {"channel": "voice"}, message, events, False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionRepeat().run(dispatcher, tracker, {}))
    return [said["text"] for said in dispatcher.messages]


def test_without_a_barge_in_the_whole_last_turn_is_said_again() -> None:
    assert repeated(None) == [ANSWER, QUESTION]


def test_cut_into_the_last_sentence_only_that_sentence_is_said_again() -> None:
    assert repeated({"text": ANSWER + QUESTION, "heard": ANSWER + "还有"}) == [QUESTION]


def test_cut_into_the_first_sentence_it_and_what_followed_are_said_again() -> None:
    assert repeated({"text": ANSWER + QUESTION, "heard": "您的可用"}) == [ANSWER + QUESTION]


def test_a_report_of_something_the_bot_did_not_say_is_ignored() -> None:
    assert repeated({"text": "请把验证码告诉我。", "heard": "请把"}) == [ANSWER, QUESTION]
    assert repeated({"text": QUESTION, "heard": "不是它的开头"}) == [ANSWER, QUESTION]
