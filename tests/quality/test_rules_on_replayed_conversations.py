"""Scripted chat and voice conversations replayed through the stream as the broker and the
gateway publish them: which rules fire, live (the hits as events arrive) and in the score."""

from __future__ import annotations

import pytest

from flowspec.model import RIGHT_PARTY, repository_flowset
from flowspec.templates import render
from quality.rules import FlowFacts, Inspector, load_rules
from tests.quality.scripts import START, Script, inspect, rules_fired, stream, verified_bill_chat


def clean_call(conversation_id: str = "call-clean") -> Script:
    return (Script(conversation_id, channel="voice").call_opens().wait(1.5)
            .caller_says("我想查一下账单", seconds=1.8)
            .bot_answers("好的，请问您的姓名？").wait(2)
            .caller_says("我叫张伟", seconds=1.0, intent="inform")
            .wait(0.5).slot("verified_level", "L1")
            .bot_answers("您第3期账单应还1200元").bot(flow="bill_inquiry", outcome="answer").listen()
            .wait(2).call("call_ended", reason="caller hung up"))


def test_a_clean_chat_conversation_fires_no_rule_and_scores_100() -> None:
    inspector = inspect(verified_bill_chat("chat-clean"))
    conversation = inspector.conversations["chat-clean"]
    assert rules_fired(inspector, "chat-clean") == []
    assert inspector.score(conversation) == {"conversation_id": "chat-clean", "score": 100, "broken": [], "hits": []}


def test_a_clean_phone_call_fires_no_rule() -> None:
    inspector = inspect(clean_call())
    assert rules_fired(inspector, "call-clean") == []
    assert inspector.conversations["call-clean"].voice


def test_an_account_answer_before_identity_is_a_critical_hit_when_it_happens() -> None:
    script = (Script("chat-leak").session_starts().user("查账单").wait(1)
              .bot("您第3期账单应还1200元").bot(flow="bill_inquiry", outcome="answer").listen())
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    live = [(event.kind, [hit.rule for hit in inspector.feed(event)]) for event in stream(script)]
    assert ("bot", ["identity_before_detail"]) in live  # on the outcome signal itself
    score = inspector.score(inspector.conversations["chat-leak"])
    assert score["broken"] == ["identity_before_detail"] and score["score"] == 60
    assert score["hits"][0]["severity"] == "critical"


def test_a_flow_without_identity_may_answer_anyone() -> None:
    script = Script("chat-howto").user("怎么还款", intent="how_to_repay").bot("您可以在App还款").bot(
        flow="how_to_repay", outcome="answer").listen()
    assert rules_fired(inspect(script), "chat-howto") == []


def test_forbidden_phrases_in_bot_or_agent_text_are_caught() -> None:
    script = (verified_bill_chat("chat-agent").wait(30).user("我还不上了")
              .bot(live_agent={"state": "message", "name": "王芳", "text": "你这个老赖，再不还就上门催收", "seq": 1})
              .bot("放心，我们保证不上征信").listen())
    hits = inspect(script).conversations["chat-agent"].hits
    assert [(hit.rule, hit.detail) for hit in hits] == [
        ("forbidden_phrase", "threat：上门催收"), ("forbidden_phrase", "insult：老赖"),
        ("forbidden_phrase", "misleading_credit：保证不上征信")]


def test_a_call_where_the_caller_is_heard_before_the_recording_notice_is_flagged() -> None:
    script = (Script("call-no-notice", channel="voice")
              .call("call_started", channel="voice", priority_tier="normal", queue_returns=0, known_caller=False)
              .caller_says("查账单", seconds=1.0).call("call_ended", reason="caller hung up"))
    assert rules_fired(inspect(script), "call-no-notice") == ["recording_notice"]


def test_a_call_back_from_the_queue_already_heard_the_notice() -> None:
    script = (Script("call-requeued", channel="voice")
              .call("call_started", channel="voice", priority_tier="normal", queue_returns=1, known_caller=True)
              .call("key").call("call_ended", reason="caller hung up"))
    assert rules_fired(inspect(script), "call-requeued") == []


def test_long_silences_on_either_side_are_flagged() -> None:
    script = (Script("call-silent", channel="voice").call_opens()
              .wait(9).caller_says("查账单", seconds=1.0)  # the caller kept quiet 9 s (limit 8)
              .bot_answers("好的", after=6.0))  # the bot took 6 s to answer (limit 5)
    hits = inspect(script).conversations["call-silent"].hits
    assert [(hit.rule, hit.detail) for hit in hits] == [("caller_silence", "客户静默 9.0 秒"),
                                                        ("bot_silence", "机器人静默 6.0 秒")]


def test_the_bot_asking_again_after_a_no_input_timeout_counts_as_caller_silence() -> None:
    script = Script("call-away", channel="voice").call_opens().wait(8.5).call("bot_started_speaking")
    assert rules_fired(inspect(script), "call-away") == ["caller_silence"]


def test_the_third_barge_in_of_a_call_is_flagged_once() -> None:
    script = Script("call-overtalk", channel="voice").call_opens()
    for _ in range(4):
        script.call("bot_started_speaking").wait(0.5).call("barge_in", cause="speech").caller_says("不是", 0.5)
    assert rules_fired(inspect(script), "call-overtalk") == ["repeated_barge_in"]


def test_fast_and_louder_speech_is_flagged_but_a_calm_caller_is_not() -> None:
    calm = Script("call-calm", channel="voice").call_opens().caller_says("我想问一下这个月的账单是多少", 3.0)
    agitated = (Script("call-agitated", channel="voice").call_opens()
                .caller_says("查账单", 1.0, level=-30.0).bot_answers("好的")
                .caller_says("你们这个月账单怎么又多扣了我两百块钱", 2.0, level=-15.0))
    inspector = inspect(calm, agitated)
    assert rules_fired(inspector, "call-calm") == []
    assert rules_fired(inspector, "call-agitated") == ["loudness_rising", "fast_speech", "anger"]


def test_anger_is_heard_in_a_loud_and_fast_utterance_without_any_angry_word() -> None:
    shouted = (Script("call-shouted", channel="voice").call_opens()
               .caller_says("查一下账单", 1.5, level=-30.0).bot_answers("好的")
               .caller_says("为什么这个月又多扣了两百", 1.6, level=-20.0))
    loud_but_slow = (Script("call-loud", channel="voice").call_opens()
                     .caller_says("查一下账单", 1.5, level=-30.0).bot_answers("好的")
                     .caller_says("为什么这个月又多扣了两百", 3.0, level=-20.0))
    fast_but_calm = (Script("call-quick", channel="voice").call_opens()
                     .caller_says("查一下账单", 1.5, level=-30.0).bot_answers("好的")
                     .caller_says("为什么这个月又多扣了两百", 1.6, level=-27.0))
    inspector = inspect(shouted, loud_but_slow, fast_but_calm)
    assert "anger" in rules_fired(inspector, "call-shouted")
    [anger] = [hit for hit in inspector.conversations["call-shouted"].hits if hit.rule == "anger"]
    assert anger.detail == "语气激动：音量升高 10 dB，语速 7.5 字/秒" and anger.severity == "major"
    assert "anger" not in rules_fired(inspector, "call-loud") + rules_fired(inspector, "call-quick")


def test_anger_and_distress_words_in_the_customers_messages() -> None:
    script = (Script("chat-upset").user("什么破服务，气死我了").bot("抱歉").listen()
              .user("我真的活不下去了").bot("请别着急").listen())
    inspector = inspect(script)
    assert rules_fired(inspector, "chat-upset") == ["anger", "distress"]
    assert inspector.rules.alerts("critical") and not inspector.rules.alerts("major")


def test_asking_for_a_person_twice_without_a_hand_over_is_flagged() -> None:
    ignored = (Script("chat-ignored").user("转人工", intent="transfer_to_agent").bot("请问您要办理什么业务？").listen()
               .user("我要人工客服", intent="transfer_to_agent").bot("请问您要办理什么业务？").listen()
               .user("找人工", intent="transfer_to_agent").bot("请问您要办理什么业务？").listen())
    answered = (Script("chat-answered").user("转人工", intent="transfer_to_agent")
                .bot("正在为您转接", handoff={"flow": "transfer_to_agent", "reason": "客户要求人工"}).listen()
                .user("好的", intent="affirm"))
    inspector = inspect(ignored, answered)
    assert rules_fired(inspector, "chat-ignored") == ["transfer_ignored"]
    assert rules_fired(inspector, "chat-answered") == []


def test_the_same_request_failing_twice_is_flagged() -> None:
    script = (verified_bill_chat("chat-failing").user("我要提前还款", intent="early_repayment")
              .bot(flow="early_repayment", outcome="refused").listen()
              .user("再试一次提前还款", intent="early_repayment")
              .bot(flow="early_repayment", outcome="refused").listen())
    assert rules_fired(inspect(script), "chat-failing") == ["request_failed_twice"]


# --- outbound calls: the legal calling hours, and nothing of the debt before the right party ---

FLOWS = repository_flowset()
CUSTOMER = {"customer": {"salutation": "杨先生"}}
OPENING = render(FLOWS.flows["overdue_reminder"].raw["outbound_opening"]["voice"], CUSTOMER, voice=True)
HOUR = 3600.0  # START is 08:00 in the customer's zone


def outbound_call(conversation_id: str, start: float = START + 2 * HOUR, opening: str = OPENING,
                  timezone: str | None = None) -> Script:
    """The dialler's call as the gateway opens it: the notice, the flow's opening (the right-party
    question), the engine on the `outbound` channel."""
    return (Script(conversation_id, start, channel="outbound").call_opens(timezone)
            .user("/overdue_reminder", intent="overdue_reminder").slot("channel", "outbound")
            .slot("requested_slot", RIGHT_PARTY).bot_answers(opening))


def test_a_clean_outbound_call_fires_nothing() -> None:
    script = (outbound_call("out-clean").wait(1).caller_says("是我", 0.8, intent="affirm")
              .slot(RIGHT_PARTY, "confirmed").slot("requested_slot", "customer_name").bot_answers("请问您的全名？")
              .caller_says("杨明", 0.8, intent="inform").slot("verified_level", "L1").slot("requested_slot", None)
              .bot_answers("您本期账单已逾期2天，应还1200元，请问今天方便还款吗？")
              .bot(flow="overdue_reminder", outcome="answer").listen().wait(2).call("call_ended", reason="hangup"))
    inspector = inspect(script)
    assert rules_fired(inspector, "out-clean") == []
    assert inspector.conversations["out-clean"].outbound


def test_debt_detail_before_the_right_party_is_confirmed_is_a_critical_hit_when_said() -> None:
    script = outbound_call("out-leak", opening="您好，您在我司的借款已逾期，请问是杨先生本人吗？")
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    live = [(event.source, event.kind, [hit.rule for hit in inspector.feed(event)]) for event in stream(script)]
    # On the engine's message itself (the gateway's `bot_said` of the same words does not count it twice).
    assert [entry for entry in live if entry[2]] == [("rasa", "bot", ["third_party_debt"])]
    hit = inspector.conversations["out-leak"].hits[0]
    assert hit.severity == "critical" and inspector.rules.alerts(hit.severity) and "逾期" in hit.detail


def test_a_third_party_hears_the_neutral_message_but_an_agents_debt_talk_is_flagged() -> None:
    third_party = FLOWS.right_party
    neutral = (outbound_call("out-third-party").caller_says("他不在，我是他老婆", 1.5, intent="deny")
               .slot(RIGHT_PARTY, "third_party").slot("requested_slot", "recall_allowed")
               .bot_answers(render(third_party.slots["recall_allowed"].prompt.voice, CUSTOMER, voice=True))
               .caller_says("可以", 0.6, intent="affirm")
               .bot_answers(render(third_party.responses["third_party"].voice, CUSTOMER, voice=True)))
    told = (outbound_call("out-told").caller_says("他不在，我是他老婆", 1.5, intent="deny")
            .slot(RIGHT_PARTY, "third_party")
            .bot(live_agent={"state": "message", "name": "王芳", "text": "你让他赶紧还钱，已经欠了三个月了", "seq": 1}))
    inspector = inspect(neutral, told)
    assert rules_fired(inspector, "out-third-party") == []
    assert rules_fired(inspector, "out-told") == ["third_party_debt"]


def test_an_inbound_caller_may_hear_debt_words_before_any_right_party_check() -> None:
    script = (Script("call-inbound", channel="voice").call_opens().caller_says("我逾期了怎么办", 1.5)
              .bot_answers("逾期后请尽快还款，以免产生罚息。"))
    assert rules_fired(inspect(script), "call-inbound") == []


@pytest.mark.parametrize(("local_hour", "fires"), [
    (-0.01, True),  # 07:59:24
    (0.0, False),  # 08:00
    (12.99, False),  # 20:59:24
    (13.0, True),  # 21:00: the legal hours end
    (14.5, True),  # 22:30
])
def test_an_outbound_call_outside_the_legal_hours_is_a_critical_hit_at_its_start(local_hour: float,
                                                                                 fires: bool) -> None:
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    events = stream(outbound_call("out-hours", start=START + local_hour * HOUR))
    first = inspector.feed(events[0])  # call_started
    for event in events[1:]:
        assert "outbound_window" not in [hit.rule for hit in inspector.feed(event)], "once, at the start"
    assert [hit.rule for hit in first] == (["outbound_window"] if fires else [])
    if fires:
        assert first[0].severity == "critical"


@pytest.mark.parametrize(("timezone", "beijing_hour", "fires", "shown"), [
    ("Asia/Urumqi", 1.0, True, "07:00（Asia/Urumqi）"),  # 09:00 in Beijing is 07:00 in Urumqi
    ("Asia/Urumqi", 13.5, False, None),  # 21:30 in Beijing, 19:30 there
    ("Europe/London", 13.5, False, None),  # 13:30 in London (winter)
    ("Mars/Olympus", 13.5, True, "21:30（Asia/Shanghai）"),  # a zone no one knows: China's
])
def test_an_outbound_call_keeps_the_legal_hours_of_the_customers_own_time_zone(
        timezone: str, beijing_hour: float, fires: bool, shown: str | None) -> None:
    inspector = Inspector(load_rules(), FlowFacts.from_repository())
    first = inspector.feed(stream(outbound_call("out-zone", START + beijing_hour * HOUR, timezone=timezone))[0])
    assert [hit.rule for hit in first] == (["outbound_window"] if fires else [])
    if shown:
        assert shown in first[0].detail


def test_an_engine_only_outbound_conversation_is_checked_too_and_inbound_calls_at_night_are_not() -> None:
    night = START + 15 * HOUR  # 23:00
    engine_only = Script("out-engine", night, channel="outbound").user("/overdue_reminder", intent="overdue_reminder")
    inbound = Script("call-night", night, channel="voice").call_opens().caller_says("查账单", 1.0)
    inspector = inspect(engine_only, inbound)
    assert rules_fired(inspector, "out-engine") == ["outbound_window"]
    assert rules_fired(inspector, "call-night") == []
