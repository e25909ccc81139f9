"""The flow engine: runs any flow of `flows/` inside its Rasa form.

Three kinds of actions, generated for every flow and slot from the YAML:
- `validate_<flow>_form` (rasa-sdk's form validation action): reads the customer's answer,
  runs `validate_<type>` on it, verifies identity through the risk API when the identity
  slots are complete, notices escapes (转人工, 算了, another request), and names the next slot
  to ask — or none, which ends the form.
- `action_ask_<slot>`: asks for a slot with the active flow's prompt (filled from reads);
  the one-time-code prompt first has the risk API send the code.
- `action_finish_flow`: after the form, reads, asks the risk API to decide and act (or writes
  the record), answers, and hands off when the flow's `handoff.when` holds.

Identity is the risk API's verified session for this conversation (`Turn.start`), asked every
turn; the identity slots only carry what the customer said until the risk API has checked it.
When the session has ended (30 minutes) the engine asks again instead of failing.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeGuard

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from bot.actions.conversation import NOT_VERIFIED, Turn, flowset, level_rank, risk_client
from bot.actions.handoff import care_for_distress, hand_off, hand_off_unavailable, slot_details
from bot.actions.knowledge_answers import DIRECT_ANSWER_CONFIDENCE, consult_knowledge
from bot.actions.risk_client import RiskApiRefused, RiskApiUnavailable
from bot.actions.validators import Utterance, validate
from bot.metrics import record_nlu_confidence
from flowspec.model import (
    FLOW_STATE_SLOTS,
    L1_METHODS,
    RECALL_ALLOWED,
    RIGHT_PARTY,
    Branch,
    Condition,
    Flow,
    Response,
    Slot,
)
from flowspec.slot_types import SLOT_TYPES
from flowspec.templates import lookup
from knowledge.retrieval import Answer

log = logging.getLogger("flow")
CONFIRM_SLOT = "confirmed"
MAX_MISSES = 3
SWITCH_CONFIDENCE = 0.8
ASIDE_CONFIDENCE = 0.9
# A message that asks something (等一下，提前还要手续费吗): mid-flow, the knowledge base may answer it.
# 不对 / 说错了 / 卡号说错了, then the right answer: a correction of the answer given last.
CORRECTION = re.compile(r"^[^，,。]{0,6}?(不对|说错了|搞错了|弄错了|写错了|输错了|错了|更正一下|更正)[，,。 ]*")
# 继续 / 接着来 / 那继续吧 instead of an answer: the customer is ready to go on (after a side question).
CARRY_ON = re.compile(r"^[那好嗯的吧啊，,。 ]*(继续|接着)")
# 我不知道 / 忘了 / 没收到 instead of an answer: the slot's help, then the question again.
DONT_KNOW = re.compile(r"不知道|不清楚|不记得|记不得|记不清|忘了|忘记了|想不起|找不到|没收到|没有收到|收不到|没看到")
DONT_KNOW_MAX_CHARS = 16  # longer, it says something else (不知道为什么扣了两次款)
QUESTION = re.compile(r"[吗呢？?]|怎么|多少|多久|多长时间|什么|哪|几[天号点个]|是否"
                      r"|能不能|可不可以|是不是|有没有|要不要|为什么|如何")
# "我想提前还款，手续费怎么算": a request, then a question about it, in clauses of their own.
CLAUSES = re.compile(r"[，,。；;！!？?\s]+")
REQUEST = re.compile(r"^(我|请|麻烦)?(想|要|需要|打算|准备|申请|帮我|给我)")
# 能不能帮我减掉一部分利息 / 能给我一份合同吗: a request worded as a question.
ASKS_FOR_ACTION = re.compile(r"帮我|给我|帮忙|替我|为我")
# A flow's request that is one question ("提前还款要手续费吗", "注销账户要什么条件") from someone not yet
# verified for it: the knowledge base answers when it is this sure, and the flow is offered instead of
# asking for identity to answer a rule that is the same for everyone. At 0.89 (chosen on held-out text
# alone) 31 of the flows' own 496 one-question examples were answered instead, disputes among them
# (罚息怎么这么多); at 0.92, 4 (合同在哪下载, 还款多久到账…), none of the 223 held-out phrasings, and 10 of
# 73 validation questions the NLU sends to such a flow answered right, none wrong; `make bench`
# measures it on the test split (bench/knowledge.py).
QUESTION_ALONE_CONFIDENCE = 0.92
ANGRY = re.compile(r"垃圾|骗子|气死|太过分|什么破|搞什么|滚|投诉你们|坑人|恶心|[!！]{2,}")
# The risk API's L1 methods (flowspec.model.L1_METHODS): number, name and ID last 4; or, when the
# risk API offers it (a keypad-only call whose line the phone gateway vouched for), the call's line
# and ID last 6.
NAME_METHOD, LINE_METHOD = "phone_name_id4", "line_id6"
# What the channel's expectation of an answer carries from the slot's definition.
EXPECT_OPTIONS = ("length", "min_length", "max_length", "check_character")
# Asked again when the verified session has ended (the number stays: it is not a secret, and
# on the phone it is the line's own). The tracker store keeps ID digits and codes redacted.


@dataclass(frozen=True)
class FlowExit:
    """Why a form ends before its last question, kept in the `flow_exit` slot between the form's
    turn and the finish action (a slot holds text: `kind` or `kind:detail`)."""

    kind: Literal["cancel", "handoff", "switch", "unavailable", "handed_off", "distress", "answered"]
    detail: str = ""  # handoff: the reason the agent reads; switch: the flow to go to

    def encode(self) -> str:
        return f"{self.kind}:{self.detail}" if self.detail else self.kind

    @classmethod
    def decode(cls, text: str | None) -> FlowExit | None:
        if not text:
            return None
        kind, _, detail = text.partition(":")
        return cls(kind, detail)  # type: ignore[arg-type]


class ReverifyNeeded(Exception):
    """The risk API no longer knows this conversation at the level the flow needs."""


def looks_angry(text: str) -> bool:
    return bool(ANGRY.search(text))


def is_one_question(text: str) -> bool:
    """A question and nothing else: 提前还款要手续费吗, not 我想提前还款 nor 能帮我算一下…吗."""
    return (bool(QUESTION.search(text)) and not ASKS_FOR_ACTION.search(text)
            and not REQUEST.search(CLAUSES.split(text)[0]))


def answers_alone(answer: Answer | None) -> TypeGuard[Answer]:
    """The knowledge base is sure enough to answer a flow's request asked as one question."""
    return bool(answer and answer.text and not answer.flow and answer.confidence >= QUESTION_ALONE_CONFIDENCE)


def checks_right_party(flow: Flow, channel: str) -> bool:
    """An outbound call of a flow with an opening asks who answered before anything else
    (flows/shared/right_party.yml): the opening is its question."""
    return channel == "outbound" and "outbound_opening" in flow.raw


def slot_definition(flow: Flow, name: str) -> Slot:
    if name == CONFIRM_SLOT and flow.confirm:
        return Slot(CONFIRM_SLOT, "yes_no", flow.confirm)
    for slot in (*flowset().identity_slots, *flowset().right_party.slots.values(), *flow.slots):
        if slot.name == name:
            return slot
    raise KeyError(f"flow {flow.id} has no slot {name}")


def required_slots(flow: Flow, values: dict[str, Any], channel: str, l1_method: str) -> list[str]:
    """What the form still needs, in asking order; empty once it should finish. Identity is asked
    for `l1_method`'s answers (L1_METHODS), then the one-time code when the flow needs L2."""
    if values.get("flow_exit") or values.get("verification_locked") and flow.required_level != "none":
        return []
    check = flowset().right_party
    if channel == "outbound" and check.outcome(values):
        return []  # not the customer (third party, wrong number, opt-out): every flow ends with that
    if checks_right_party(flow, channel) and check.pending(values):
        return check.pending(values)  # nothing else until the customer is on the line
    needed = flow.required_level
    required = []
    if level_rank(values.get("verified_level")) < level_rank(needed):
        for slot in flowset().identity_slots:
            if slot.level and level_rank(slot.level) > level_rank(needed):
                continue
            if not slot.level and level_rank(values.get("verified_level")) >= level_rank("L1"):
                continue  # an L1 answer: the risk API already vouches for L1
            if not slot.level and slot.proves not in L1_METHODS[l1_method]:
                continue  # an answer of the other L1 method
            if slot.proves == "phone" and values.get("caller_number"):
                continue
            required.append(slot.name)
    required += [slot.name for slot in flow.slots if slot.asked_on(channel)]
    if flow.confirm:
        required.append(CONFIRM_SLOT)
    return [name for name in required if values.get(name) is None]


class FlowFormValidator(Action, ABC):
    """`validate_<flow>_form` for one flow; subclasses are generated below."""

    flow_id: str

    @abstractmethod
    def name(self) -> str: ...

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        flow = flowset().flows[self.flow_id]
        turn = await Turn.start(tracker, dispatcher)
        values: dict[str, Any] = dict(tracker.slots)
        events: list[EventType] = []

        def set_slot(name: str, value: Any) -> None:
            values[name] = value
            events.append(SlotSet(name, value))

        set_slot("active_flow", flow.id)
        self._take_identity(turn, flow, values, set_slot)
        l1_method = await self._l1_method(turn, flow, values)
        message = tracker.latest_message or {}
        text = (message.get("text") or "").strip()
        intent = (message.get("intent") or {}).get("name")
        confidence = float((message.get("intent") or {}).get("confidence") or 0.0)
        record_nlu_confidence(turn.channel, message)
        requested = values.get("requested_slot")

        if requested is None:  # the form is starting: nothing has been asked yet
            set_slot("reprompts", 0)
            set_slot("flow_exit", None)
            self._prefill(flow, text, intent, values, set_slot)
            if await self._question_alone(turn, flow, text, values):
                set_slot("flow_exit", FlowExit("answered").encode())
            else:
                await self._question_with_the_request(turn, flow, text)
        elif requested:
            escape = self._escape(flow, requested, text, intent, confidence, turn.input_source)
            corrects = escape is not None and escape.kind in ("cancel", "switch")
            if corrects and self._correction(turn, flow, requested, text, set_slot):
                pass  # "不对，我叫…": the earlier answer corrected (not a 不对 that cancels), this question again
            elif corrects and self._dont_know(turn, flow, requested, text, intent, values, set_slot):
                pass  # 不知道 / 验证码没收到 read as a deny or another flow's request: the help, not an exit
            elif escape and escape.kind == "switch" and await self._side_question(turn, flow, requested, text, intent,
                                                                                 unanswered_counts=False):
                pass  # a question on another flow's topic, answered on the side: this flow goes on
            elif escape:
                set_slot("flow_exit", escape.encode())
            elif (intent == "repeat"
                  # before the shared asides: 我不知道 read as out_of_scope still gets this question's help
                  or self._dont_know(turn, flow, requested, text, intent, values, set_slot)
                  or self._aside(turn, intent, confidence, requested)
                  or self._carry_on(turn, flow, requested, text, intent)
                  or self._correction(turn, flow, requested, text, set_slot)
                  or await self._side_question(turn, flow, requested, text, intent)):
                pass  # the form asks the same question again
            else:
                await self._take_answer(turn, flow, requested, text, intent, values, set_slot, l1_method)
                if requested == RIGHT_PARTY and values.get(RIGHT_PARTY):
                    # Who answered, for the channel: a call that ends now still knows (the dialler's outcome).
                    turn.signal({"flow": flow.id, "party": values[RIGHT_PARTY]})

        if not turn.identity.known and flow.required_level != NOT_VERIFIED and not values.get("flow_exit"):
            set_slot("flow_exit", FlowExit("unavailable").encode())  # nobody can be verified while the risk API is down
        missing = required_slots(flow, values, turn.channel, l1_method)
        set_slot("requested_slot", missing[0] if missing else None)
        log.info("flow=%s session=%s next=%s", flow.id, turn.log_ref, values["requested_slot"])
        return events

    @staticmethod
    def _take_identity(turn: Turn, flow: Flow, values: dict[str, Any], set_slot: Any) -> None:
        """The slots' copy of identity from the risk API; whatever they said before is replaced."""
        if not turn.identity.known:
            return
        claimed = values.get("verified_level")
        if level_rank(claimed) > level_rank(turn.verified_level):
            # The session ended (or the slots were never true): the answers must be given again.
            for name in flowset().reverify_slot_names:
                set_slot(name, None)
            if values.get("requested_slot") and flow.required_level != NOT_VERIFIED:
                wording = flowset().identity_flow
                turn.say(wording.responses["reverify"], {}, wording)
        level = turn.verified_level if turn.customer_id else None
        for name, value in (("customer_id", turn.customer_id), ("verified_level", level)):
            if values.get(name) != value:
                set_slot(name, value)

    @staticmethod
    async def _l1_method(turn: Turn, flow: Flow, values: dict[str, Any]) -> str:
        """How this conversation proves L1: by its call's line when the risk API offers that (the
        phone gateway vouched for the line of a keypad-only call), else by number, name and ID
        last 4. A chat has no line: the risk API is not asked."""
        if (turn.channel == "chat" or not turn.identity.known or flow.required_level == NOT_VERIFIED
                or level_rank(values.get("verified_level")) >= level_rank("L1")):
            return NAME_METHOD
        try:
            offered = await risk_client().l1_methods(turn.session_id, turn.channel)
        except (RiskApiUnavailable, RiskApiRefused) as error:
            # The stricter questions; verifying asks the risk API again and ends the form if it is down.
            log.warning("flow=%s session=%s L1 methods unknown: %s", flow.id, turn.log_ref, error)
            return NAME_METHOD
        return LINE_METHOD if LINE_METHOD in offered else NAME_METHOD

    def _prefill(self, flow: Flow, text: str, intent: str | None, values: dict[str, Any],
                 set_slot: Any) -> None:
        said = Utterance(text, intent, flowset().banks, answering=False)
        for slot in flow.slots:
            if SLOT_TYPES[slot.type].prefillable and values.get(slot.name) is None:
                value = validate(slot, said)
                if value is not None:
                    set_slot(slot.name, value)

    @staticmethod
    async def _question_alone(turn: Turn, flow: Flow, text: str, values: dict[str, Any]) -> bool:
        """"提前还款要手续费吗" starting a flow that would first ask for identity: the knowledge base's
        answer when it is sure (`answers_alone`), and the flow is offered, not started (the finish
        action offers it). Every question from a customer already verified for the flow is the flow's
        (it answers for them in person)."""
        if (flow.required_level == NOT_VERIFIED or checks_right_party(flow, turn.channel)
                or level_rank(values.get("verified_level")) >= level_rank(flow.required_level)
                or not is_one_question(text)):
            return False
        answer = (await consult_knowledge(text, turn.channel)).answer
        if not answers_alone(answer):
            return False
        turn.say_knowledge(answer)
        return True

    @staticmethod
    async def _question_with_the_request(turn: Turn, flow: Flow, text: str) -> None:
        """"我想提前还款，手续费怎么算": the question the request came with, answered from the
        knowledge base when it is sure, before the flow's first step (the request is still carried
        out). Only a request clause followed by a question clause (one question alone is
        `_question_alone`'s), and never in a flow without identity (its answer is for everyone).
        Never before the right party is on the line."""
        clauses = [clause for clause in CLAUSES.split(text) if clause]
        if (flow.required_level == NOT_VERIFIED or len(clauses) < 2 or not REQUEST.search(clauses[0])
                or QUESTION.search(clauses[0])
                or not any(QUESTION.search(clause) for clause in clauses[1:])
                or checks_right_party(flow, turn.channel)):
            return
        answer = (await consult_knowledge(text, turn.channel)).answer
        if not answer or not answer.text or answer.flow or answer.confidence < DIRECT_ANSWER_CONFIDENCE:
            return
        turn.say_knowledge(answer)
        turn.say(turn.response("flow_after_answer"), {})

    def _escape(self, flow: Flow, requested: str, text: str, intent: str | None,
                confidence: float, input_source: str | None) -> FlowExit | None:
        """Why the customer leaves the form mid-way, if they do.

        A yes/no question answered yes or no is an answer, whatever else the words say
        ("需要，转人工吧" to "shall I register it and transfer you?").
        """
        if intent == "distress":
            return FlowExit("distress")  # before anything else: 不想活了 is no 不 to a yes/no question
        slot = slot_definition(flow, requested)
        answers = validate(slot, Utterance(text, intent, flowset().banks)) is not None
        right_party = requested in flowset().right_party.slots
        if (slot.type == "yes_no" or right_party) and answers:
            return None  # 不是 to 请问是X先生本人吗 is an answer, not a deny that cancels
        if intent == "transfer_to_agent" and confidence >= SWITCH_CONFIDENCE:
            # One wording for every way into a transfer, from transfer_to_agent's flow file.
            return FlowExit("handoff", flowset().flows["transfer_to_agent"].handoff.reason_for(input_source))
        if flow.handoff and Condition("anger") in flow.handoff.when and looks_angry(text):
            return FlowExit("handoff", "客户情绪激动")
        if confidence >= SWITCH_CONFIDENCE and intent in ("goodbye", "deny"):
            return FlowExit("cancel")
        if intent in flowset().flows and intent != flow.id and confidence >= SWITCH_CONFIDENCE and not answers \
                and not right_party:
            return FlowExit("switch", intent)  # not before the right party is on the line: flow names say too much
        return None

    def _aside(self, turn: Turn, intent: str | None, confidence: float, requested: str) -> bool:
        """A question on the side (你是机器人吗): answer it, then ask again. Not out_of_scope before
        the customer is on the line: its answer lists the account services (查账单, 还款)."""
        if intent == "out_of_scope" and requested in flowset().right_party.slots:
            return False
        shared = flowset().shared_intents.get(intent or "")
        if shared and shared.response and confidence >= ASIDE_CONFIDENCE and intent != "goodbye":
            turn.say(shared.response, {})
            return True
        return False

    @staticmethod
    def _correction(turn: Turn, flow: Flow, requested: str, text: str, set_slot: Any) -> bool:
        """"不对，我叫杨测戊" / "卡号说错了，是…" while the next question is asked: the answer given last
        (before this question) is replaced when the rest of the message is a valid answer to it, and
        the question is asked again. Not an identity answer once the risk API has verified any
        level (L1 on the way to L2 included), and not while a free-text answer is asked (anything is
        an answer to it)."""
        marker = CORRECTION.match(text)
        rest = text[marker.end():].strip() if marker else ""
        if not rest or slot_definition(flow, requested).type == "text":
            return False
        identity = {slot.name for slot in flowset().identity_slots}
        # Identity answers only until the risk API has verified any level with them: a name
        # "corrected" after L1 would be said corrected while the session stays verified as before.
        verified = level_rank(turn.tracker.get_slot("verified_level")) >= level_rank("L1")
        answerable = {*flow.slot_names, *(() if verified else identity)} - {requested}
        earlier = next((event["name"] for event in _since_the_form_began(turn.tracker.events, flow.form_name)
                        if event.get("event") == "slot" and event.get("name") in answerable
                        and event.get("value") is not None), None)
        if earlier is None:
            return False
        value = validate(slot_definition(flow, earlier), Utterance(rest, None, flowset().banks))
        if value is None:
            return False
        set_slot(earlier, value)
        turn.say(turn.response("corrected"), {})
        return True

    @staticmethod
    def _carry_on(turn: Turn, flow: Flow, requested: str, text: str, intent: str | None) -> bool:
        """"那继续吧" where an answer was expected: "we go on", and the question again (not "not
        understood"). To a yes/no question 继续 is an answer (the validator's to read)."""
        slot = slot_definition(flow, requested)
        if not CARRY_ON.search(text) or len(text) > 10 or slot.type == "yes_no":
            return False
        if validate(slot, Utterance(text, intent, flowset().banks)) is not None:
            return False
        turn.say(turn.response("resume_flow"), {})
        return True

    @staticmethod
    def _dont_know(turn: Turn, flow: Flow, requested: str, text: str, intent: str | None,
                   values: dict[str, Any], set_slot: Any) -> bool:
        """"我不知道" / "忘了" / "验证码没收到" where an answer was expected: the slot's `help` (where
        to find it; a code is sent again as its question is asked again), else the shared `no_help`,
        then the question again. It counts as a miss: a customer who cannot answer reaches a person
        after MAX_MISSES. A free-text answer may say 不知道 itself: only a text slot with a help
        reads it as not knowing."""
        slot = slot_definition(flow, requested)
        if (len(text) > DONT_KNOW_MAX_CHARS or not DONT_KNOW.search(text) or any(c.isdigit() for c in text)
                or (slot.type == "text" and slot.help is None)):
            return False
        if slot.type != "text" and validate(slot, Utterance(text, intent, flowset().banks)) is not None:
            return False
        misses = int(values.get("reprompts") or 0) + 1
        set_slot("reprompts", misses)
        if misses >= MAX_MISSES:
            set_slot("flow_exit", FlowExit("handoff", "客户无法提供所需信息").encode())
        else:
            turn.say(slot.help or turn.response("no_help", flow), {})
        return True

    async def _side_question(self, turn: Turn, flow: Flow, requested: str, text: str, intent: str | None,
                             unanswered_counts: bool = True) -> bool:
        """A question asked instead of an answer ("等一下，我先问下提前还要手续费吗" at the code
        step): the knowledge base's answer when it is sure, then "we go on", and the form asks its
        question again. Its answers are the same for everyone: identity is neither needed nor given.
        Not before the right party is on the line, not for an entry that is another flow's request
        (that is a switch), not for what answers the question. A question it cannot answer goes
        along as `knowledge_nearest`, as outside a flow (`unanswered_counts`: not when the message
        is another flow's request, which switches to it)."""
        if not QUESTION.search(text) or requested in flowset().right_party.slots:
            return False
        if validate(slot_definition(flow, requested), Utterance(text, intent, flowset().banks)) is not None:
            return False
        consulted = await consult_knowledge(text, turn.channel)
        answer = consulted.answer
        if not answer or not answer.text or answer.flow or answer.confidence < DIRECT_ANSWER_CONFIDENCE:
            if unanswered_counts and consulted.nearest and not (answer and answer.flow):
                turn.signal({"knowledge_nearest": consulted.nearest})
            return False
        turn.say_knowledge(answer)
        turn.say(turn.response("resume_flow"), {})
        return True

    async def _take_answer(self, turn: Turn, flow: Flow, requested: str, text: str,
                           intent: str | None, values: dict[str, Any], set_slot: Any, l1_method: str) -> None:
        slot = slot_definition(flow, requested)
        value = validate(slot, Utterance(text, intent, flowset().banks))
        if value is None:
            misses = int(values.get("reprompts") or 0) + 1
            set_slot("reprompts", misses)
            set_slot(requested, None)
            if misses >= MAX_MISSES:
                set_slot("flow_exit", FlowExit("handoff", "多次未能识别客户的回答").encode())
            else:
                turn.say(turn.response("not_understood_value"), {})
            return
        set_slot("reprompts", 0)
        set_slot(requested, value)
        shown = f"{requested}={value}" if SLOT_TYPES[slot.type].loggable else requested
        log.info("flow=%s slot=%s filled", flow.id, shown)
        try:
            await self._verify_if_ready(turn, flow, values, set_slot, l1_method)
        except RiskApiUnavailable:
            set_slot("flow_exit", FlowExit("unavailable").encode())

    async def _verify_if_ready(self, turn: Turn, flow: Flow, values: dict[str, Any],
                               set_slot: Any, l1_method: str) -> None:
        """Verify identity as soon as the identity slots for the next level are in."""
        wording = flowset().identity_flow
        slot = flowset().identity_slot  # the slot's name for each verification input
        level = values.get("verified_level")
        otp = values.get(slot("otp"))
        try:
            if level_rank(level) < level_rank("L1"):
                result = await self._verify_l1(turn, values, set_slot, l1_method)
                if result is None:
                    return
                if result["verified"]:
                    set_slot("customer_id", result["customer_id"])
                    set_slot("verified_level", "L1")
                    log.info("flow=%s session=%s verified L1 (%s)", flow.id, turn.log_ref, l1_method)
                    return
                self._failed(turn, wording, "verification_failed", result, set_slot)
            elif level == "L1" and otp:
                result = await risk_client().verify_l2(values["customer_id"], otp, turn.session_id, turn.channel)
                set_slot(slot("otp"), None)  # used once
                if result["verified"]:
                    set_slot("verified_level", "L2")
                    log.info("flow=%s session=%s verified L2", flow.id, turn.log_ref)
                    return
                self._failed(turn, wording, "otp_failed", result, set_slot)
        except RiskApiRefused as refusal:
            if refusal.code != "verification_locked":
                raise RiskApiUnavailable(str(refusal)) from refusal
            set_slot("verification_locked", True)

    @staticmethod
    async def _verify_l1(turn: Turn, values: dict[str, Any], set_slot: Any, l1_method: str) -> dict[str, Any] | None:
        """The risk API's answer to `l1_method`'s answers, once they are all in (None before). ID
        digits are used once: a new attempt asks again, and after a failure the name and a number
        the customer gave too (the call's own number stays)."""
        slot = flowset().identity_slot
        if l1_method == LINE_METHOD:
            id_last6 = values.get(slot("id_last6"))
            if not id_last6:
                return None
            result = await risk_client().verify_l1_line(id_last6, turn.session_id, turn.channel)
            set_slot(slot("id_last6"), None)
            return result
        phone = values.get(slot("phone")) or values.get("caller_number")
        name, id_last4 = values.get(slot("name")), values.get(slot("id_last4"))
        if not (phone and name and id_last4):
            return None
        result = await risk_client().verify_l1(phone, name, id_last4, turn.session_id, turn.channel)
        set_slot(slot("id_last4"), None)
        if not result["verified"]:
            for answered in (slot("name"), *(() if values.get("caller_number") else (slot("phone"),))):
                set_slot(answered, None)
        return result

    @staticmethod
    def _failed(turn: Turn, wording: Flow, key: str, result: dict[str, Any], set_slot: Any) -> None:
        if result.get("locked_until") or not result.get("attempts_left"):
            set_slot("verification_locked", True)
            return
        turn.say(wording.responses[key], {"verification": result}, wording)


class AskSlot(Action, ABC):
    """`action_ask_<slot>`: the active flow's prompt for one slot."""

    slot_name: str

    @abstractmethod
    def name(self) -> str: ...

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        turn = await Turn.start(tracker, dispatcher)
        flow = flowset().flows[tracker.get_slot("active_flow")]
        slot = slot_definition(flow, self.slot_name)
        # Asked again after an answer not understood (or "I don't know"): in other words, when it has them.
        prompt = slot.reprompt if slot.reprompt and tracker.get_slot("reprompts") else slot.prompt
        try:
            if slot.name in flowset().right_party.slots:
                # Whoever answered may not be the customer: whom we call (X先生/女士), nothing else.
                context = {"customer": await turn.called_customer()}
                if slot.name == RIGHT_PARTY and not tracker.get_slot("reprompts"):
                    prompt = Response.from_yaml(flow.raw["outbound_opening"])
            else:
                identity = {s.name for s in flowset().identity_slots}
                context = await turn.context(flow, with_reads=slot.name not in identity)
            if slot.proves == "otp":
                context["otp"] = await risk_client().send_otp(turn.customer_id, turn.session_id, turn.channel)
        except RiskApiRefused as refusal:
            # Refused (too many codes sent, verification locked…): its message is for the
            # customer; a person takes over. The form ends on the next turn.
            log.warning("flow=%s cannot ask %s: %s", flow.id, slot.name, refusal.code)
            dispatcher.utter_message(text=refusal.message)
            await hand_off(turn, flow, "refused", refusal.message, flow.handoff_priority, {"flow_name": flow.name})
            return [SlotSet("flow_exit", FlowExit("handed_off").encode()), *turn.events]
        except RiskApiUnavailable as error:
            log.error("flow=%s cannot ask %s: %s", flow.id, slot.name, error)
            await hand_off_unavailable(turn, flow, {"flow_name": flow.name})
            return [SlotSet("flow_exit", FlowExit("handed_off").encode()), *turn.events]
        turn.say(prompt, context, flow)
        # `private`: an answer that proves who the customer is; the widget never keeps it.
        expect: dict[str, Any] = {"slot": slot.name, "type": slot.type, "private": slot.proves is not None}
        expect.update({key: slot.options[key] for key in EXPECT_OPTIONS if key in slot.options})
        if slot.type == "choice":
            expect["choices"] = len(slot.options["choices"])
        turn.signal({"flow": flow.id, "expect": expect})
        return []


class FinishFlow(Action):
    """`action_finish_flow`: everything after the form, for whichever flow just ran."""

    def name(self) -> str:
        return "action_finish_flow"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> list[EventType]:
        turn = await Turn.start(tracker, dispatcher)
        flow = flowset().flows[tracker.get_slot("active_flow")]
        escape = FlowExit.decode(tracker.get_slot("flow_exit"))
        per_flow = (*flow.slot_names, *FLOW_STATE_SLOTS)
        resets: list[EventType] = [SlotSet(name, None) for name in per_flow]
        if tracker.get_slot(RIGHT_PARTY) == "confirmed":
            # The subject that was confirmed for ends here: a later reminder asks who is on the line
            # again. Any other answer stays until the call ends (required_slots): nobody who said
            # 不是 gets a second chance to say 是 and hear the debt.
            resets += [SlotSet(RIGHT_PARTY, None), SlotSet(RECALL_ALLOWED, None)]
        if escape and escape.kind == "switch":
            target = flowset().flows[escape.detail]
            turn.say(turn.response("switch_flow"), {"flow_name": target.name})
            turn.signal({"flow": flow.id, "outcome": "switched"})
            return [*resets, FollowupAction(target.form_name)]
        try:
            outcome = await self._run_flow(turn, flow, escape)
        except ReverifyNeeded:
            # The customer's answers stay; identity is asked again, then the flow goes on.
            wording = flowset().identity_flow
            turn.say(wording.responses["reverify"], {}, wording)
            log.info("flow=%s session=%s verified session ended: asking again", flow.id, turn.log_ref)
            forgotten = (*flowset().reverify_slot_names, "customer_id", "verified_level")
            return [SlotSet("requested_slot", None), SlotSet("flow_exit", None),
                    *(SlotSet(name, None) for name in forgotten),
                    FollowupAction(flow.form_name)]
        log.info("flow=%s session=%s outcome=%s", flow.id, turn.log_ref, outcome)
        if outcome in flowset().right_party.responses:
            # Not the customer's call: nothing more is said, and the phone hangs up after the goodbye.
            turn.signal({"flow": flow.id, "outcome": outcome, "end_call": True})
            return [*resets, *turn.events]
        then = flow.continues_with(outcome)
        turn.signal({"flow": flow.id, "outcome": outcome, **({"then": then} if then else {})})
        return [*resets, *turn.events, *([FollowupAction(flowset().flows[then].form_name)] if then else [])]

    async def _run_flow(self, turn: Turn, flow: Flow, escape: FlowExit | None) -> str:
        base = {"flow_name": flow.name, "customer": {"salutation": "您"}}
        kind = escape.kind if escape else None
        if kind == "cancel":
            turn.say(turn.response("cancelled", flow), base, flow)
            return "cancelled"
        if escape and kind == "handoff":
            await hand_off(turn, flow, "escalated", escape.detail, flow.handoff_priority, base)
            return "handoff"
        if kind == "unavailable":
            await hand_off_unavailable(turn, flow, base)
            return "unavailable"
        if kind == "distress":
            await care_for_distress(turn, flow, base)
            return "handoff"
        if kind == "handed_off":
            return "handoff"
        if kind == "answered":
            # The question was answered from the knowledge base; the flow is one word (or button) away.
            offer = turn.response("offer_flow", flow)
            turn.say(replace(offer, buttons=({"title": flow.name, "payload": f"/{flow.id}"},)), base, flow)
            return "answered"
        check = flowset().right_party
        if turn.channel == "outbound" and (ended := check.outcome(turn.tracker.slots)):
            turn.say(check.responses[ended], base)  # not the customer: nothing more is said
            return ended
        if not turn.identity.known and flow.required_level != NOT_VERIFIED:
            await hand_off_unavailable(turn, flow, base)
            return "unavailable"
        if level_rank(turn.verified_level) < level_rank(flow.required_level):
            if not turn.tracker.get_slot("verification_locked"):
                raise ReverifyNeeded
            lock_flow = flowset().identity_flow
            turn.say(lock_flow.responses["locked"], base, lock_flow)
            # The identity flow's rule (`handoff.when: [verification_locked]`) decides, not the code.
            if self._hands_off(lock_flow, "verification_locked", base, turn):
                await hand_off(turn, flow, "locked", lock_flow.handoff.reason, lock_flow.handoff.priority, base,
                               announce=False)
            return "locked"
        try:
            context = await turn.context(flow)
            outcome = await self._outcome(turn, flow, context)
            turn.say(turn.response(outcome, flow), context, flow)
            if self._hands_off(flow, outcome, context, turn):
                await hand_off(turn, flow, outcome, flow.handoff.reason_for(turn.input_source), flow.handoff.priority,
                               context)
        except RiskApiRefused as refusal:
            if refusal.code == "verification_required" and not await _still_verified(turn, flow):
                raise ReverifyNeeded from refusal
            # Anything else the API refuses is not the customer's to fix by talking to a bot.
            log.error("flow=%s refused by the risk API: %s", flow.id, refusal.code)
            await hand_off_unavailable(turn, flow, base)
            return "unavailable"
        except RiskApiUnavailable:
            await hand_off_unavailable(turn, flow, base)
            return "unavailable"
        return outcome

    async def _outcome(self, turn: Turn, flow: Flow, context: dict[str, Any]) -> str:
        """Decide and act, or record; the key of the response to give."""
        if flow.confirm and turn.tracker.get_slot("confirmed") is False:
            return "cancelled"
        branch = next((branch for branch in flow.branches if _branch_holds(branch, context, turn)), None)
        if branch is not None:
            return branch.outcome
        api = risk_client()
        if flow.act_params is not None:
            params = {key: _param(value, context) for key, value in flow.act_params.items()}
            decision = await api.decide(turn.customer_id, flow.risk, params, turn.session_id, turn.channel)
            context["decision"] = decision
            if decision["decision"] != "allow":
                return decision["decision"]
            key = f"{turn.session_id}:{flow.id}:{_last_user_timestamp(turn.tracker)}"
            result = await api.act(turn.customer_id, flow.risk, decision["decision_id"], params,
                                   turn.session_id, turn.channel, key)
            context["result"] = {**result.get("result", {}), "message": result.get("message", "")}
            return {"done": "done", "refused": "refused", "pending_review": "review"}[result["status"]]
        if flow.record:
            try:
                context["result"] = await self._record(turn, flow, context)
            except RiskApiRefused as refusal:
                context["result"] = {"message": refusal.message}
                return "refused"
            return "done"
        return "answer"

    async def _record(self, turn: Turn, flow: Flow, context: dict[str, Any]) -> dict[str, Any]:
        """The risk API files it on the session's own customer: the engine never names one."""
        api = risk_client()
        common = {"session_id": turn.session_id, "channel": turn.channel}
        slots = {slot.name: turn.tracker.get_slot(slot.name) for slot in flow.slots}
        kind, _, ticket_kind = flow.record.partition(":")
        if kind == "ticket":
            summary = f"{flow.name}：{slot_details(flow, turn)}"
            return await api.post("/tickets", {"kind": ticket_kind, "summary": summary, "details": slots,
                                               **common})
        if kind == "promise":
            return await api.post(f"/customers/{turn.customer_id}/promises",
                                  {"date": slots.get("date"), "amount": slots.get("amount"), **common})
        if kind == "callback":
            # The line the call came in on (trusted channel metadata), else the number on file.
            caller = turn.tracker.get_slot("caller_number")
            return await api.post("/callbacks", {"preferred_time": slots.get("preferred_time"), **common,
                                                 **({"phone": caller} if caller else {})})
        return await api.post(f"/customers/{turn.customer_id}/preferences",
                              {"marketing_opt_out": True, **common})

    @staticmethod
    def _hands_off(flow: Flow, outcome: str, context: dict[str, Any], turn: Turn) -> bool:
        if not flow.handoff:
            return False
        for condition in flow.handoff.when:
            if (
                condition.kind == "always"
                or (condition.kind == "outcome" and condition.target == outcome)
                or (condition.kind in ("fact", "slot") and _holds(condition, context, turn))
            ):
                return True
        return False


async def _still_verified(turn: Turn, flow: Flow) -> bool:
    """Asked again after a refusal: a session that ended since the turn began means asking the
    customer again; one the risk API still vouches for means something else is wrong (a hand-over,
    not a loop of identity questions)."""
    now = await Turn.start(turn.tracker, turn.dispatcher, again=True)
    return not now.identity.known or level_rank(now.verified_level) >= level_rank(flow.required_level)


def _param(value: Any, context: dict[str, Any]) -> Any:
    """`"{amount}"` passes the slot's typed value; any other string is taken as written."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value.count("{") == 1:
        return lookup(context, value[1:-1])
    return value


def _holds(condition: Condition, context: dict[str, Any], turn: Turn) -> bool:
    """A `fact:<read>.<field>` (true in this turn's reads) or `slot:<name>` (yes) / `slot:<name>=<value>`."""
    if condition.kind == "fact":
        try:
            return bool(lookup(context, condition.target))
        except KeyError:
            return False
    name, value = condition.slot_value
    held = turn.tracker.get_slot(name)
    return held is True if value is None else held is not None and str(held) == value


def _branch_holds(branch: Branch, context: dict[str, Any], turn: Turn) -> bool:
    return all(_holds(condition, context, turn) for condition in branch.when)


def _last_user_timestamp(tracker: Tracker) -> str:
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return str(event.get("timestamp"))
    return "0"


def _generate_actions() -> list[type[Action]]:
    """One validator class per flow and one ask class per slot, for rasa-sdk to register.

    Each class is bound in this module under its own name: rasa-sdk's server pickles actions
    for its worker processes, and pickle finds classes by module and name.
    """
    classes: list[type[Action]] = []
    for flow in flowset().flows.values():
        classes.append(type(f"Validate_{flow.id}", (FlowFormValidator,), {
            "flow_id": flow.id, "name": lambda self, n=f"validate_{flow.form_name}": n}))
    for slot_name in [*flowset().all_slot_names(), CONFIRM_SLOT]:
        classes.append(type(f"Ask_{slot_name}", (AskSlot,), {
            "slot_name": slot_name, "name": lambda self, n=f"action_ask_{slot_name}": n}))
    for generated in classes:
        generated.__module__ = __name__
        globals()[generated.__name__] = generated
    return classes


GENERATED_ACTIONS = _generate_actions()


def _since_the_form_began(events: list[dict[str, Any]], form: str) -> list[dict[str, Any]]:
    """The conversation's events back to this form's activation, latest first: an answer given in
    an earlier flow (partial_prepayment's amount) is not this flow's to correct (promise_to_pay
    has not asked its amount yet)."""
    latest_first: list[dict[str, Any]] = []
    for event in reversed(events):
        if event.get("event") == "active_loop" and event.get("name") == form:
            break
        latest_first.append(event)
    return latest_first
