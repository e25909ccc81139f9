"""Barge-in: deciding that the caller interrupts the bot while it speaks.

Two things sound like a caller while the bot talks: background noise, and the bot's own voice
coming back down the line (echo). The detector takes the speech detector's verdict per frame
(voiced, level after noise suppression) and only counts a frame when it is clearly louder than
the echo the bot's playback could cause there, and than the line's background.

The echo estimate is the bot's playback level minus the echo return loss we can count on. Which
playback frame echoes now depends on the echo path's delay: the detector finds it by matching
the caller line's level envelope against the playback's over the last seconds (the delay with
the best correlation within `echo_window_ms`), then takes the loudest bot frame around that
delay. Until the delay is known it assumes the worst: the loudest frame of the whole window.
It also measures the loss: how far below that playback frame the line stays, but for a few
outliers (until half a second of loud playback was heard it assumes `echo_return_loss_db`).
The line holds echo and noise, which only make the loss look smaller, and the measure needs no
delay: an echo too faint to show through the noise is still bounded by the noise. A line whose
echo comes back 20 dB down then no longer needs the caller within 8 dB of the bot's loudest
syllables.
A third thing sounds like a caller: another person near the phone. Once the caller has spoken,
the speech detector knows their level (`Detection.caller_level_db`), and a frame more than
`talker_margin_db` below it is someone else's (babble 10 dB down is, the caller 6 dB softer than
before is not). Before the caller's first utterance the level decides nothing.
A barge-in needs `min_speech_ms` of qualifying frames within a window twice as long (a
syllable's stop closure, as in 这个, does not restart the count), so a click or a door slam
does not cut the bot off.

Optionally the decision also waits for the recogniser: with `confirm_characters` = N, speech
that qualifies is a CANDIDATE until a partial transcript holds N characters.

Back-channels: a caller saying 嗯, 对, 好的 while the bot explains is listening, not interrupting.
With `backchannel_max_ms` set, the speech processor holds a barge-in as a CANDIDATE (`hold`):
it becomes a barge-in once it lasts longer than a back-channel, or once the recogniser's text
holds a word
that is not one (`is_backchannel`: nothing but the yes-words of flows/shared/answers.yml, 嗯嗯 and
对对对 included, at most BACKCHANNEL_MAX_CHARACTERS); speech that ends sooner is judged by its
final text (voice/processors.py): a back-channel is recorded as an acknowledgement and the bot
goes on; other words (不对) interrupt then. Without a recogniser, length alone decides.
With `pause_when_held` the bot's playback pauses while speech is held, and plays on from there
once the caller has been quiet `resume_after_ms` (a back-channel, or a sound that never became a
barge-in), pausing again if they speak on: a caller barging in hears the bot stop at once, not
when their speech has outlasted a back-channel. A short pause between the clauses of a sentence
(我想查一下 … 我的账单) does not bring the bot back.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np

from flowspec.model import load_answers
from voice.audio import FRAME_MS, SILENCE_FLOOR_DBFS, level_dbfs
from voice.detection import Detection, SpeechEvent

log = logging.getLogger(__name__)

# Caller speech is counted over a window twice `min_speech_ms` long rather than as an unbroken
# run: a Chinese syllable with a stop after it (这个) has a closure of several weak frames.
SPEECH_WINDOW_FACTOR = 2
DELAY_HISTORY_FRAMES = 100  # 2 s of level envelopes to find the echo delay in
DELAY_MIN_HISTORY_FRAMES = 25  # half a second of playback already shows the delay
DELAY_UPDATE_FRAMES = 5
DELAY_MIN_CORRELATION = 0.6  # below this the line shows no clear echo: keep the worst-case window
DELAY_JITTER_FRAMES = 1  # playback and line frames do not arrive in lockstep
ACTIVE_BOT_DBFS = -60.0  # bot frames quieter than this say nothing about the echo path
LOSS_BOT_DBFS = -40.0  # bot frames this loud show how much of the playback comes back
LOSS_MIN_FRAMES = 25  # half a second of such frames before the measured loss replaces the assumed one
LOSS_PERCENTILE = 10  # the loudest echo but for a few outliers; noise and double talk only lower it
MAX_MEASURED_LOSS_DB = 30.0  # never count on more than this, however clean the line looked
BACKCHANNEL_MAX_CHARACTERS = 4  # 对对对, 好的好的; a longer run of yes-words is an answer


@dataclass(frozen=True)
class BargeInConfig:
    enabled: bool = True
    min_speech_ms: int = 60
    echo_margin_db: float = 2.0
    echo_return_loss_db: float = 10.0
    echo_window_ms: int = 300
    noise_margin_db: float = 4.0
    talker_margin_db: float | None = 6.5  # how far below the caller's own voice speech may be; None: any level
    confirm_characters: int = 0
    backchannel_max_ms: int = 800  # speech this short may be a back-channel (the processor holds it); 0: off
    pause_when_held: bool = True  # the bot pauses while speech is held, and plays on after a back-channel
    resume_after_ms: int = 400  # ... once the caller has been quiet this long

    def __post_init__(self) -> None:
        if self.min_speech_ms < FRAME_MS or self.echo_window_ms < FRAME_MS:
            raise ValueError(f"min_speech_ms and echo_window_ms must be at least one frame ({FRAME_MS} ms)")
        if self.confirm_characters < 0:
            raise ValueError("confirm_characters must be 0 (off) or a positive number of characters")
        if self.talker_margin_db is not None and self.talker_margin_db <= 0:
            raise ValueError("talker_margin_db must be positive, or null to accept speech at any level")
        if self.backchannel_max_ms and self.backchannel_max_ms < self.min_speech_ms:
            raise ValueError("backchannel_max_ms must be 0 (off) or at least min_speech_ms")
        if self.resume_after_ms < FRAME_MS:
            raise ValueError(f"resume_after_ms must be at least one frame ({FRAME_MS} ms)")


class BargeInState(Enum):
    NONE = "none"
    CANDIDATE = "candidate"
    BARGE_IN = "barge_in"


def count_characters(text: str) -> int:
    """Characters that carry words: CJK ideographs, letters and digits. Chinese has no spaces,
    so counting words would make "帮我转人工" one word; punctuation and spaces do not count."""
    return sum(1 for character in text if character.isalnum() or unicodedata.category(character) == "Lo")


def is_backchannel(text: str) -> bool:
    """Whether `text` is only a listener's acknowledgement: yes-words of flows/shared/answers.yml
    (嗯, 对, 是, 好的 …), repeated or combined (嗯嗯, 对对对, 嗯好的), at most
    BACKCHANNEL_MAX_CHARACTERS characters; punctuation and spaces do not count."""
    words = "".join(character for character in text if character.isalnum() or unicodedata.category(character) == "Lo")
    if not words or len(words) > BACKCHANNEL_MAX_CHARACTERS:
        return False
    yes_words = sorted(load_answers().yes, key=len, reverse=True)  # the longest word first: 好的 before 好
    position = 0
    while position < len(words):
        word = next((word for word in yes_words if words.startswith(word, position)), None)
        if word is None:
            return False
        position += len(word)
    return True


class BargeInDetector:
    """One per call; `reset()` whenever the bot starts a new prompt or a turn ends."""

    def __init__(self, sample_rate: int, config: BargeInConfig | None = None) -> None:
        self.sample_rate = sample_rate
        self.config = config or BargeInConfig()
        self._window_frames = self.config.echo_window_ms // FRAME_MS
        history = DELAY_HISTORY_FRAMES + self._window_frames
        self._bot_levels: deque[float] = deque(maxlen=history)
        self._line_levels: deque[float] = deque(maxlen=history)
        self._needed_frames = -(-self.config.min_speech_ms // FRAME_MS)
        self._held_frames = 0  # frames since the pending candidate qualified
        self._quiet_frames = 0  # ... and since one last qualified
        self._recent: deque[bool] = deque(maxlen=SPEECH_WINDOW_FACTOR * self._needed_frames)
        # Properties of the line, kept across prompts: the echo path's delay and loss once measured.
        self.echo_delay_frames: int | None = None
        self.measured_echo_loss_db: float | None = None
        self.reset()

    @property
    def state(self) -> BargeInState:
        return self._state

    def reset(self) -> None:
        self._bot_levels.clear()
        self._line_levels.clear()
        self._state = BargeInState.NONE
        self._recent.clear()
        self._frames_since_delay_update = 0

    def bot_audio(self, frame: bytes) -> None:
        """A frame just played to the caller: its echo may come back within the echo window."""
        self._bot_levels.append(level_dbfs(frame))

    def bot_paused(self) -> None:
        """A frame time in which the bot's playback was paused: nothing of it will echo."""
        self._bot_levels.append(SILENCE_FLOOR_DBFS)

    @property
    def echo_return_loss_db(self) -> float:
        """The echo path's loss: measured from the line, assumed (config) until then."""
        if self.measured_echo_loss_db is None:
            return self.config.echo_return_loss_db
        return self.measured_echo_loss_db

    @property
    def echo_estimate_db(self) -> float:
        """The loudest echo the playback could produce on the caller's line now."""
        levels = list(self._bot_levels)[-self._window_frames:]
        if not levels:
            return SILENCE_FLOOR_DBFS
        if self.echo_delay_frames is not None:
            newest = len(levels) - 1 - self.echo_delay_frames
            around = levels[max(0, newest - DELAY_JITTER_FRAMES):max(0, newest + DELAY_JITTER_FRAMES + 1)]
            levels = around or [SILENCE_FLOOR_DBFS]
        return max(levels) - self.echo_return_loss_db

    def _update_echo_path(self) -> None:
        """Measure the echo path from the last seconds of playback and line: the delay (in frames)
        at which the line's level envelope best follows the playback's, then the loss."""
        count = min(len(self._bot_levels), len(self._line_levels)) - self._window_frames
        if count < DELAY_MIN_HISTORY_FRAMES:
            return
        bot = np.array(self._bot_levels)[-(count + self._window_frames):]
        line = np.array(self._line_levels)[-count:]
        delay = self._best_delay(np.maximum(bot, ACTIVE_BOT_DBFS), np.maximum(line, ACTIVE_BOT_DBFS))
        delay_changed = delay is not None and delay != self.echo_delay_frames
        if delay_changed:
            log.debug("echo delay %d ms", delay * FRAME_MS)
            self.echo_delay_frames = delay
        loss = self._echo_loss(bot, line, self.echo_delay_frames)
        # A loss measured for another delay (or for none) does not hold for the new one.
        if loss is not None or delay_changed:
            self.measured_echo_loss_db = loss

    def _best_delay(self, bot: np.ndarray, line: np.ndarray) -> int | None:
        """The delay with the best correlation, None when no delay clearly explains the line."""
        if np.ptp(bot) < 10.0 or np.ptp(line) < 10.0:
            return None  # the bot paused or the line is flat (echo below the noise): nothing to match
        # candidates[d] is the playback as it would sound on the line after a delay of d frames
        candidates = np.lib.stride_tricks.sliding_window_view(bot, line.size)[::-1][: self._window_frames]
        candidates = candidates - candidates.mean(axis=1, keepdims=True)
        centred = line - line.mean()
        norms = np.linalg.norm(candidates, axis=1) * np.linalg.norm(centred)
        correlation = candidates @ centred / np.where(norms > 0, norms, np.inf)
        best = int(np.argmax(correlation))
        return best if correlation[best] >= DELAY_MIN_CORRELATION else None

    def _echo_loss(self, bot: np.ndarray, line: np.ndarray, delay: int | None) -> float | None:
        """How far below the playback the line stays while the bot is loud, taking the playback
        as `echo_estimate_db` does: the loudest frame around the delay, or of the whole window
        when the delay is unknown, but for a few outliers. The line holds the echo plus noise
        (and any double talk), which only make the loss look smaller; an echo buried in noise
        is still bounded by the noise. None until LOSS_MIN_FRAMES loud bot frames were heard."""
        count = line.size
        newest = bot.size - 1  # the newest bot frame that can echo in the line's newest frame
        if delay is None:
            shifts = range(-self._window_frames + 1, 1)
        else:
            newest -= delay
            shifts = range(-DELAY_JITTER_FRAMES, DELAY_JITTER_FRAMES + 1)
        aligned = np.stack([bot[newest - count + 1 + shift:newest + 1 + shift] for shift in shifts
                            if newest - count + 1 + shift >= 0 and newest + 1 + shift <= bot.size])
        around = aligned.max(axis=0)
        loud = around >= LOSS_BOT_DBFS
        if np.count_nonzero(loud) < LOSS_MIN_FRAMES:
            return None
        loss = float(np.percentile(around[loud] - line[loud], LOSS_PERCENTILE))
        return min(max(loss, 0.0), MAX_MEASURED_LOSS_DB)

    def caller_audio(self, detection: Detection) -> BargeInState:
        """Feed one caller frame's detection while the bot speaks. Returns BARGE_IN (or
        CANDIDATE when text must confirm) once, on the frame that decides; NONE otherwise."""
        self._line_levels.append(detection.raw_level_db)
        self._frames_since_delay_update += 1
        # Not while counting what may be the caller: their voice is no echo to measure.
        if self._frames_since_delay_update >= DELAY_UPDATE_FRAMES and not any(self._recent):
            self._frames_since_delay_update = 0
            self._update_echo_path()
        if self._state is BargeInState.BARGE_IN or not self.config.enabled:
            return BargeInState.NONE
        if self._state is BargeInState.CANDIDATE:
            if detection.event in (SpeechEvent.ENDED, SpeechEvent.CUT_AT_MAX_LENGTH):
                self._state = BargeInState.NONE  # the utterance ended unconfirmed: it was not words
                self._recent.clear()
                return BargeInState.NONE
            return self._outlasts_backchannel(detection)
        qualifies = self._qualifies(detection)
        self._recent.append(qualifies)
        if not qualifies or sum(self._recent) < self._needed_frames:
            return BargeInState.NONE
        self._state = BargeInState.CANDIDATE if self.config.confirm_characters else BargeInState.BARGE_IN
        self._held_frames = self._quiet_frames = 0
        log.debug("%s: %d frames above the echo estimate %.1f dBFS", self._state.value, sum(self._recent),
                  self.echo_estimate_db)
        return self._state

    def hold(self) -> None:
        """Hold the barge-in just decided as a possible back-channel (`backchannel_max_ms`): a
        CANDIDATE again, until the speech outlasts a back-channel or its words confirm it."""
        if self._state is BargeInState.BARGE_IN:
            self._state = BargeInState.CANDIDATE
            self._held_frames = self._quiet_frames = 0

    @property
    def quiet_ms(self) -> int:
        """How long the held candidate's speech has not sounded like the caller: the bot's echo
        keeps a VAD voiced, this is the caller's own silence."""
        return self._quiet_frames * FRAME_MS

    def _qualifies(self, detection: Detection) -> bool:
        """Whether this frame sounds like the caller: speech clearly above the bot's echo and the line's background."""
        threshold = max(self.echo_estimate_db + self.config.echo_margin_db,
                        detection.noise_floor_db + self.config.noise_margin_db)
        if self.config.talker_margin_db is not None and detection.caller_level_db is not None:
            # Once the caller was heard, someone far quieter is someone else: a talker behind them.
            threshold = max(threshold, detection.caller_level_db - self.config.talker_margin_db)
        # Until the line's background is known, babble behind the caller cannot be told from them.
        # The suppressed level, not the raw one, is compared: babble survives the VAD, and only
        # the suppressor takes it (and not the caller) well below the floor. confirmed_speech:
        # with Silero on, it must hear speech too (a knock or a beep is voiced to webrtcvad).
        return detection.confirmed_speech and detection.noise_floor_settled and detection.level_db > threshold

    def _outlasts_backchannel(self, detection: Detection) -> BargeInState:
        """A candidate held as a possible back-channel becomes a barge-in when the caller is still
        speaking `backchannel_max_ms` after it qualified (the silence after 嗯 does not count).
        Not when the configuration waits for recognised characters (`confirm_characters`)."""
        self._held_frames += 1
        qualifies = self._qualifies(detection)
        self._quiet_frames = 0 if qualifies else self._quiet_frames + 1
        config = self.config
        if (not config.backchannel_max_ms or config.confirm_characters
                or self._held_frames * FRAME_MS < config.backchannel_max_ms or not qualifies):
            return BargeInState.NONE
        self._state = BargeInState.BARGE_IN
        log.debug("barge-in: speech went on %d ms, longer than a back-channel", self._held_frames * FRAME_MS)
        return self._state

    def confirm(self, partial_text: str) -> bool:
        """Whether this partial transcript confirms the pending candidate: True once, when it
        holds `confirm_characters` characters (at least one) and, when back-channels are held,
        is not one (the caller is then barging in)."""
        if self._state is not BargeInState.CANDIDATE or count_characters(partial_text) < max(
                1, self.config.confirm_characters):
            return False
        if self.config.backchannel_max_ms and is_backchannel(partial_text):
            return False
        self._state = BargeInState.BARGE_IN
        log.debug("barge-in confirmed by %r", partial_text)
        return True

