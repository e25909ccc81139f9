"""The dialogue core's `end_call` (an outbound call that reached a third party, a wrong number or an
opt-out: flows/shared/right_party.yml) makes the phone hang up once the goodbye is played; any other
reply leaves the line open for the caller. Turn taking runs here against a dialogue core peer on
loopback answering as Rasa's REST channel does, with the flow engine's payloads."""

from __future__ import annotations

from typing import Any

from tests.loopback import JsonPeer, serving
from tests.voice.collector import Collector
from tests.waiting import until
from voice.dialogue import DialogueClient
from voice.frames import CallStarted, Control, Speak, Transcript, UserStartedSpeaking
from voice.pipeline import Pipeline
from voice.turns import TurnConfig, TurnTaking

OPENING = [{"recipient_id": "call-1", "text": "您好，这里是消费金融客服中心，请问是杨先生本人吗？"},
           {"recipient_id": "call-1", "custom": {"flow": "overdue_reminder", "expect": {"slot": "right_party"}}}]
WRONG_NUMBER = [{"recipient_id": "call-1", "custom": {"flow": "overdue_reminder", "party": "wrong_number"}},
                {"recipient_id": "call-1", "text": "不好意思，打错了，打扰您了，再见。"},
                {"recipient_id": "call-1",
                 "custom": {"flow": "overdue_reminder", "outcome": "wrong_number", "end_call": True}}]
REMINDER_HEARD = [{"recipient_id": "call-1", "text": "好的，谢谢杨先生。现在还款的话，可以在APP首页点还款。"},
                  {"recipient_id": "call-1", "custom": {"flow": "overdue_reminder", "outcome": "answer"}}]


class DialogueCore(JsonPeer):
    """Answers the opening turn, then the caller's answer with `answer`."""

    answer_to_caller: list[dict[str, Any]] = []
    turns: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        message = self.body()["message"]
        DialogueCore.turns.append(message)
        self.answer(OPENING if message.startswith("/") else DialogueCore.answer_to_caller)


async def outbound_call(answer_to_caller: list[dict[str, Any]], last_text: str) -> list[Any]:
    """The call's frames towards the phone, once the caller's 打错了 was answered and said."""
    DialogueCore.answer_to_caller, DialogueCore.turns = answer_to_caller, []
    with serving(DialogueCore) as core_url:
        dialogue = DialogueClient(core_url, channel_token="a-gateway-token-for-this-test")
        turns = TurnTaking(dialogue, TurnConfig(), speech_recognition=True)
        phone = Collector()
        pipeline = Pipeline([turns, phone])
        try:
            await pipeline.send(CallStarted("call-1", channel="outbound", opening="/overdue_reminder"))
            await until(lambda: any(isinstance(f, Speak) and "本人" in f.text for f in phone.frames))
            await pipeline.send(UserStartedSpeaking())
            await pipeline.send(Transcript("你打错了吧", final=True))
            await until(lambda: any(isinstance(f, Speak) and f.text == last_text for f in phone.frames))
            await turns.close()  # the turn's task is done: whatever it pushed is there
        finally:
            await pipeline.close()
            await dialogue.close()
    assert DialogueCore.turns == ["/overdue_reminder", "你打错了吧"]
    return [f for f in phone.frames if isinstance(f, Speak | Control)]


async def test_the_bot_hangs_up_after_the_goodbye_when_the_core_ends_the_call() -> None:
    frames = await outbound_call(WRONG_NUMBER, "不好意思，打错了，打扰您了，再见。")
    said_last = max(i for i, f in enumerate(frames) if isinstance(f, Speak))
    assert frames[said_last:] == [Speak("不好意思，打错了，打扰您了，再见。"), Control("hangup")]
    assert [f for f in frames if isinstance(f, Control)] == [Control("hangup")], "hung up once"


async def test_any_other_reply_leaves_the_line_to_the_caller() -> None:
    frames = await outbound_call(REMINDER_HEARD, "好的，谢谢杨先生。现在还款的话，可以在APP首页点还款。")
    assert not [f for f in frames if isinstance(f, Control)]
