"""The web server's metrics (trust/metrics.py serves them): the desk's relay of chat lines to
and from Rasa, and the agent desk's open event streams."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from trust.metrics import LATENCY_BUCKETS

# `do`: join, say, leave, withdraw or read (bot/channels.py's live-agent route).
RELAYED = Counter("ivr_web_relay_requests_total", "Live-chat requests relayed to Rasa, by kind and result",
                  ["do", "result"])
RELAY_LATENCY = Histogram("ivr_web_relay_duration_seconds",
                          "Time Rasa took to answer a relayed live-chat request (a read may wait for news)",
                          ["do"], buckets=LATENCY_BUCKETS)
DESK_STREAMS = Gauge("ivr_web_desk_streams", "Agent desk event streams (SSE) open now")
