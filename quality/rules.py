"""The inspection rules (ivr_config/quality/rules.yaml and phrases.yaml), checked event by event
as the stream goes: each conversation keeps a small state, each event may produce hits.

Which rule reads what (quality/events.py names the events):
- caller_silence / bot_silence: the call's speaking events (bot stopped → caller or bot again;
  caller stopped or keyed → bot started);
- repeated_barge_in, fast_speech, loudness_rising: `barge_in`, `caller_utterance`,
  `caller_stopped_speaking`;
- anger, distress: the customer's messages; forbidden_phrase: the bot's and the agents' texts;
- recording_notice: a voice call's `bot_said` before the caller is heard;
- identity_before_detail: a flow's outcome signal against the `verified_level` slot and the
  flow's declared `identity:` level;
- outbound_window: the moment a conversation shows it is an outbound call (the dialler's
  `dial_placed`, answered or not; else `call_started` or the engine's `channel`), against the
  dialler's legal calling hours in the customer's time zone (the event's `timezone`, from the risk
  API; else China's);
- outbound_number_cap: the dialler's `dial_placed` carrying its number's keyed digest (never the
  number), against the unanswered calls already placed to that number on the customer's local day
  (over every campaign): the legal cap the dialler enforces (outbound/compliance.py);
- third_party_debt: an outbound call's bot and agent texts until the `right_party` slot
  says `confirmed`;
- transfer_ignored: requests for a person not followed by a hand-over before the next message;
- request_failed_twice: a flow's failing outcomes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.redaction import REDACTED
from flowspec.model import LEVELS, RIGHT_PARTY, repository_flowset
from ivr_config.loader import load_yaml
from outbound.compliance import (
    DEFAULT_TIMEZONE,
    LEGAL_END,
    LEGAL_MAX_UNANSWERED_PER_NUMBER_PER_DAY,
    LEGAL_START,
    timezone_of,
)
from quality.events import CALL, CUSTOMER_SLOT, DIALLER, StreamEvent

CONFIG_DIR = Path(__file__).resolve().parent.parent / "ivr_config" / "quality"
RULES_PATH = CONFIG_DIR / "rules.yaml"
SEVERITIES = ("minor", "major", "critical")
SILENCE_RULES = ("caller_silence", "bot_silence")
# What ends the wait for the caller, and what starts the wait for the bot.
_CALLER_HEARD = {"caller_started_speaking", "key"}
_CALLER_DONE = {"caller_stopped_speaking", "key"}
OUTBOUND_CHANNEL = "outbound"
RIGHT_PARTY_CONFIRMED = "confirmed"
MACHINE = "machine"  # an outbound call an answering machine took (the dialler's `dial_result`)


@dataclass(frozen=True)
class RuleSet:
    points: dict[str, int]
    alert_at: str
    rules: dict[str, dict[str, Any]]
    forbidden: dict[str, list[str]]
    debt_detail: list[str]
    anger: list[str]
    distress: list[str]
    figures: dict[str, Any]

    def on(self, rule: str) -> dict[str, Any] | None:
        settings = self.rules[rule]
        return settings if settings.get("enabled", True) else None

    def alerts(self, severity: str) -> bool:
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.alert_at)


def load_rules(path: Path | str = RULES_PATH) -> RuleSet:
    """The rules and their word lists; ConfigError naming the file and field otherwise."""
    path = Path(path)
    data = load_yaml(path, CONFIG_DIR / "rules.schema.json")
    phrases = load_yaml(path.parent / data["phrases"], CONFIG_DIR / "phrases.schema.json")
    return RuleSet(data["severities"], data["alert_at"], data["rules"], phrases["forbidden"], phrases["debt_detail"],
                   phrases["anger"], phrases["distress"], data["figures"])


@dataclass(frozen=True)
class FlowFacts:
    """What the rules need of the flows: each flow's identity level, and the identity slots."""

    levels: dict[str, str]
    identity_slots: frozenset[str]

    @classmethod
    def from_repository(cls) -> FlowFacts:
        flows = repository_flowset()
        return cls({flow_id: flow.required_level for flow_id, flow in flows.flows.items()},
                   frozenset(slot.name for slot in flows.identity_slots))


@dataclass(frozen=True)
class Hit:
    conversation_id: str
    rule: str
    severity: str
    at: float
    detail: str
    event_id: int

    def as_dict(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id, "rule": self.rule, "severity": self.severity,
                "at": self.at, "detail": self.detail, "event_id": self.event_id}


@dataclass
class Conversation:
    id: str
    first_at: float
    last_at: float
    voice: bool = False
    outbound: bool = False
    right_party: str | None = None
    customer_spoke: bool = False
    hits: list[Hit] = field(default_factory=list)
    handoff_reasons: list[str] = field(default_factory=list)
    identity_asked: bool = False
    verified_level: str = "none"
    customer: str | None = None  # the verified customer's digest (quality/events.py)
    barge_ins: int = 0
    low_confidence: list[str] = field(default_factory=list)
    knowledge: list[str] = field(default_factory=list)  # entries of the knowledge base that answered
    unanswered_near: list[str] = field(default_factory=list)  # entries nearest the questions it did not answer
    dial_result: str | None = None  # an outbound call the dialler placed: placed, then answered, busy…
    dial_skipped: str | None = None  # an attempt the dialler skipped for good: the rule that skipped it
    # Rule state.
    notice_heard: bool = False
    caller_awaited_since: float | None = None
    bot_awaited_since: float | None = None
    first_level: float | None = None
    level_rise: float | None = None  # the last utterance's dB over the caller's first one
    transfer_pending: bool = False
    transfers_ignored: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def fired(self, rule: str) -> bool:
        return any(hit.rule == rule for hit in self.hits)

    @property
    def identity_passed(self) -> bool:
        return LEVELS.index(self.verified_level) >= LEVELS.index("L1")


def _zone(name: str) -> tuple[str, ZoneInfo]:
    """The customer's time zone by name; China's for a name the tz database does not know."""
    zone = timezone_of(name)
    return (name, zone) if zone is not None else (DEFAULT_TIMEZONE, ZoneInfo(DEFAULT_TIMEZONE))


class Inspector:
    def __init__(self, rules: RuleSet, flows: FlowFacts) -> None:
        self.rules = rules
        self.flows = flows
        self.conversations: dict[str, Conversation] = {}
        # The outbound calls placed to each number (its keyed digest) on each local day.
        self.dials_by_number: dict[tuple[str, date], list[Conversation]] = {}

    def feed(self, event: StreamEvent) -> list[Hit]:
        """The hits this event makes (already added to its conversation)."""
        conversation = self.conversations.get(event.conversation_id)
        if conversation is None:
            conversation = self.conversations[event.conversation_id] = Conversation(
                event.conversation_id, event.at, event.at)
        conversation.first_at = min(conversation.first_at, event.at)
        conversation.last_at = max(conversation.last_at, event.at)
        if event.source == CALL:
            found = self._call(conversation, event)
        elif event.source == DIALLER:
            found = self._dial(conversation, event)
        else:
            found = self._rasa(conversation, event)
        hits = [Hit(conversation.id, rule, self.rules.rules[rule]["severity"], event.at, detail, event.id)
                for rule, detail in found]
        conversation.hits.extend(hits)
        return hits

    def score(self, conversation: Conversation) -> dict[str, Any]:
        lost = sum(self.rules.points[hit.severity] for hit in conversation.hits)
        return {"conversation_id": conversation.id, "score": max(0, 100 - lost),
                "broken": sorted({hit.rule for hit in conversation.hits}),
                "hits": [hit.as_dict() for hit in conversation.hits]}

    def forget_before(self, at: float) -> list[str]:
        """Forget the conversations whose last event is older than `at` (retention); their ids."""
        gone = [c.id for c in self.conversations.values() if c.last_at < at]
        for conversation_id in gone:
            del self.conversations[conversation_id]
        for key, placed in list(self.dials_by_number.items()):
            kept = [c for c in placed if c.last_at >= at]
            if kept:
                self.dials_by_number[key] = kept
            else:
                del self.dials_by_number[key]
        return gone

    # --- the dialler's events -----------------------------------------------------------

    def _dial(self, conversation: Conversation, event: StreamEvent) -> list[tuple[str, str]]:
        """A call placed is checked against the legal hours and the number's daily cap when it
        leaves, whether or not anyone answers (the answered call's own events follow under the same
        conversation id). A skipped attempt only counts, by its rule."""
        if event.kind == "dial_placed":
            # The dialplan's answering machine may be stored first (the dialler publishes the dial
            # once Asterisk answered the Originate): it stays.
            conversation.dial_result = conversation.dial_result or "placed"
            zone_name = str(event.data.get("timezone") or DEFAULT_TIMEZONE)
            return (self._outbound(conversation, event.at, zone_name)
                    + self._number_cap(conversation, event.at, zone_name, str(event.data.get("number") or "")))
        if event.kind == "dial_result" and conversation.dial_result != MACHINE:
            conversation.dial_result = str(event.data.get("result") or "unknown")  # never undoes a machine
        elif event.kind == "dial_skipped":
            conversation.dial_skipped = str(event.data.get("rule") or "skipped")
        return []

    def _number_cap(self, conversation: Conversation, at: float, zone_name: str,
                    number: str) -> list[tuple[str, str]]:
        """Placed to a number that already had the legal maximum of unanswered calls that local day
        (a call still ringing counts as unanswered, as the dialler counts it)."""
        if not number:
            return []
        zone_name, zone = _zone(zone_name)
        placed = self.dials_by_number.setdefault((number, datetime.fromtimestamp(at, zone).date()), [])
        unanswered = sum(other.dial_result != "answered" for other in placed if other is not conversation)
        if all(other is not conversation for other in placed):  # by identity, not field by field
            placed.append(conversation)
        if unanswered < LEGAL_MAX_UNANSWERED_PER_NUMBER_PER_DAY:
            return []
        return self._once(conversation, "outbound_number_cap",
                          f"该号码当日（{zone_name}）已有 {unanswered} 次未接通外呼，"
                          f"上限 {LEGAL_MAX_UNANSWERED_PER_NUMBER_PER_DAY} 次")

    # --- the phone gateway's call events ------------------------------------------------

    def _call(self, conversation: Conversation, event: StreamEvent) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        kind, data, at = event.kind, event.data, event.at
        conversation.voice = True
        if kind == "call_started":
            if data.get("queue_returns"):
                conversation.notice_heard = True  # back from the queue: it heard the notice when it began
            if data.get("channel") == OUTBOUND_CHANNEL:
                found += self._outbound(conversation, at, str(data.get("timezone") or DEFAULT_TIMEZONE))
        elif kind == "bot_said":
            notice = self.rules.rules["recording_notice"]["phrase"]
            conversation.notice_heard = conversation.notice_heard or notice in str(data.get("text", ""))
            found += self._said(conversation, str(data.get("text", "")))
        if kind in _CALLER_HEARD | {"call_ended"} and not conversation.notice_heard:
            found += self._once(conversation, "recording_notice", "录音提示未播放")
        if kind in _CALLER_HEARD:
            conversation.customer_spoke = True
        found += self._silences(conversation, kind, at)
        if kind == "barge_in":
            conversation.barge_ins += 1
            rule = self.rules.on("repeated_barge_in")
            if rule and conversation.barge_ins == rule["count"]:
                found.append(("repeated_barge_in", f"{conversation.barge_ins} 次打断"))
        elif kind == "caller_utterance":
            rule = self.rules.on("fast_speech")
            rate, characters = data.get("characters_per_second"), data.get("characters") or 0
            if rule and rate and rate > rule["characters_per_second"] and characters >= rule["min_characters"]:
                found += self._once(conversation, "fast_speech", f"语速 {rate} 字/秒")
            found += self._raised_voice(conversation, rate)
        elif kind == "caller_stopped_speaking" and data.get("level_dbfs") is not None:
            level = float(data["level_dbfs"])
            if conversation.first_level is None:
                conversation.first_level = level
            conversation.level_rise = level - conversation.first_level
            rule = self.rules.on("loudness_rising")
            if rule and conversation.level_rise >= rule["decibels"]:
                found += self._once(conversation, "loudness_rising", f"音量升高 {conversation.level_rise:.0f} dB")
        elif kind == "control_handoff":
            self._handed_over(conversation, str(data.get("reason") or "未注明"))
        return found

    def _silences(self, conversation: Conversation, kind: str, at: float) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        caller, bot = self.rules.on("caller_silence"), self.rules.on("bot_silence")
        waited = conversation.caller_awaited_since
        if waited is not None and kind in _CALLER_HEARD | {"bot_started_speaking", "call_ended"}:
            conversation.caller_awaited_since = None
            if caller and at - waited > caller["seconds"]:
                found.append(("caller_silence", f"客户静默 {at - waited:.1f} 秒"))
        waited = conversation.bot_awaited_since
        if waited is not None and kind in {"bot_started_speaking", "caller_started_speaking", "call_ended"}:
            conversation.bot_awaited_since = None
            if bot and kind == "bot_started_speaking" and at - waited > bot["seconds"]:
                found.append(("bot_silence", f"机器人静默 {at - waited:.1f} 秒"))
        if kind == "bot_stopped_speaking":
            conversation.caller_awaited_since = at
        elif kind in _CALLER_DONE:
            conversation.bot_awaited_since = at
        return found

    # --- Rasa's events ------------------------------------------------------------------

    def _rasa(self, conversation: Conversation, event: StreamEvent) -> list[tuple[str, str]]:
        data = event.data
        if event.kind == "user":
            conversation.customer_spoke = True
            if data.get("channel") in ("voice", OUTBOUND_CHANNEL):
                conversation.voice = True
            found = self._outbound(conversation, event.at) if data.get("channel") == OUTBOUND_CHANNEL else []
            return found + self._customer_message(conversation, data)
        if event.kind == "slot" and data.get("name") == "channel" and data.get("value") == OUTBOUND_CHANNEL:
            return self._outbound(conversation, event.at)
        if event.kind == "slot" and data.get("name") == RIGHT_PARTY:
            conversation.right_party = data.get("value")
        elif event.kind == "slot" and data.get("name") == CUSTOMER_SLOT and data.get("value"):
            conversation.customer = data["value"]
        elif event.kind == "slot" and data.get("name") == "verified_level":
            conversation.verified_level = data.get("value") or "none"
        elif event.kind == "slot" and data.get("name") == "requested_slot":
            conversation.identity_asked |= data.get("value") in self.flows.identity_slots
        elif event.kind == "bot":
            return self._bot_message(conversation, data)
        return []

    def _customer_message(self, conversation: Conversation, data: dict[str, Any]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        text = str(data.get("text") or "")
        confidence = data.get("confidence")
        if (text and text != REDACTED and not text.startswith("/") and isinstance(confidence, int | float)
                and confidence < self.rules.figures["low_confidence_below"]):
            conversation.low_confidence.append(text)
        for rule, words in (("anger", self.rules.anger), ("distress", self.rules.distress)):
            word = next((word for word in words if word in text), None)
            if word and self.rules.on(rule):
                found += self._once(conversation, rule, f"“{word}”")
        transfer = self.rules.on("transfer_ignored")
        if transfer:
            if conversation.transfer_pending:
                conversation.transfers_ignored += 1
                if conversation.transfers_ignored == transfer["count"]:
                    found.append(("transfer_ignored", f"{conversation.transfers_ignored} 次转人工未响应"))
            conversation.transfer_pending = (data.get("intent") == transfer["intent"]
                                             or any(phrase in text for phrase in transfer["phrases"]))
        return found

    def _bot_message(self, conversation: Conversation, data: dict[str, Any]) -> list[tuple[str, str]]:
        found = self._said(conversation, str(data.get("text") or ""))
        found += self._said(conversation, str((data.get("agent") or {}).get("text") or ""))
        if data.get("handoff"):
            self._handed_over(conversation, str(data["handoff"].get("reason") or "未注明"))
        if data.get("knowledge"):
            conversation.knowledge.append(str(data["knowledge"]))
        if data.get("knowledge_nearest"):
            conversation.unanswered_near.append(str(data["knowledge_nearest"]))
        outcome, flow = data.get("outcome"), str(data.get("flow") or "")
        detail_rule, failing = self.rules.on("identity_before_detail"), self.rules.on("request_failed_twice")
        required = self.flows.levels.get(flow, "none")
        if (detail_rule and outcome in detail_rule["detail_outcomes"]
                and LEVELS.index(conversation.verified_level) < LEVELS.index(required)):
            found.append(("identity_before_detail", f"{flow} 需 {required}，当前 {conversation.verified_level}"))
        if failing and outcome in failing["outcomes"]:
            conversation.failures[flow] += 1
            if conversation.failures[flow] == failing["count"]:
                found.append(("request_failed_twice", f"{flow} {conversation.failures[flow]} 次失败（{outcome}）"))
        return found

    # --- shared -------------------------------------------------------------------------

    def _outbound(self, conversation: Conversation, at: float,
                  zone_name: str = DEFAULT_TIMEZONE) -> list[tuple[str, str]]:
        """The conversation turned out to be an outbound call: was it placed within the legal hours
        of the customer's local time? (A zone the tz database does not know counts as China's.)"""
        if conversation.outbound:
            return []
        conversation.outbound = True
        zone_name, zone = _zone(zone_name)
        local = datetime.fromtimestamp(at, zone).time()
        if LEGAL_START <= local < LEGAL_END:
            return []
        return self._once(conversation, "outbound_window",
                          f"外呼时间 {local:%H:%M}（{zone_name}），不在 {LEGAL_START:%H:%M}-{LEGAL_END:%H:%M}")

    def _said(self, conversation: Conversation, text: str) -> list[tuple[str, str]]:
        """What the bot or an agent said: forbidden phrases, and debt detail to whoever answered
        an outbound call before the right party was confirmed."""
        found = self._forbidden(text)
        if text and conversation.outbound and conversation.right_party != RIGHT_PARTY_CONFIRMED:
            word = next((word for word in self.rules.debt_detail if word in text), None)
            if word:
                found += self._once(conversation, "third_party_debt",
                                    f"未确认本人前提及“{word}”（{conversation.right_party or '未回答'}）")
        return found

    def _forbidden(self, text: str) -> list[tuple[str, str]]:
        if not text or not self.rules.on("forbidden_phrase"):
            return []
        return [("forbidden_phrase", f"{category}：{phrase}") for category, phrases in self.rules.forbidden.items()
                for phrase in phrases if phrase in text]

    def _raised_voice(self, conversation: Conversation, rate: float | None) -> list[tuple[str, str]]:
        """Anger heard rather than said: one utterance both louder than the caller's first and
        fast (a shouted complaint often holds no word of the lexicon, and a recogniser may miss it)."""
        anger = self.rules.on("anger")
        prosody = anger.get("prosody") if anger else None
        rise = conversation.level_rise
        if (not prosody or not rate or rise is None
                or rise < prosody["decibels"] or rate < prosody["characters_per_second"]):
            return []
        return self._once(conversation, "anger", f"语气激动：音量升高 {rise:.0f} dB，语速 {rate} 字/秒")

    def _once(self, conversation: Conversation, rule: str, detail: str) -> list[tuple[str, str]]:
        return [] if conversation.fired(rule) or not self.rules.on(rule) else [(rule, detail)]

    @staticmethod
    def _handed_over(conversation: Conversation, reason: str) -> None:
        conversation.transfer_pending = False
        if reason not in conversation.handoff_reasons[-1:]:  # the call's control repeats the bot's signal
            conversation.handoff_reasons.append(reason)

