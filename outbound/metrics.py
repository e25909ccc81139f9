"""The dialler's metrics (trust/metrics.py serves them): dial attempts and what the answered
calls' conversations came to, by campaign (a campaign file's id, never a customer)."""

from __future__ import annotations

from prometheus_client import Counter

# result: answered | no_answer | busy | failed | unknown | not_sent (outbound/originator.py), as the
# OriginateResponse says; `answered` counts a line that answered, a person or a machine.
DIAL_ATTEMPTS = Counter("ivr_outbound_attempts_total", "Outbound dial attempts, by campaign and result",
                        ["campaign", "result"])
# Of those answered, the ones Asterisk's AMD() later found to be an answering machine (the queue
# records them as `machine`): people reached = answered - machines.
ANSWERING_MACHINES = Counter("ivr_outbound_answering_machines_total",
                             "Answered outbound calls an answering machine took (AMD), by campaign", ["campaign"])
# outcome: one of outbound.queue.CONVERSATION_OUTCOMES, as the phone gateway reports it.
CONVERSATION_OUTCOMES = Counter("ivr_outbound_conversation_outcomes_total",
                                "What answered outbound calls came to, by campaign and outcome",
                                ["campaign", "outcome"])
