"""What the inspection stream keeps at rest: no phone number, ID number, name or one-time code
in clear, whichever way the customer or the bot said it; only the slots the rules read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from quality.broker import InspectionEventBroker, RasaTurns
from quality.events import CALL, customer_ref
from quality.publisher import StreamPublisher
from quality.store import SqlEventStore
from tests.quality.scripts import CUSTOMER_KEY, Script

PHONE, ID_NUMBER, NAME, CODE = "13812345678", "110101199003074514", "张伟", "482913"
CUSTOMER_ID = "CUST-20250001"


def stored_bytes(path: Path) -> str:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT conversation_id, source, kind, data FROM quality_events ORDER BY id").fetchall()
    return "\n".join(" ".join(map(str, row)) for row in rows)


async def test_personal_data_in_texts_and_slots_never_reaches_the_store(tmp_path: Path) -> None:
    database = tmp_path / "events.sqlite3"
    broker = await InspectionEventBroker.from_endpoint_config(None, env={
        "QUALITY_EVENTS_URL": f"sqlite:///{database}", "TRACKER_STORE_KEY": "test-only-tracker-store-key"})
    script = (Script("chat-pii").session_starts()
              .user(f"你好，我叫{NAME}", intent="greet").bot("您好").listen()
              .user(f"我叫{NAME}，手机{PHONE}，身份证{ID_NUMBER}").wait(1)
              .slot("phone_number", PHONE).slot("customer_name", NAME)
              .slot("requested_slot", "otp_code").bot(f"验证码已发送到{PHONE}").listen()
              .slot("requested_slot", "customer_name").bot("请输入您的真实姓名。").listen()
              .wait(5).user(NAME, intent="nlu_fallback", confidence=0.4)  # a bare name: nothing to mask by shape
              .slot("requested_slot", "otp_code").bot(f"验证码已发送到{PHONE}").listen()
              .wait(20).user(CODE, intent="inform")  # the bare code, answering the code question
              .slot("otp_code", CODE).slot("customer_id", CUSTOMER_ID).slot("verified_level", "L2")
              .slot("requested_slot", None).listen())
    for item in script.items:
        assert isinstance(item, dict)
        broker.publish(item)
    assert broker.writer.flush()
    await broker.close()

    stored = stored_bytes(database)
    for secret in (PHONE, ID_NUMBER, NAME, CODE, CUSTOMER_ID, "20250001"):
        assert secret not in stored
    assert f'"value": "{customer_ref(CUSTOMER_ID, CUSTOMER_KEY)}"' in stored  # the key is the deployment's
    assert "138****5678" in stored and "我叫张*" in stored  # masked, still readable for a reviewer
    assert stored.count("[redacted]") == 3  # the answers to identity questions lost their text
    assert '"value": "L2"' in stored  # a slot the rules read keeps its value


def test_what_the_bot_says_on_a_call_is_masked_and_keys_are_never_stored(tmp_path: Path) -> None:
    database = tmp_path / "events.sqlite3"
    calls = StreamPublisher(SqlEventStore(f"sqlite:///{database}"), CALL)
    calls.publish("call-pii", "bot_said", 1.0, {"text": f"我们将回拨{PHONE}", "interruptible": True})
    calls.publish("call-pii", "key", 2.0, {})
    assert calls.writer.flush()
    calls.close()
    stored = stored_bytes(database)
    assert PHONE not in stored and "138****5678" in stored
    assert "call-pii call key {}" in stored


def test_a_turn_that_hands_the_chat_to_a_person_is_released_without_a_next_turn() -> None:
    """A chat handed to an agent ends its turn with Rasa's pause, not action_listen: its events
    (the customer's words that raised an alert) go to the inspection at once."""
    turns = RasaTurns(CUSTOMER_KEY)
    conversation = {"sender_id": "c-handed-over", "timestamp": 1.0}
    held = [turns.feed({**conversation, "event": "user", "text": "我真的走投无路了",
                        "parse_data": {"intent": {"name": "distress", "confidence": 1.0}}, "metadata": {}}),
            turns.feed({**conversation, "event": "action", "name": "action_distress"}),
            turns.feed({**conversation, "event": "bot", "text": "听到您这么说，我很担心您。", "data": {}})]
    assert held == [[], [], []], "held until the turn ends"
    released = turns.feed({**conversation, "event": "pause"})
    assert [event.kind for event in released] == ["user", "action", "bot", "pause"]
    assert released[0].data["text"] == "我真的走投无路了"
