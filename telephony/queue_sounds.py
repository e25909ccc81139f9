"""The sounds Asterisk plays without the bot: the agents' queue's announcement and hold music, the
apologies of the failover path (ivr_config/asterisk/extensions.conf, queues.conf,
musiconhold.conf) and each outbound campaign's message to an answering machine (its
`machine.message`, under the name `outbound.campaigns.machine_prompt` gives the dialler).
Prompts are rendered with the bot's own voice (voice/tts.py, settings from ivr_config/voice.yaml),
so callers hear the same voice with or without the bot.

`python -m telephony.queue_sounds <output dir>` (`make asterisk-sounds`) writes a tree laid out
like Asterisk's data directory (/var/lib/asterisk), to be copied there:

    sounds/zh/<name>.wav       Playback() and periodic-announce names (the dialplan sets
                               CHANNEL(language)=zh, so Asterisk looks in sounds/zh/), and
                               ivr-machine-<campaign>-<digest>: the campaigns' machine messages
    moh/ivr-hold/<name>.wav    hold music of the musiconhold.conf class ivr-hold

Every file is 8 kHz 16-bit mono PCM WAV: Asterisk's `wav` format (format_wav), the rate of the
phone line, so nothing is transcoded twice.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np

from flowspec.model import load_flowset
from outbound.campaigns import CAMPAIGNS_DIR, load_campaigns
from voice.audio import FULL_SCALE, TELEPHONE_RATE, to_pcm, write_wav
from voice.config import load_voice_config
from voice.tts import Synthesizer, TtsConfig, TtsUnavailable

LANGUAGE = "zh"
# Sound name (as the .conf files use it) -> what it says.
PROMPTS: dict[str, str] = {
    "ivr-queue-wait": "坐席正忙，请您耐心等待，我们将尽快为您接通。",
    "ivr-failover-apology": "抱歉，智能客服暂时无法为您服务，正在为您转接人工客服，请稍候。",
    "ivr-agents-unavailable": "抱歉，现在没有空闲的人工客服，请您稍后再拨。再见。",
    "ivr-outbound-apology": "抱歉，系统暂时繁忙，我们稍后再与您联系。再见。",
}
MOH_CLASS = "ivr-hold"
HOLD_MUSIC = "ivr-hold-tones"

# A slow, quiet pentatonic phrase: clearly "you are on hold" (no dead air), never mistaken for
# speech or a ring-back tone, and well below the prompts so the announcement stands out.
_HOLD_NOTES_HZ = (523.25, 659.25, 783.99, 880.00, 783.99, 659.25, 587.33, 523.25)
_NOTE_SECONDS = 0.6
_NOTE_GAP_SECONDS = 0.15
_PHRASE_GAP_SECONDS = 1.2
_HOLD_PEAK = 0.25  # of full scale: ≈ -27 dBFS RMS, some 6 dB under the prompts
_EDGE_SECONDS = 0.02  # raised-cosine fade in and out: no clicks


def hold_tones(sample_rate: int = TELEPHONE_RATE, phrases: int = 4) -> bytes:
    """16-bit mono PCM: `phrases` repetitions of a soft bell-like phrase (music on hold loops it)."""
    t = np.arange(int(_NOTE_SECONDS * sample_rate)) / sample_rate
    envelope = np.exp(-3.0 * t / _NOTE_SECONDS)
    edge = int(_EDGE_SECONDS * sample_rate)
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
    envelope[:edge] *= fade
    envelope[-edge:] *= fade[::-1]
    note_gap = np.zeros(int(_NOTE_GAP_SECONDS * sample_rate))
    parts: list[np.ndarray] = []
    for frequency in _HOLD_NOTES_HZ:
        # A quiet octave overtone makes it a soft chime rather than a test tone.
        tone = np.sin(2 * np.pi * frequency * t) + 0.25 * np.sin(2 * np.pi * 2 * frequency * t)
        parts += [tone / 1.25 * envelope, note_gap]
    parts.append(np.zeros(int(_PHRASE_GAP_SECONDS * sample_rate)))
    phrase = np.concatenate(parts)
    return to_pcm(np.tile(phrase, phrases) * _HOLD_PEAK * FULL_SCALE)


def sounds(campaigns_dir: Path = CAMPAIGNS_DIR) -> dict[str, str]:
    """Every sound to render, name -> words: PROMPTS and the campaigns' machine messages (loaded,
    so checked: short, no debt detail)."""
    machine = {campaign.machine.prompt: campaign.machine.text
               for campaign in load_campaigns(load_flowset(), campaigns_dir).values()
               if campaign.machine.behaviour == "message"}
    return {**PROMPTS, **machine}


async def _render_prompts(synthesizer: Synthesizer, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sounds().items():
        path = folder / f"{name}.wav"
        write_wav(path, await synthesizer.render(text, TELEPHONE_RATE), TELEPHONE_RATE)
        written.append(path)
    return written


def render(output: Path, tts: TtsConfig | None = None) -> list[Path]:
    """Write every prompt and the hold music under `output`; returns the files written."""
    synthesizer = Synthesizer(tts or load_voice_config().tts)
    try:
        written = asyncio.run(_render_prompts(synthesizer, output / "sounds" / LANGUAGE))
    finally:
        synthesizer.close()
    moh = output / "moh" / MOH_CLASS
    moh.mkdir(parents=True, exist_ok=True)
    music = moh / f"{HOLD_MUSIC}.wav"
    write_wav(music, hold_tones(), TELEPHONE_RATE)
    return [*written, music]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telephony.queue_sounds",
        description="Render the Asterisk side's Chinese prompts and hold music (see ivr_config/README.md).")
    parser.add_argument("output", type=Path, help="folder to write; copy its contents into /var/lib/asterisk")
    args = parser.parse_args(argv)
    try:
        written = render(args.output)
    except TtsUnavailable as error:
        print(f"cannot render the prompts: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
