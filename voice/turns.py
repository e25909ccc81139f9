"""Turn taking on the phone: when the caller's words or keys become a turn for the dialogue
core, and what the bot says back.

- A final transcript becomes a turn when the caller spoke while the bot was silent, or barged
  in; speech the bot talked over without a barge-in (its own echo, noise) is dropped.
- Keys: digits are collected for a digit question (card tail, ID digits, one-time code) until
  the expected length or `#`; 1/2 answer yes/no; a digit picks a menu choice; `*` repeats, but
  as the last key of ID digits (an answer that may end in the check character) it is the X;
  `0` asks for a human whenever no digit answer is being keyed (ID numbers contain 0).
- No input: the question is asked again twice, then a pending question goes to a human
  (an open turn ends the call politely). No match (speech nobody could read): one rephrase,
  then a human.
- The turn after a barge-in tells the core which part of its reply the caller heard.
- A hang-up never cuts a turn in half: what the caller said or keyed before it is still sent,
  and the core finishes that turn (and any account action in it).
- Agents busy (the transfer was declined, or the call came back from the queue unanswered):
  with a number to call back, 1 books a callback to it (no identity needed: we call the number
  that called us) and 2 waits in the queue again; no answer, or a call that came back
  `max_queue_returns` times, gets the callback and a polite end: never a loop of hand-overs.
- Every call hears the recording notice once, whatever its tier, before anything else.
- A reply that ends the conversation (`end_call`: an outbound call that reached a third party, a
  wrong number or an opt-out) is played, then the bot hangs up: the caller need not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flowspec.slot_types import types_with
from voice.dialogue import DialogueClient, DialogueUnavailable, Reply
from voice.frames import (
    Acknowledgement,
    AnswerExpected,
    BotSpeech,
    BotStoppedSpeaking,
    CallbackBooked,
    CallStarted,
    Control,
    Direction,
    Frame,
    Hangup,
    Interruption,
    Keypress,
    PausePlayback,
    PlaybackInterrupted,
    ResumePlayback,
    Speak,
    Transcript,
    TransferDeclined,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from voice.pipeline import FrameProcessor

log = logging.getLogger(__name__)

PLAYBACK_RESUMED = "playback resumed"  # the timeline's entry when the bot played on after a pause

DIGIT_ANSWERS = types_with("digits")  # flowspec/slot_types.py
KEYED_ANSWERS = types_with("key")


@dataclass(frozen=True)
class Prompts:
    greeting: str = "您好，这里是智能客服小安。请问有什么可以帮您？"
    greeting_named: str = "{salutation}您好，这里是智能客服小安。请问有什么可以帮您？"
    greeting_short: str = "您好，请讲。"
    disclosure: str = "为保障您的权益，本次通话可能会被录音。"
    keypad_menu: str = "请用电话按键选择：查账单请按1，还款请按2，查额度请按3，挂失或冻结请按4，人工服务请按0。"
    no_input: str = "您还在吗？"
    no_match: str = "抱歉，我没有听清，请您再说一遍。"
    invalid_key: str = "这个按键无效。"
    goodbye: str = "感谢您的来电，再见。"
    dialogue_down: str = "抱歉，系统暂时繁忙，正在为您转接人工客服，请稍候。"
    agents_busy: str = "现在人工客服都在忙，我们可以为您登记回电。"
    callback_offer: str = "现在人工客服都在忙。需要我们稍后回拨您本次来电的号码，请按1。"
    requeue_offer: str = "继续等待人工服务，请按2。"
    callback_booked: str = "已为您登记回电，我们会在{when}左右回拨您本次来电的号码，请留意接听。"
    callback_failed: str = "抱歉，回电暂时没能登记成功，请您稍后再拨。"

    def fixed(self) -> list[str]:
        """The prompts whose words never change, to render once at start-up."""
        return [text for text in dataclasses.astuple(self) if text and "{" not in text]


@dataclass(frozen=True)
class TurnConfig:
    no_input_timeout_ms: int = 7000
    max_no_input_reprompts: int = 2
    max_no_match_rephrases: int = 1
    digit_timeout_ms: int = 4000
    max_queue_returns: int = 2  # then a callback instead of another wait in the queue
    keypad_menu: dict[str, str] = field(default_factory=lambda: {
        "1": "bill_inquiry", "2": "how_to_repay", "3": "check_credit_limit", "4": "account_freeze"})
    prompts: Prompts = field(default_factory=Prompts)


class TurnTaking(FrameProcessor):
    def __init__(self, dialogue: DialogueClient, config: TurnConfig, speech_recognition: bool) -> None:
        super().__init__()
        self.dialogue = dialogue
        self.config = config
        self.prompts = config.prompts
        self.speech_recognition = speech_recognition
        self.call: CallStarted | None = None
        self.turns: list[tuple[str, Reply]] = []  # what was sent and answered
        # (monotonic time, event) of turn changes: the demo prints it, the benchmark measures it.
        self.timeline: list[tuple[float, str]] = []
        self._expect: dict[str, Any] | None = None
        self._last_question: list[str] = []
        self._bot_speaking = False
        self._playing_interruptible = True
        self._utterance_counts = False
        self._heard: PlaybackInterrupted | None = None
        self._reply_epoch = 0
        self._no_input = 0
        self._no_match = 0
        self._digits = ""
        self._ended = False
        self._callback_offered = False
        self._offer: str | None = None  # "callback" or "callback_or_queue" while keys answer it
        self._exchange_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._no_input_timer: asyncio.TimerHandle | None = None
        self._digit_timer: asyncio.TimerHandle | None = None

    # --- frames ---------------------------------------------------------------------------

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, CallStarted):
            self.call = frame
            await self.push(frame, direction)
            self._spawn(self._open_call())
            return
        if isinstance(frame, Hangup):
            self._ended = True
            self._cancel_timers()
        elif isinstance(frame, BotSpeech):
            if not self._bot_speaking:
                self._mark("bot started speaking")
            self._bot_speaking = True
            self._playing_interruptible = frame.interruptible
            self._cancel_no_input()
        elif isinstance(frame, BotStoppedSpeaking):
            self._mark("bot stopped speaking")
            self._bot_speaking = False
            self._arm_no_input()
        elif isinstance(frame, PlaybackInterrupted):
            self._mark(f"caller heard {frame.heard!r} of {frame.text!r}")
            self._heard = frame
            return
        elif isinstance(frame, TransferDeclined):
            self._mark(f"transfer declined: {frame.reason}")
            if self._callback_offered:  # the callback flow itself ended in a hand-over: do not loop
                self._spawn(self._goodbye())
            else:
                self._callback_offered, self._ended = True, False
                self._spawn(self._offer_callback(requeue=False))
            return
        elif isinstance(frame, CallbackBooked):
            self._mark(f"callback booked for {frame.scheduled_for}")
            self._spawn(self._callback_answer(frame))
            return
        elif isinstance(frame, UserStartedSpeaking):
            self._mark("caller started speaking")
            # A barge-in (the Interruption just before) already made this utterance count.
            self._utterance_counts = self._utterance_counts or not self._bot_speaking
            self._cancel_no_input()
        elif isinstance(frame, UserStoppedSpeaking):
            self._mark("caller stopped speaking")
            if not self.speech_recognition:
                self._on_final_transcript("")
        elif isinstance(frame, Acknowledgement):
            self._mark(f"caller acknowledged {frame.text!r}")  # the bot goes on; no turn
        elif isinstance(frame, PausePlayback):
            self._mark("playback paused")
        elif isinstance(frame, ResumePlayback):
            self._mark(PLAYBACK_RESUMED)
        elif isinstance(frame, Interruption):
            self._mark(f"barge-in ({frame.cause})")
            self._utterance_counts = True
            self._reply_epoch += 1
        elif isinstance(frame, Transcript):
            if frame.final:
                self._mark(f"recognised {frame.text!r}")
                self._on_final_transcript(frame.text)
            return
        elif isinstance(frame, Keypress):
            self._mark(f"key {frame.digit}")
            await self._on_key(frame.digit)
            return
        await self.push(frame, direction)

    # --- caller input ---------------------------------------------------------------------

    def _on_final_transcript(self, text: str) -> None:
        if self._ended or not self._utterance_counts:
            log.debug("dropped speech the bot talked over: %r", text)
            return
        self._utterance_counts = False
        if text.strip():
            self._no_match = 0
            self._submit(text.strip(), "speech")
            return
        self._no_match += 1
        if self._no_match > self.config.max_no_match_rephrases:
            log.info("call %s: speech not recognised after %d rephrase(s), handing over", self._call_id,
                     self.config.max_no_match_rephrases)
            self._submit("/transfer_to_agent", "no_match")
        elif self._expect is None:
            # Not understood with no question pending (the greeting, "anything else?"): the keypad
            # menu too, which a caller the recogniser does not hear can still use.
            self._spawn(self._say([self.prompts.no_match, self.prompts.keypad_menu]))
        else:
            self._spawn(self._say([self.prompts.no_match, *self._last_question]))

    async def _on_key(self, digit: str) -> None:
        if self._ended:
            return
        if self._bot_speaking:
            if not self._playing_interruptible:
                log.info("call %s: key %s ignored during a prompt that may not be interrupted", self._call_id, digit)
                return
            self._reply_epoch += 1
            await self.push(Interruption("keypad"))
        self._cancel_no_input()
        if self._offer is not None:
            await self._on_offer_key(digit)
            return
        expect_type = (self._expect or {}).get("type")
        if expect_type in DIGIT_ANSWERS and (digit.isdigit() or (digit == "#" and self._digits)):
            self._collect_digit(digit)
        elif digit == "*" and self._keys_check_character():
            self._collect_digit("X")
        elif digit == "0":
            self._submit("/transfer_to_agent", "keypad")
        elif digit == "*":
            self._digits = ""
            self._submit("/repeat", "keypad")
        elif digit.isdigit() and expect_type in KEYED_ANSWERS:
            self._submit(digit, "keypad")
        elif digit.isdigit() and self._expect is None and digit in self.config.keypad_menu:
            self._submit(f"/{self.config.keypad_menu[digit]}", "keypad")
        else:
            self._spawn(self._say([self.prompts.invalid_key, *self._last_question]))

    async def _on_offer_key(self, digit: str) -> None:
        if digit == "1":
            await self._book_callback()
        elif digit == "2" and self._offer == "callback_or_queue":
            self._offer = None
            await self._hand_over({"requeue": True})
        else:
            self._spawn(self._say([self.prompts.invalid_key, *self._last_question]))

    def _collect_digit(self, digit: str) -> None:
        if self._digit_timer is not None:
            self._digit_timer.cancel()
            self._digit_timer = None
        if digit != "#":
            self._digits += digit
        wanted = (self._expect or {}).get("length") or (11 if (self._expect or {}).get("type") == "phone" else None)
        if digit == "#" or (wanted and len(self._digits) >= wanted):
            self._submit_digits()
        else:
            loop = asyncio.get_running_loop()
            self._digit_timer = loop.call_later(self.config.digit_timeout_ms / 1000, self._submit_digits)

    def _keys_check_character(self) -> bool:
        """The next key is the last of ID digits that may end in the check character X."""
        expect = self._expect or {}
        return bool(expect.get("check_character")) and len(self._digits) == expect.get("length", 0) - 1

    def _submit_digits(self) -> None:
        digits, self._digits = self._digits, ""
        if digits:
            self._submit(digits, "keypad")

    # --- talking to the dialogue core -----------------------------------------------------

    def _submit(self, text: str, source: str) -> None:
        self._no_input = 0
        self._spawn(self._exchange(text, source))

    async def _exchange(self, text: str, source: str) -> None:
        # A turn the caller gave before hanging up still goes to the core: the last key press
        # may be the "yes" of a confirmation, and it is carried out whole rather than lost.
        wordless_reply = False
        async with self._exchange_lock:
            metadata = self._metadata(source)
            self._mark(f"sent {text!r} ({source})")
            try:
                # A hang-up must not cut a turn in half: the core finishes it (and any account
                # action in it) even when nobody is left to hear the answer.
                reply = await asyncio.shield(self.dialogue.send(self._call_id, text, metadata))
            except DialogueUnavailable as error:
                log.error("call %s: %s; handing over", self._call_id, error)
                await self._say([self.prompts.dialogue_down])
                await self._hand_over({"reason": "对话服务不可用", "priority": self._tier,
                                       "summary": "语音机器人暂时不可用，客户来电未处理。"})
                return
            self.turns.append((text, reply))
            self._mark(f"answered {text!r}: {' / '.join(reply.texts)}")
            log.info("call %s: turn source=%s expect=%s outcome=%s handoff=%s", self._call_id, source,
                     (reply.expect or {}).get("slot"), reply.outcome, bool(reply.handoff))
            if self._ended:
                return
            self._expect = reply.expect
            await self.push(AnswerExpected(reply.expect), Direction.UPSTREAM)
            if reply.expect is not None and reply.texts:
                self._last_question = reply.texts[-1:]
            elif reply.texts:
                self._last_question = []
            await self._say(reply.texts)
            if reply.handoff is not None:
                await self._hand_over(reply.handoff)
            elif reply.end_call:
                await self._end_call()
            wordless_reply = not reply.texts and reply.handoff is None and not reply.end_call
        if wordless_reply:
            # Nothing is played, so no end of playback will start the no-input count: start it here.
            self._arm_no_input()

    def _metadata(self, source: str) -> dict[str, Any]:
        call = self.call
        metadata: dict[str, Any] = {"channel": call.channel if call else "voice", "input": source}
        if call and call.caller_number:
            metadata["caller_number"] = call.caller_number
        if call:
            metadata["priority_tier"] = call.priority_tier
        if self._heard is not None:
            metadata["heard"] = {"text": self._heard.text, "heard": self._heard.heard}
            self._heard = None
        return metadata

    async def _hand_over(self, handoff: dict[str, Any]) -> None:
        self._ended = True
        self._cancel_timers()
        await self.push(Control("handoff", handoff))

    # --- what the bot says ----------------------------------------------------------------

    async def _open_call(self) -> None:
        call = self.call
        assert call is not None
        if call.queue_returns:
            # The same call, back from the queue: it heard the notice when it began.
            self._mark(f"back from the agents' queue ({call.queue_returns})")
            if call.queue_returns < self.config.max_queue_returns:
                await self._offer_callback(requeue=True)
            elif call.caller_number:
                await self._say([self.prompts.agents_busy])
                await self._book_callback()
            else:
                self._ended = True
                await self.push(Speak(self.prompts.callback_failed, interruptible=False))
                await self._goodbye()
            return
        if self.prompts.disclosure:  # compliance: every tier, inbound and outbound
            await self.push(Speak(self.prompts.disclosure, interruptible=False))
        if call.opening:
            self._submit(call.opening, "dialer")
            return
        if call.short_greeting:
            greeting = self.prompts.greeting_short
        elif call.salutation:
            greeting = self.prompts.greeting_named.format(salutation=call.salutation)
        else:
            greeting = self.prompts.greeting
        lines = [greeting]
        if not self.speech_recognition and not call.short_greeting:
            lines.append(self.prompts.keypad_menu)
        self._last_question = lines[-1:]
        await self._say(lines)

    async def _say(self, texts: list[str]) -> None:
        epoch = self._reply_epoch
        for text in texts:
            if self._reply_epoch != epoch or self._ended:
                return
            await self.push(Speak(text))

    def _arm_no_input(self) -> None:
        self._cancel_no_input()
        if self._ended or self._exchange_lock.locked():
            return
        loop = asyncio.get_running_loop()
        self._no_input_timer = loop.call_later(self.config.no_input_timeout_ms / 1000, self._on_no_input)

    def _on_no_input(self) -> None:
        self._no_input_timer = None
        self._no_input += 1
        if self._no_input <= self.config.max_no_input_reprompts:
            self._spawn(self._say([self.prompts.no_input, *self._last_question]))
        elif self._offer is not None:
            log.info("call %s: no answer to the callback offer: booking it", self._call_id)
            self._spawn(self._book_callback())
        elif self._expect is not None:
            log.info("call %s: no answer after %d reprompts, handing over", self._call_id, self._no_input - 1)
            self._submit("/transfer_to_agent", "no_input")
        else:
            self._ended = True
            self._spawn(self._goodbye())

    async def _offer_callback(self, requeue: bool) -> None:
        if not (self.call and self.call.caller_number):
            # No number to call back: the callback flow asks the caller for one.
            await self._say([self.prompts.agents_busy])
            self._submit("/callback_request", "transfer_declined")
            return
        self._offer = "callback_or_queue" if requeue else "callback"
        self._last_question = [self.prompts.callback_offer, *([self.prompts.requeue_offer] if requeue else [])]
        await self._say(self._last_question)

    async def _book_callback(self) -> None:
        self._offer = None
        self._ended = True
        self._cancel_timers()
        await self.push(Control("callback", {"preferred_time": "尽快"}))

    async def _callback_answer(self, booked: CallbackBooked) -> None:
        when = booked.scheduled_for
        text = (self.prompts.callback_booked.format(when=f"{when.month}月{when.day}日{when.hour}点"
                                                    + (f"{when.minute}分" if when.minute else ""))
                if when else self.prompts.callback_failed)
        await self.push(Speak(text, interruptible=False))
        await self._goodbye()

    async def _goodbye(self) -> None:
        await self.push(Speak(self.prompts.goodbye, interruptible=False))
        await self.push(Control("hangup"))

    async def _end_call(self) -> None:
        """The core said the conversation is over, its goodbye included (an outbound call that
        reached a third party, a wrong number or an opt-out): hang up once it is played."""
        self._ended = True
        self._cancel_timers()
        await self.push(Control("hangup"))

    # --- housekeeping ---------------------------------------------------------------------

    def _mark(self, event: str) -> None:
        self.timeline.append((time.monotonic(), event))
        log.debug("call %s: %s", self._call_id, event)

    @property
    def _call_id(self) -> str:
        return self.call.call_id if self.call else "?"

    @property
    def _tier(self) -> str:
        return self.call.priority_tier if self.call else "normal"

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s: turn failed", self._call_id, exc_info=task.exception())

    def _cancel_no_input(self) -> None:
        if self._no_input_timer is not None:
            self._no_input_timer.cancel()
            self._no_input_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_no_input()
        if self._digit_timer is not None:
            self._digit_timer.cancel()
            self._digit_timer = None

    async def close(self) -> None:
        self._ended = True
        self._cancel_timers()
        # Turns in flight finish (see _exchange); they are bounded by the dialogue client's timeout.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=20)
