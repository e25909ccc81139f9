"""Hand-over to a human: one mechanism for every flow and channel.

The customer hears the flow's handoff wording; the channel receives a `handoff` payload
(flow, reason, priority tier, Chinese summary) and acts on it — the web widget shows the
transfer, the phone gateway redirects the call into the agent queue —; the risk API keeps
the record the agent desk lists.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from rasa_sdk.events import ConversationPaused

from bot.actions.conversation import Turn, flowset, higher_priority, risk_client
from bot.actions.risk_client import RiskApiRefused, RiskApiUnavailable
from flowspec.model import Flow
from flowspec.slot_types import SLOT_TYPES
from flowspec.templates import format_value

log = logging.getLogger("flow")
LEVEL_TEXT = {"L2": "已完成短信验证码核验", "L1": "已完成基本身份核验", "none": "未核验身份"}
CHANNEL_TEXT = {"voice": "电话", "outbound": "外呼回访", "chat": "在线客服"}
OUTCOME_TEXT = {
    "answer": "已为客户解答",
    "answered": "客户只是咨询，已按知识库解答，未办理",
    "done": "已办理完成",
    "cancelled": "客户取消了办理",
    "review": "已提交人工审核",
    "step_up": "风控要求进一步核实身份",
    "deny": "风控拒绝办理",
    "refused": "不符合办理条件",
    "locked": "身份核验连续三次未通过，已锁定30分钟",
    "unavailable": "系统异常未能办理，账户无变更",
    "escalated": "办理中途客户要求转人工",
    "distress": "客户流露轻生或极端情绪，已安抚并告知求助热线，请立即接听关怀",
}
DISTRESS_REASON = "客户可能有危险（轻生或极端情绪）"
UNPLACED = "clarify"  # the desk's "未识别的问题": a hand-over outside any flow
DISTRESS = "distress"  # the desk's "情绪关怀（可能有危险）": a customer in distress outside any flow
# What the agent's note says was asked, for a hand-over outside any flow (by its topic).
TOPIC_TEXT = {UNPLACED: "咨询未识别的问题", DISTRESS: "联系，流露出轻生或极端情绪"}



def _mask(value: str) -> str:
    return value if len(value) <= 4 else "*" * (len(value) - 4) + value[-4:]


def slot_details(flow: Flow | None, turn: Turn) -> str:
    """The flow's answered slots as an agent reads them: 延期天数：2；新卡号：************6789."""
    details = []
    for slot in flow.slots if flow else ():
        value = turn.tracker.get_slot(slot.name)
        if value is None:
            continue
        label = slot.options.get("label", SLOT_TYPES[slot.type].label)
        if SLOT_TYPES[slot.type].masked:
            shown = _mask(str(value))
        elif slot.type == "choice":
            shown = next((c["say"] for c in slot.options["choices"] if c["value"] == value), str(value))
        else:
            shown = format_value(value)
        details.append(f"{label}：{shown}")
    return "；".join(details)


def _first_words(turn: Turn, flow_id: str | None) -> str:
    """The customer's own request that started this flow (or the latest message)."""
    texts = []
    for event in reversed(turn.tracker.events):
        if event.get("event") != "user":
            continue
        text = event.get("text") or ""
        if not text.startswith("/"):  # a button or keypad payload is not the customer's words
            texts.append(text)
        if flow_id and (event.get("parse_data") or {}).get("intent", {}).get("name") == flow_id:
            break
    return texts[-1] if texts else ""


def _earlier_requests(turn: Turn, flow_id: str | None) -> str:
    """What this conversation already handled before the flow being handed over, so the agent
    does not ask again (a caller who checked the bill, then asked for a person)."""
    handled = []
    for event in turn.tracker.events:
        custom = (event.get("data") or {}).get("custom") or {} if event.get("event") == "bot" else {}
        if custom.get("outcome") and custom.get("flow") not in (None, flow_id):
            earlier = flowset().flows.get(custom["flow"])
            name = earlier.name if earlier else custom["flow"]
            handled.append(f"「{name}」{OUTCOME_TEXT.get(custom['outcome'], custom['outcome'])}")
    return "，".join(dict.fromkeys(handled))


async def compose_summary(turn: Turn, flow: Flow | None, outcome: str, reason: str,
                          context: dict[str, Any], topic: str = UNPLACED) -> str:
    """The agent's note. Uses what the flow already read (customer, profile) before asking again."""
    customer = context.get("customer") or {}
    if "masked_name" not in customer:
        customer = await turn.customer_context()
    who = f"客户{customer['masked_name']}" if "masked_name" in customer else "客户"
    parts = [f"{who}（{LEVEL_TEXT[turn.verified_level]}）"]
    if turn.customer_id:
        try:
            profile = context.get("profile") or await risk_client().read(turn.customer_id, "profile", turn.session_id)
            parts.append(f"，{profile['repayment_record_text'].rstrip('。.')}")
        except (RiskApiUnavailable, RiskApiRefused, KeyError) as error:
            log.info("no repayment record for the summary: %s", error)
    asked = f"咨询「{flow.name}」" if flow else TOPIC_TEXT.get(topic, TOPIC_TEXT[UNPLACED])
    parts.append(f"。此次通过{CHANNEL_TEXT.get(turn.channel, turn.channel)}{asked}")
    words = _first_words(turn, flow.id if flow else None)
    if words:
        parts.append(f"，客户原话：“{words[:80]}”")
    details = slot_details(flow, turn)
    if details:
        parts.append(f"；{details}")
    earlier = _earlier_requests(turn, flow.id if flow else None)
    if earlier:
        parts.append(f"；此前已处理：{earlier}")
    parts.append(f"。处理结果：{OUTCOME_TEXT[outcome]}。转人工原因：{reason}。")
    return "".join(parts)


async def hand_off(turn: Turn, flow: Flow | None, outcome: str, reason: str, priority: str,
                   context: dict[str, Any], announce: bool = True, topic: str = UNPLACED) -> None:
    """Record the hand-over, tell the customer (unless already told), signal the channel. Outside
    a flow, `topic` names it for the desk (web/labels.py)."""
    tier = higher_priority(priority, turn.tracker.get_slot("priority_tier"))
    summary = await compose_summary(turn, flow, outcome, reason, context, topic)
    handoff: dict[str, Any] = {
        "flow": flow.id if flow else topic,
        "reason": reason,
        "priority": tier,
        "summary": summary,
        "channel": turn.channel,
    }
    record: dict[str, Any] = {}
    try:
        # The risk API files it on the session's verified customer (if any): not ours to name.
        record = await risk_client().post("/handoffs", {"session_id": turn.session_id, **handoff})
        handoff["handoff_id"] = record.get("handoff_id")
    except (RiskApiUnavailable, RiskApiRefused) as error:
        # The transfer must still happen: the channel carries the summary to the agent.
        log.error("handoff record not stored (session %s): %s", turn.log_ref, error)
    handoff["verified_level"] = turn.verified_level
    if turn.channel != "chat":
        if announce:
            turn.say(turn.response("handoff", flow), context, flow)
    elif record.get("agents_online"):
        if announce:
            turn.say(turn.response("handoff", flow), context, flow)
        _wait_for_agent(turn, handoff, record)
    else:
        # Nobody to wait for: a callback instead, and the bot goes on answering. The hand-over
        # still waits on the desk; an agent who claims it later joins the chat.
        turn.say(turn.response("agents_offline"), {})
        handoff["live"] = False
    log.info("flow=%s handoff priority=%s reason=%s", handoff["flow"], tier, reason)
    turn.signal({"handoff": handoff})


def _wait_for_agent(turn: Turn, handoff: dict[str, Any], record: dict[str, Any]) -> None:
    """The chat customer waits for a person: the bot stops answering (Rasa pauses the
    conversation) and the customer's messages wait for the agent who claims it."""
    handoff["live"] = True
    turn.events.append(ConversationPaused())
    position, wait = record.get("position"), record.get("estimated_wait_seconds")
    if isinstance(position, int) and isinstance(wait, int | float):
        turn.say(turn.response("queue_place"), {"queue": {"ahead": max(0, position - 1),
                                                          "minutes": max(1, math.ceil(wait / 60))}})


async def care_for_distress(turn: Turn, flow: Flow | None, context: dict[str, Any]) -> None:
    """A customer who may be in danger (the `distress` intent): whatever was under way stops, they
    hear that someone cares and where help is (flows/shared/intents.yml), and a person takes over
    at the highest priority, their flow's or not."""
    turn.say(flowset().shared_intents["distress"].response, context)  # type: ignore[arg-type]
    await hand_off(turn, flow, "distress", DISTRESS_REASON, "emergency", context, announce=False, topic=DISTRESS)


async def hand_off_unavailable(turn: Turn, flow: Flow, context: dict[str, Any]) -> None:
    """The risk API is down: nothing changed on the account, and a human takes over."""
    turn.say(turn.response("service_unavailable"), context)
    await hand_off(turn, flow, "unavailable", "风控系统暂时不可用", flow.handoff_priority, context, announce=False)
