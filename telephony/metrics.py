"""The phone gateway's metrics (trust/metrics.py serves them on its health port): calls,
their length, the bot's audio frames sent late, barge-ins and pauses for a back-channel. Labels:
the channel (voice or outbound) only, never a caller's number or a call id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from voice.call import CallResult
from voice.turns import PLAYBACK_RESUMED

CHANNELS = frozenset({"voice", "outbound"})
BARGE_IN_MARK = "barge-in ("  # TurnTaking's timeline entry for each barge-in (voice/turns.py)
CALL_SECONDS_BUCKETS = (10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 1800.0)

CALLS = Counter("ivr_gateway_calls_total", "Calls the gateway served, by channel", ["channel"])
CALLS_ACTIVE = Gauge("ivr_gateway_calls_active", "Calls in progress now")
CALL_SECONDS = Histogram("ivr_gateway_call_duration_seconds", "Length of the calls served, by channel",
                         ["channel"], buckets=CALL_SECONDS_BUCKETS)
FRAMES_SENT = Counter("ivr_gateway_frames_sent_total", "Audio frames of the bot's speech sent to callers")
LATE_FRAMES = Counter("ivr_gateway_late_frames_total",
                      "Audio frames sent more than a frame period after their deadline (the process is overloaded)")
BARGE_INS = Counter("ivr_gateway_barge_ins_total", "Times a caller interrupted the bot, by channel", ["channel"])
PLAYBACKS_RESUMED = Counter("ivr_gateway_playback_resumed_total",
                            "Times the bot paused for the caller's speech and played on (a back-channel, or a sound "
                            "that was no barge-in), by channel", ["channel"])


def channel_label(channel: str) -> str:
    return channel if channel in CHANNELS else "other"


def call_began(channel: str) -> None:
    CALLS.labels(channel_label(channel)).inc()
    CALLS_ACTIVE.inc()


def call_ended(channel: str, result: CallResult | None) -> None:
    """After `call_began`, however the call ended (`result` None: the pipeline failed)."""
    CALLS_ACTIVE.dec()
    if result is None:
        return
    label = channel_label(channel)
    CALL_SECONDS.labels(label).observe(result.seconds)
    FRAMES_SENT.inc(result.output.frames_sent)
    LATE_FRAMES.inc(result.output.late_frames)
    BARGE_INS.labels(label).inc(sum(1 for _, event in result.turns.timeline if event.startswith(BARGE_IN_MARK)))
    PLAYBACKS_RESUMED.labels(label).inc(sum(1 for _, event in result.turns.timeline if event == PLAYBACK_RESUMED))
