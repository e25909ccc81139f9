"""Whole calls through the voice pipeline and the real assistant (Rasa, actions, risk API).

The caller's audio is real Mandarin speech from espeak-ng, so detection, endpointing and
barge-in run for real; what the words say comes from a ScriptedRecognizer, because no
Chinese Vosk model can be installed here (the real Vosk engine is tested in test_asr.py with
the packaged Korean model). Calls run on the real 20 ms clock, so nothing here asserts how long
anything took: frames are counted and events ordered (pacing on virtual time: test_output.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import threading
import uuid
from typing import Any

import pytest

from bench import samples
from bench.stand_ins import RecordingSink, RespondingCaller, ScriptedRecognizer
from flowspec.model import load_flowset
from risk_api.demo import customers_with_tag
from stack.services import free_port
from tests.conftest import Stack
from tests.voice.callers import ScriptedCaller
from voice.call import CallResult, VoiceEngines, run_call
from voice.config import VoiceConfig, load_voice_config
from voice.dialogue import DialogueClient
from voice.frames import CallStarted
from voice.tts import Synthesizer

pytestmark = pytest.mark.stack

QUIET_SECONDS = 2.0


def transfer_reason(input_source: str) -> str:
    """What transfer_to_agent's flow file gives agents as the reason of a hand-over the phone
    line started by itself."""
    return load_flowset().flows["transfer_to_agent"].handoff.reasons_by_input[input_source]


def fast_config(**turns: Any) -> VoiceConfig:
    config = load_voice_config()
    return dataclasses.replace(config, turns=dataclasses.replace(config.turns, **turns))


async def place_call(stack: Stack, said: list[str] | None, *, pcm: bytes = b"", answers: list[bytes | str] = (),
                     keys: list[tuple[float, str]] = (), config: VoiceConfig | None = None,
                     rasa_url: str | None = None, sink: RecordingSink | None = None, max_seconds: float = 40,
                     hang_up_at: float | None = None, **call: Any
                     ) -> tuple[CallResult, RecordingSink, ScriptedCaller | RespondingCaller]:
    """A call whose caller either follows a timeline from the bot's first frame (`pcm`, `keys`,
    `hang_up_at`) or answers each time the bot has finished (`answers`: speech PCM or DTMF strings)."""
    config = config or load_voice_config()
    recognizer = ScriptedRecognizer(said) if said is not None else None
    dialogue = DialogueClient(rasa_url or stack.rasa_url, stack.keys.rasa_gateway)
    engines = VoiceEngines(config, recognizer, Synthesizer(config.tts), dialogue)
    sink = sink or RecordingSink()
    caller: ScriptedCaller | RespondingCaller
    if answers:
        caller = RespondingCaller(list(answers), sink, max_seconds=max_seconds,
                                  until=lambda answered: sink.answered_and_quiet(QUIET_SECONDS, after=answered))
    else:
        # The timetable starts with the bot's first frame: the moments are into what it says.
        caller = ScriptedCaller(pcm, 8000, keys=list(keys), max_seconds=max_seconds, hang_up_at=hang_up_at,
                                until=lambda ended: sink.answered_and_quiet(QUIET_SECONDS, after=ended),
                                start_when=lambda: bool(sink.frames))
    call.setdefault("call_id", f"voice-test-{uuid.uuid4().hex[:10]}")
    try:
        result = await run_call(engines, CallStarted(**call), caller.frames(), sink)
    finally:
        await engines.close()
    return result, sink, caller


def events(result: CallResult) -> list[str]:
    return [event for _, event in result.turns.timeline]


def when(result: CallResult, caller: ScriptedCaller, prefix: str) -> list[float]:
    return [moment - caller.started_at for moment, event in result.turns.timeline if event.startswith(prefix)]


def tracker(stack: Stack, sender: str) -> dict[str, Any]:
    return dict(stack.tracker(sender))


async def test_spoken_request_with_keyed_id_digits_is_answered(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    answers = [samples.speech("我想查一下我的账单"), samples.speech(customer["name"]), customer["id_last4"]]
    result, _, _ = await place_call(running_stack, ["我想查一下我的账单", customer["name"]], answers=answers,
                                    caller_number=customer["phone"], short_greeting=True)
    sent = [text for text, _ in result.turns.turns]
    assert sent[:3] == ["我想查一下我的账单", customer["name"], customer["id_last4"]], events(result)
    answer = result.turns.turns[2][1]
    assert answer.outcome == "answer" and any("账单" in text for text in answer.texts), answer
    # The dialogue core took the caller's number toward L1: it never asked for the phone number.
    asked = [reply.expect["slot"] for _, reply in result.turns.turns if reply.expect]
    assert asked == ["customer_name", "id_last4"]


async def test_caller_barge_in_stops_playback_and_the_core_learns_what_was_heard(running_stack: Stack) -> None:
    # The long greeting (no disclosure for this test) is talked over 1.5 s in.
    config = dataclasses.replace(load_voice_config(), turns=dataclasses.replace(
        load_voice_config().turns, prompts=dataclasses.replace(load_voice_config().turns.prompts, disclosure="")))
    pcm = samples.silence(1.5) + samples.speech("我想查一下我的额度")
    result, sink, caller = await place_call(running_stack, ["我想查一下我的额度"], pcm=pcm, config=config)
    barge_in = when(result, caller, "barge-in")
    assert barge_in, events(result)
    # Playback stopped at the decision: at most the frame already on the wire after it (counted in
    # frames, in the order they happened, not timed: a busy machine only delays both).
    greeting_frames = [moment - caller.started_at for moment, _ in sink.frames
                       if moment - caller.started_at < when(result, caller, "sent")[0]]
    assert greeting_frames and len([moment for moment in greeting_frames if moment > barge_in[0]]) <= 1
    heard = [event for event in events(result) if event.startswith("caller heard")]
    assert heard and "您好" in heard[0]
    user_events = [e for e in tracker(running_stack, result.call_id)["events"] if e["event"] == "user"]
    metadata = user_events[0]["metadata"]
    assert metadata["heard"]["text"].startswith("您好")
    assert len(metadata["heard"]["heard"]) < len(metadata["heard"]["text"])


async def test_disclosure_plays_to_the_end_whatever_the_caller_does(running_stack: Stack) -> None:
    pcm = samples.silence(0.6) + samples.speech("喂喂喂你好")
    result, _, caller = await place_call(running_stack, ["你好"], pcm=pcm, keys=[(1.0, "5")], max_seconds=14)
    assert not when(result, caller, "barge-in"), events(result)
    # Speech over the disclosure is not a turn; the key press was ignored, not taken as a choice.
    assert not result.turns.turns


async def test_no_input_reprompts_twice_then_hands_over_a_pending_question(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    config = fast_config(no_input_timeout_ms=1500)
    request = samples.speech("我想查一下我的账单")
    result, sink, _ = await place_call(running_stack, ["我想查一下我的账单"], answers=[request],
                                       config=config, caller_number=customer["phone"], short_greeting=True)
    assert [text for text, _ in result.turns.turns] == ["我想查一下我的账单", "/transfer_to_agent"], events(result)
    reprompts = [event for event in events(result) if event == "bot started speaking"]
    assert len(reprompts) >= 4  # greeting, question, two reprompts, hand-over words
    assert [control.action for control in sink.controls] == ["handoff"]
    assert sink.controls[0].details["summary"]
    assert sink.controls[0].details["reason"] == transfer_reason("no_input")  # the caller never asked for it


async def test_unreadable_speech_is_rephrased_once_then_handed_over(running_stack: Stack) -> None:
    mumble = samples.speech("嗯嗯啊啊")
    result, sink, _ = await place_call(running_stack, ["", ""], answers=[mumble, mumble], short_greeting=True)
    assert [text for text, _ in result.turns.turns] == ["/transfer_to_agent"], events(result)
    assert [control.action for control in sink.controls] == ["handoff"]
    assert sink.controls[0].details["reason"] == transfer_reason("no_match")


async def test_without_a_recogniser_the_caller_uses_the_keypad_menu(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    config = load_voice_config()
    assert config.turns.keypad_menu["3"] == "check_credit_limit"
    result, _, _ = await place_call(running_stack, None, answers=["3"], caller_number=customer["phone"],
                                    short_greeting=True)
    sent = [text for text, _ in result.turns.turns]
    assert sent == ["/check_credit_limit"]
    assert result.turns.turns[0][1].expect == {"slot": "customer_name", "type": "text", "private": True}


async def test_dialogue_core_down_apologises_and_hands_over(running_stack: Stack) -> None:
    request = samples.speech("我想查一下我的账单")
    result, sink, _ = await place_call(running_stack, ["我想查一下我的账单"], answers=[request],
                                       short_greeting=True, rasa_url=f"http://127.0.0.1:{free_port()}")
    assert [control.action for control in sink.controls] == ["handoff"], events(result)
    assert sink.controls[0].details["reason"] == "对话服务不可用"


class WordlessCore(http.server.BaseHTTPRequestHandler):
    """A dialogue core on loopback that answers every turn with no messages at all (Rasa's REST
    channel does this when a graph component fails)."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args: Any) -> None:
        pass


async def test_a_wordless_answer_still_ends_in_a_reprompt(running_stack: Stack) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WordlessCore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result, _, _ = await place_call(
            running_stack, ["我想查一下我的账单"], pcm=samples.silence(2.5) + samples.speech("我想查一下我的账单"),
            config=fast_config(no_input_timeout_ms=1500), rasa_url=f"http://127.0.0.1:{server.server_port}",
            short_greeting=True, max_seconds=15)
    finally:
        server.shutdown()
        server.server_close()
    timeline = events(result)
    answered = next(index for index, event in enumerate(timeline) if event.startswith("answered "))
    assert "bot started speaking" in timeline[answered:], timeline  # 您还在吗？ rather than silence


async def test_busy_agents_turn_a_transfer_into_a_callback_offer(running_stack: Stack) -> None:
    result, sink, _ = await place_call(running_stack, None, answers=["0"], sink=RecordingSink(agents_busy=True),
                                       short_greeting=True)
    sent = [text for text, _ in result.turns.turns]
    assert sent == ["/transfer_to_agent", "/callback_request"], events(result)
    assert result.turns.turns[1][1].expect is not None  # the callback flow asks its first question


async def test_hangup_mid_prompt_ends_the_call_cleanly(running_stack: Stack) -> None:
    result, sink, caller = await place_call(running_stack, None, pcm=samples.silence(1.0), hang_up_at=2.0)
    assert isinstance(caller, ScriptedCaller) and caller.hung_up is not None
    assert [task for task in asyncio.all_tasks() if task is not asyncio.current_task()] == []
    # The prompt was under way (the greeting is longer than 2 s) and stopped at the hang-up: not
    # one frame after it (ordered by the one monotonic clock, not timed).
    assert sink.frames and result.output.played
    assert not [moment for moment, _ in sink.frames if moment > caller.hung_up]


async def test_every_tier_hears_the_recording_notice_first(running_stack: Stack) -> None:
    prompts = load_voice_config().turns.prompts
    for kind in ({"short_greeting": True}, {"channel": "outbound", "opening": "/overdue_reminder"}):
        customer = customers_with_tag("overdue")[0]
        result, _, _ = await place_call(running_stack, None, pcm=samples.silence(0.5), max_seconds=20,
                                        caller_number=customer["phone"], **kind)
        assert result.output.played[:1] == [prompts.disclosure], (kind, result.output.played)
        assert len(result.output.played) >= 2, "the greeting or the opening follows the notice"


async def test_busy_agents_book_a_callback_to_the_calling_number_with_one_key(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    result, sink, _ = await place_call(running_stack, None, answers=["0", "1"], sink=RecordingSink(agents_busy=True),
                                       caller_number=customer["phone"], short_greeting=True)
    prompts = load_voice_config().turns.prompts
    assert [text for text, _ in result.turns.turns] == ["/transfer_to_agent"], "no identity questions"
    assert [control.action for control in sink.controls] == ["handoff", "callback", "hangup"]
    assert prompts.callback_offer in result.output.played
    assert prompts.callback_booked.format(when="12月4日15点30分") in result.output.played


async def test_a_call_back_from_the_queue_may_wait_once_more(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    result, sink, _ = await place_call(running_stack, None, answers=["2"], caller_number=customer["phone"],
                                       queue_returns=1)
    prompts = load_voice_config().turns.prompts
    assert result.output.played[:2] == [prompts.callback_offer, prompts.requeue_offer], "no notice, no greeting again"
    assert [(control.action, control.details) for control in sink.controls] == [("handoff", {"requeue": True})]
    assert not result.turns.turns, "nothing for the dialogue core: the caller is not a new request"


async def test_a_call_back_from_the_queue_too_often_gets_a_callback_and_a_polite_end(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    max_returns = load_voice_config().turns.max_queue_returns
    result, sink, _ = await place_call(running_stack, None, pcm=samples.silence(0.5), max_seconds=20,
                                       caller_number=customer["phone"], queue_returns=max_returns)
    prompts = load_voice_config().turns.prompts
    assert [control.action for control in sink.controls] == ["callback", "hangup"]
    assert result.output.played[-1] == prompts.goodbye
    assert not result.turns.turns


async def test_no_answer_to_the_callback_offer_books_it(running_stack: Stack) -> None:
    customer = customers_with_tag("normal")[0]
    result, sink, _ = await place_call(running_stack, None, pcm=samples.silence(0.5), max_seconds=30,
                                       config=fast_config(no_input_timeout_ms=800, max_no_input_reprompts=0),
                                       caller_number=customer["phone"],
                                       queue_returns=1)
    assert [control.action for control in sink.controls] == ["callback", "hangup"], events(result)
