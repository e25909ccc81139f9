"""What an outbound call came to, reported to the dialler (outbound/service.py,
`POST /attempts/{attempt_id}/outcome`) for the attempt it named on the channel (`OriginateId`).

The dialogue core's replies say what happened during the call: who answered (`party`, the
right-party check of flows/shared/right_party.yml) and how each flow ended (`outcome` and its
`flow`; `then`: it went on with another flow). The gateway adds what it did itself: a transfer
to the agents' queue (`handed_over`), a callback it booked (`callback_requested`). When the call
ends it reduces them to one of the dialler's conversation outcomes; a call that ends before any
of them is `hung_up`. The report goes in the background: a dialler
that is slow or down never holds up a call's teardown. A few tries, then a log line; the logs
name the attempt and the outcome, never the customer or a number.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from urllib.parse import quote

import httpx

from outbound.queue import CONVERSATION_OUTCOMES
from voice.dialogue import Reply

log = logging.getLogger(__name__)

# The right-party check's endings: the engine names them as the dialler does.
RIGHT_PARTY_ENDINGS = ("third_party", "third_party_refused", "wrong_number", "opted_out")
# A flow that did what it is for (`done`), as the dialler counts it; any other is `completed`.
DONE_BY_FLOW = {"promise_to_pay": "promise_to_pay", "callback_request": "callback_requested",
                "unsubscribe_marketing": "opted_out"}
# Flow outcomes that are the dialler's own: `paid` once the risk API shows the bill paid,
# `claims_paid` when the customer says so and it does not (flows/overdue_reminder.yml).
OWN_OUTCOMES = ("paid", "claims_paid")
# The strongest of what was seen wins: an opt-out stands whatever came after it, a payment the
# risk API shows says more than a promise, a promise more than a reminder listened to; a person
# who took the call over decides what comes of it after the bot.
PRECEDENCE = ("opted_out", "wrong_number", "third_party_refused", "third_party", "paid", "promise_to_pay",
              "claims_paid", "callback_requested", "handed_over", "refused", "completed")
RETRY_DELAYS_SECONDS = (1.0, 5.0, 15.0)
CLOSE_GRACE_SECONDS = 5.0


def conversation_outcome(replies: Iterable[Reply], handed_over: bool = False, callback_booked: bool = False) -> str:
    """One of CONVERSATION_OUTCOMES for the call's replies, in order, and what the gateway did:
    transferred the call to the agents' queue, booked a callback to the number."""
    seen: set[str] = {name for name, done in (("handed_over", handed_over), ("callback_requested", callback_booked))
                      if done}
    party: str | None = None
    for reply in replies:
        if reply.party:
            party = reply.party
            if party in RIGHT_PARTY_ENDINGS:
                seen.add(party)  # known now, whether or not the call lasts to the flow's end
        if reply.outcome in RIGHT_PARTY_ENDINGS:
            seen.add(reply.outcome)
        elif reply.outcome == "done":
            seen.add(DONE_BY_FLOW.get(reply.flow or "", "completed"))
        elif reply.outcome in OWN_OUTCOMES:
            seen.add(reply.outcome)
        elif reply.outcome == "answer" or reply.then:
            seen.add("completed")  # a reminder heard, whether or not it went on into another flow
        elif reply.outcome == "cancelled" and party == "confirmed":
            seen.add("refused")  # the customer declined; whoever else said 算了 refused nothing
    return next((outcome for outcome in PRECEDENCE if outcome in seen), "hung_up")


class OutcomeReporter:
    """The gateway's client of the dialler's outcome route, with its own token
    (`OUTBOUND_GATEWAY_TOKEN`). Without a URL and token it reports nothing (and says so)."""

    def __init__(self, url: str | None, token: str | None,
                 retry_delays: Sequence[float] = RETRY_DELAYS_SECONDS, timeout_seconds: float = 5.0) -> None:
        self._http = httpx.AsyncClient(base_url=url, timeout=timeout_seconds,
                                       headers={"Authorization": f"Bearer {token}"}) if url and token else None
        self._retry_delays = tuple(retry_delays)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.reported = 0

    @property
    def enabled(self) -> bool:
        return self._http is not None

    def report(self, call_uuid: str, attempt_id: str | None, outcome: str) -> None:
        """Send in the background: the caller (a call's teardown) never waits for the dialler."""
        if outcome not in CONVERSATION_OUTCOMES:
            raise ValueError(f"not a conversation outcome: {outcome!r}")
        if self._http is None:
            log.info("call %s: outcome %s not reported (OUTBOUND_URL / OUTBOUND_GATEWAY_TOKEN unset)", call_uuid,
                     outcome)
            return
        if not attempt_id:
            log.warning("call %s: outbound call without an OriginateId: outcome %s not reported", call_uuid, outcome)
            return
        if self._closing:
            # A call torn down after the gateway began to stop: its client is (being) closed.
            log.error("attempt %s: outcome %s not reported: the gateway is stopping", attempt_id, outcome)
            return
        task = asyncio.create_task(self._send(attempt_id, outcome), name=f"outcome-{attempt_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, attempt_id: str, outcome: str) -> None:
        assert self._http is not None
        path = f"/attempts/{quote(attempt_id, safe=':')}/outcome"
        tries = 0
        for delay in (*self._retry_delays, None):
            tries += 1
            try:
                answer = await self._http.post(path, json={"outcome": outcome})
            except httpx.HTTPError as error:
                problem = type(error).__name__
            else:
                if answer.is_success:
                    self.reported += 1
                    log.info("attempt %s: outcome %s reported to the dialler", attempt_id, outcome)
                    return
                problem = f"HTTP {answer.status_code}"
                if answer.status_code < 500:
                    break  # refused (unknown attempt, wrong token): another try would be refused too
            if delay is not None:
                await asyncio.sleep(delay)
        log.error("attempt %s: outcome %s not reported to the dialler after %d tries (%s)", attempt_id, outcome, tries,
                  problem)

    async def close(self) -> None:
        """Reports under way get a few seconds to finish; then they are given up (and logged as such).
        A report asked for from now on is logged, not sent."""
        self._closing = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE_SECONDS)
            for task in pending:
                task.cancel()
                log.error("%s: given up at shutdown", task.get_name())
        if self._http is not None:
            await self._http.aclose()
