"""Scripted chat and voice conversations replayed through the stream as the broker and the
gateway publish them: which rules fire, live (the hits as events arrive) and in the score."""

from __future__ import annotations

from quality.rules import FlowFacts, Inspector, load_rules
from tests.quality.scripts import Script, inspect, rules_fired, stream, verified_bill_chat


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
    assert rules_fired(inspector, "call-agitated") == ["loudness_rising", "fast_speech"]


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
