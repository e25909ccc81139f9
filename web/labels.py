"""The desk's Chinese words for the codes the risk API stores with a hand-over: an agent reads
预约回电 · 高, never callback_request or `none`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from flowspec.model import repository_flowset

PRIORITIES = {"emergency": "紧急", "high": "高", "normal": "普通"}
CHANNELS = {"voice": "电话", "chat": "在线", "outbound": "外呼"}
# unknown: a call that left Asterisk's queue while the gateway could not see it (answered or
# abandoned is not known): the agent who took it, or a supervisor, takes it to close it.
STATES = {"waiting": "等待中", "accepted": "服务中", "closed": "已结束", "abandoned": "已放弃", "unknown": "去向未知"}
DISPOSITIONS = {"resolved": "已解决", "callback_booked": "已预约回电", "ticket": "已建工单", "escalated": "已升级处理"}
LEVELS = {"none": "未核身", "L1": "基本核身(L1)", "L2": "短信核身(L2)"}
# The flow engine hands over a question it could not place as flow "clarify" (bot/actions/handoff.py).
UNPLACED_FLOW = "clarify"
# A supervisor's take-over from the live quality board (risk_api/records.py TAKEOVER_FLOW).
TAKEOVER_FLOW = "quality_takeover"
# A customer in distress outside any flow (bot/actions/handoff.py care_for_distress).
DISTRESS_FLOW = "distress"
UNKNOWN = "其他"


@cache
def flow_names() -> dict[str, str]:
    """Every flow id a hand-over may carry, with its name from the flow files."""
    return {**{flow.id: flow.name for flow in repository_flowset().flows.values()}, UNPLACED_FLOW: "未识别的问题",
            TAKEOVER_FLOW: "质检告警接管", DISTRESS_FLOW: "情绪关怀（可能有危险）"}


@cache
def action_names() -> dict[str, str]:
    """Each risk action a review may hold, named by the flows that ask for it (two flows share
    reset_password: 重置登录密码/重置交易密码)."""
    names: dict[str, list[str]] = {}
    for flow in repository_flowset().flows.values():
        if flow.risk != "-":
            names.setdefault(flow.risk, []).append(flow.name)
    return {action: "/".join(flows) for action, flows in names.items()}


def handoff_for_desk(item: Mapping[str, Any]) -> dict[str, Any]:
    """What a desk card shows: Chinese words for the codes, the priority, state and channel codes
    only to style the card and offer 接起 or a reply; nothing else, session ids above all, reaches
    the browser."""
    return {"handoff_id": item.get("handoff_id"), "priority": item.get("priority"), "status": item.get("status"),
            "channel": item.get("channel"),
            "disposition_name": DISPOSITIONS.get(item.get("disposition") or "") if item.get("disposition") else None,
            "flow_name": flow_names().get(item.get("flow") or "", UNKNOWN),
            "priority_name": PRIORITIES.get(item.get("priority") or "", UNKNOWN),
            "channel_name": CHANNELS.get(item.get("channel") or "", UNKNOWN),
            "status_name": STATES.get(item.get("status") or "", UNKNOWN),
            # A hand-over before any verification stores no level, or "none": both are 未核身.
            "verified_name": LEVELS.get(item.get("verified_level") or "none", UNKNOWN),
            **{key: item.get(key) for key in ("customer_id", "masked_phone", "reason", "summary", "agent", "created_at",
                                              "accepted_at", "closed_at", "close_note", "customer_note",
                                              "waiting_seconds", "handling_seconds")}}


# The outbound campaigns page (supervisors): the dialler's codes in Chinese.
CAMPAIGN_STATES = {"active": "进行中", "paused": "已暂停", "stopped": "已停止", "refused": "名单有误",
                   "removed": "已移除", "unknown": "未排入"}
SERIES = {"active": "呼叫中", "answered": "已接通", "exhausted": "次数用完", "skipped": "已跳过", "removed": "已移除"}
CALL_RESULTS = {"answered": "接通", "no_answer": "无人接听", "busy": "忙线", "failed": "呼叫失败",
                "machine": "语音信箱", "unknown": "结果未知"}
CALL_OUTCOMES = {"completed": "完成", "paid": "已还款", "claims_paid": "称已还款（未查到）",
                 "promise_to_pay": "承诺还款", "refused": "拒绝", "callback_requested": "要求回电",
                 "handed_over": "转人工", "opted_out": "拒绝再来电", "third_party": "第三方接听",
                 "third_party_refused": "第三方拒绝", "wrong_number": "号码错误", "hung_up": "中途挂断"}
CALL_RULES = {"do_not_call": "免打扰", "third_party_refused": "第三方拒绝", "wrong_number": "号码错误",
              "not_selected": "已不在名单", "campaign_ended": "活动已结束", "unknown_timezone": "时区未知",
              "unknown_customer": "客户不存在", "campaign_not_started": "活动未开始", "blackout_date": "节假日",
              "calling_hours": "不在呼叫时段", "number_daily_limit": "号码当日次数已满",
              "campaign_daily_cap": "活动当日次数已满", "campaign_weekly_cap": "活动本周次数已满",
              "campaign_stopped": "活动已停止"}


def figures_for_desk(day: Any) -> Any:
    """A day of the inspection's figures with the dialler's skip rules in Chinese."""
    if not isinstance(day, dict):
        return day
    skipped = day.get("outbound_skipped")
    named = [[CALL_RULES.get(str(pair[0]), UNKNOWN), pair[1]] for pair in skipped
             if isinstance(pair, list) and len(pair) == 2] if isinstance(skipped, list) else []
    return {**day, "outbound_skipped": named}


def campaign_for_desk(item: Mapping[str, Any]) -> dict[str, Any]:
    """A campaign's row on the page: Chinese words for every code, the counts under them."""
    def named(counts: Any, words: Mapping[str, str]) -> list[list[Any]]:
        return [[words.get(str(code), UNKNOWN), int(count)] for code, count in dict(counts or {}).items()]

    return {"id": item.get("id"), "name": item.get("name"), "state": item.get("state"),
            "state_name": CAMPAIGN_STATES.get(str(item.get("state")), UNKNOWN),
            "flow_name": flow_names().get(str(item.get("flow")), UNKNOWN), "window": item.get("window"),
            "enabled": bool(item.get("enabled")), "error": item.get("error"), "selected_on": item.get("selected_on"),
            "series": named(item.get("series"), SERIES), "calls": named(item.get("calls"), CALL_RESULTS),
            "outcomes": named(item.get("outcomes"), CALL_OUTCOMES), "skipped": named(item.get("skipped"), CALL_RULES),
            "deferred": named(item.get("deferred"), CALL_RULES)}


# The live quality board (supervisors): the inspection's rules (ivr_config/quality/rules.yaml) and
# severities in Chinese.
QUALITY_RULES = {"caller_silence": "客户长时间沉默", "bot_silence": "机器人未应答", "repeated_barge_in": "客户多次插话",
                 "fast_speech": "客户语速过快", "loudness_rising": "客户音量升高", "anger": "客户情绪激动",
                 "distress": "客户情绪异常", "recording_notice": "未播放录音提示",
                 "identity_before_detail": "未核身即告知账户信息", "forbidden_phrase": "出现禁用语",
                 "transfer_ignored": "转人工请求被忽略", "request_failed_twice": "同一业务两次失败",
                 "outbound_window": "外呼时段违规", "outbound_number_cap": "同一号码当日未接通外呼超限",
                 "third_party_debt": "向第三方透露债务"}
SEVERITIES = {"critical": "严重", "major": "较重", "minor": "轻微"}


def alert_for_desk(item: Mapping[str, Any], conversation_ref: str) -> dict[str, Any]:
    """A live alert as the board shows it: the conversation by an opaque reference (its id, a
    chat's session, never reaches the browser), the rule and severity in Chinese."""
    return {"seq": item.get("seq"), "conversation": conversation_ref, "severity": item.get("severity"),
            "rule_name": QUALITY_RULES.get(str(item.get("rule")), "质检规则"),
            "severity_name": SEVERITIES.get(str(item.get("severity")), UNKNOWN),
            "detail": item.get("detail"), "at": item.get("at")}


CONVERSATION_CHANNELS = {"chat": "在线", "voice": "来电", "outbound": "外呼"}


def pending_for_desk(item: Mapping[str, Any], conversation_ref: str) -> dict[str, Any]:
    """A conversation awaiting review as the board lists it: by its opaque reference, in Chinese."""
    return {"conversation": conversation_ref, "severity": item.get("worst"),
            "severity_name": SEVERITIES.get(str(item.get("worst")), UNKNOWN),
            "channel_name": CONVERSATION_CHANNELS.get(str(item.get("channel")), UNKNOWN),
            "to_review": item.get("to_review"), "appealed": item.get("appealed"), "at": item.get("last_at"),
            "rule_names": [QUALITY_RULES.get(str(rule), "质检规则") for rule in item.get("rules") or []]}


# The review and appeal of a conversation's hits (quality/reviews.py), in Chinese.
REVIEW_STATES = {"open": "待复核", "confirmed": "已确认", "dismissed": "已撤销", "appealed": "申诉中",
                 "upheld": "申诉成立，已撤销", "rejected": "申诉驳回，维持"}
REVIEW_STEPS = {"review": "复核", "appeal": "申诉", "decision": "裁定"}
REVIEW_OUTCOMES = {"confirmed": "确认", "dismissed": "撤销", "appealed": "提出申诉", "upheld": "成立",
                   "rejected": "驳回"}


def hit_for_desk(item: Mapping[str, Any], name_of: Callable[[str], str]) -> dict[str, Any]:
    """A hit as the transcript view shows it: its rule, severity and review state in Chinese, and
    each step with who took it (`name_of`: a login's display name), when and why."""
    return {"hit": item.get("hit"), "severity": item.get("severity"), "state": item.get("state"),
            "rule_name": QUALITY_RULES.get(str(item.get("rule")), "质检规则"),
            "severity_name": SEVERITIES.get(str(item.get("severity")), UNKNOWN),
            "state_name": REVIEW_STATES.get(str(item.get("state")), UNKNOWN),
            "detail": item.get("detail"), "at": item.get("at"),
            "steps": [{"step_name": REVIEW_STEPS.get(str(step.get("step")), UNKNOWN),
                       "outcome_name": REVIEW_OUTCOMES.get(str(step.get("outcome")), UNKNOWN),
                       "by_name": name_of(str(step.get("by"))), "at": step.get("at"), "reason": step.get("reason")}
                      for step in item.get("steps") or [] if isinstance(step, Mapping)]}
