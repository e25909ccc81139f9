"""The day's figures from a seeded set of conversations, against counts made by hand."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date

from quality.events import customer_key, customer_ref
from quality.figures import daily_figures, figures_csv, metric_families
from tests.quality.scripts import CUSTOMER_KEY, START, Script, inspect, stream, verified_bill_chat
from tests.quality.seeded_day import (
    barge_in_call,
    empty_chat,
    failed_identity_chat,
    plain_call,
    silent_then_transfer_call,
    transfer_chat,
)


def seeded_day() -> list[Script]:
    """Hand count, 2026-01-01 (Asia/Shanghai): 12 conversations (an empty chat does not count).
    - 6 chats verify (L1) and hear their bill: 21 s each, contained, identity passed;
    - 2 chats ask for a person and get one: 4 s each ("客户要求人工");
    - 1 chat fails identity and is handed over: 11 s ("身份核验未通过");
    - 3 calls: 10.8 s contained; 10.8 s contained with a barge-in; 15.8 s with a 9 s caller
      silence, handed over ("客户要求人工", told by both the bot and the call's control).
    Low confidence: "嗯那个啥" and "额度" once each (in calls); the chat's "嗯那个啥" answered the
    name question, so its text was never stored.
    Plus one chat on 2026-01-02."""
    scripts = [verified_bill_chat(f"verified-{n}", customer=f"C-{n}") for n in range(6)]
    scripts += [transfer_chat(f"transfer-{n}", START) for n in range(2)]
    scripts += [failed_identity_chat("not-verified", START), empty_chat("empty", START)]
    scripts += [plain_call("call-plain", START), barge_in_call("call-barge", START),
                silent_then_transfer_call("call-quiet", START)]
    scripts.append(verified_bill_chat("next-day", start=START + 86400, customer="C-0"))  # verified-0 back
    return scripts


def test_figures_of_a_seeded_day_match_the_hand_count() -> None:
    first, second = daily_figures(inspect(*seeded_day()).conversations.values(), "Asia/Shanghai", top=10)
    assert (first.day, second.day, second.conversations) == (date(2026, 1, 1), date(2026, 1, 2), 1)
    assert (first.conversations, first.contained, first.handovers) == (12, 8, 4)
    assert (first.containment_rate, first.handover_rate) == (0.6667, 0.3333)
    assert first.handover_reasons == [("客户要求人工", 3), ("身份核验未通过", 1)]
    assert (first.identity_checks, first.identity_passed, first.identity_pass_rate) == (7, 6, 0.8571)
    assert first.average_handling_seconds == round((6 * 21 + 2 * 4 + 11 + 10.8 + 10.8 + 15.8) / 12, 1)  # 15.2
    assert (first.voice_calls, first.barge_in_rate, first.silence_rate) == (3, 0.3333, 0.3333)
    assert first.low_confidence == [("嗯那个啥", 1), ("额度", 1)]
    # Six verified customers; C-0 came back the next day (within 48 h): five resolved at first contact.
    assert (first.identified, first.resolved_first_contact, first.first_contact_resolution) == (6, 5, 0.8333)
    assert (second.identified, second.resolved_first_contact) == (1, 1)


def test_a_customer_back_after_the_window_was_resolved_at_first_contact() -> None:
    scripts = [verified_bill_chat("a-first", customer="C-A"), verified_bill_chat("a-again", START + 3600, "C-A"),
               verified_bill_chat("b-once", customer="C-B"), verified_bill_chat("c-first", customer="C-C"),
               verified_bill_chat("c-much-later", START + 49 * 3600, "C-C")]
    first, later = daily_figures(inspect(*scripts).conversations.values(), "Asia/Shanghai", top=10,
                                 repeat_within_hours=48)
    assert (first.identified, first.resolved_first_contact, first.first_contact_resolution) == (4, 3, 0.75)
    assert (later.identified, later.resolved_first_contact) == (1, 1)
    narrower = daily_figures(inspect(*scripts).conversations.values(), "Asia/Shanghai", top=10,
                             repeat_within_hours=0.5)[0]
    assert narrower.resolved_first_contact == 4  # an hour later is no longer "came back"


def test_the_stream_keeps_the_verified_customer_only_as_a_digest() -> None:
    [slot] = [event for event in stream(verified_bill_chat("digest", customer="C-123456"))
              if event.kind == "slot" and event.data.get("name") == "customer_id"]
    assert slot.data["value"].startswith("c-") and "123456" not in slot.data["value"]
    assert slot.data["value"] == customer_ref("C-123456", CUSTOMER_KEY) != customer_ref("C-123457", CUSTOMER_KEY)
    assert customer_ref("C-123456", customer_key("another deployment's key")) != slot.data["value"]


def test_the_csv_has_one_row_per_day_with_the_reasons_spelt_out() -> None:
    days = daily_figures(inspect(*seeded_day()).conversations.values(), "Asia/Shanghai", top=10)
    rows = list(csv.DictReader(io.StringIO(figures_csv(days))))
    assert [row["date"] for row in rows] == ["2026-01-01", "2026-01-02"]
    assert rows[0]["containment_rate"] == "0.6667" and rows[0]["average_handling_seconds"] == "15.2"
    assert rows[0]["handover_reasons"] == "客户要求人工=3; 身份核验未通过=1"
    assert (rows[0]["identified_conversations"], rows[0]["first_contact_resolution"]) == ("6", "0.8333")


def test_metrics_carry_todays_figures_and_the_rule_hits() -> None:
    inspector = inspect(*seeded_day())
    today = daily_figures(inspector.conversations.values(), "Asia/Shanghai", top=10)[0]
    families = metric_families(today, Counter({("caller_silence", "minor"): 1}), 0, 99, 14)
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in families for sample in family.samples}
    assert samples[("quality_today_containment_rate", ())] == 0.6667
    assert samples[("quality_rule_hits_total", (("rule", "caller_silence"), ("severity", "minor")))] == 1
    assert samples[("quality_today_handovers_by_reason", (("reason", "客户要求人工"),))] == 3
    assert samples[("quality_events_consumed_total", ())] == 99


def test_the_knowledge_base_entries_that_answered_are_counted_per_day() -> None:
    fee = [Script(f"fee-{n}").session_starts().user("提前还要手续费吗").wait(1)
           .bot("以您的借款合同为准。", knowledge="early_repayment.fee").listen() for n in range(3)]
    both = (Script("both").session_starts().user("逾期会上征信吗").wait(1)
            .bot("逾期记录会报送征信。", knowledge="credit_report.overdue").user("那提前还呢").wait(1)
            .bot("以您的借款合同为准。", knowledge="early_repayment.fee").listen())
    unanswered = Script("none").session_starts().user("查账单").wait(1).bot("好的").listen()
    [day] = daily_figures(inspect(*fee, both, unanswered).conversations.values(), "Asia/Shanghai", top=10)
    assert day.knowledge_answers == [("early_repayment.fee", 4), ("credit_report.overdue", 1)]
    [row] = csv.DictReader(io.StringIO(figures_csv([day])))
    assert row["knowledge_answers"] == "early_repayment.fee=4; credit_report.overdue=1"
    assert daily_figures(inspect(*fee).conversations.values(), "Asia/Shanghai", top=1)[0].knowledge_answers == [
        ("early_repayment.fee", 3)]


def test_questions_the_knowledge_base_did_not_answer_are_grouped_by_their_nearest_entry() -> None:
    near = [Script(f"near-{n}").session_starts().user("提前还那个费用到底咋弄").wait(1)
            .bot(knowledge_nearest="early_repayment.fee").bot("抱歉，我没太理解您的意思。").listen() for n in range(2)]
    other = (Script("other").session_starts().user("征信那个事").wait(1)
             .bot(knowledge_nearest="credit_report.overdue").bot("抱歉，我没太理解您的意思。").listen())
    answered = (Script("answered").session_starts().user("提前还要手续费吗").wait(1)
                .bot("以您的借款合同为准。", knowledge="early_repayment.fee").listen())
    [day] = daily_figures(inspect(*near, other, answered).conversations.values(), "Asia/Shanghai", top=10)
    assert day.unanswered_by_entry == [("early_repayment.fee", 2), ("credit_report.overdue", 1)]
    assert day.knowledge_answers == [("early_repayment.fee", 1)]
    [row] = csv.DictReader(io.StringIO(figures_csv([day])))
    assert row["unanswered_by_entry"] == "early_repayment.fee=2; credit_report.overdue=1"
