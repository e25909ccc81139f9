"""A dialler process for the queue tests: claims, decides and "dials" attempts of one database
at a fixed time, appending each dial to a shared log (one write per line, O_APPEND) before it
reports a result — as the real dialler records `dialling`, then sends the Originate.

    python -m tests.outbound.dial_worker DB_URL OWNER NOW_ISO LOG [--hang-after N]

`--hang-after N`: it reports no result for its first N dials and then blocks (the test kills it with SIGKILL),
leaving N attempts in `dialling`.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

from outbound.compliance import Compliance
from outbound.queue import Contact, Queue
from tests.outbound.helpers import make_campaign

LEASE = timedelta(minutes=3)
CAMPAIGN = make_campaign("worker_campaign", max_channels=500)


def contact_of(customer_id: str) -> Contact:
    return Contact(customer_id=customer_id, number_ref=f"ref-{customer_id}", timezone="Asia/Shanghai",
                   do_not_call=False, marketing_opt_out=False, still_selected=True)


def log_dial(log: Path, attempt_id: str, owner: str) -> None:
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, f"{attempt_id} {owner}\n".encode())
    finally:
        os.close(descriptor)


def work(url: str, owner: str, now: datetime, log: Path, hang_after: int | None) -> int:
    queue = Queue(url)
    compliance = Compliance()
    campaigns = {CAMPAIGN.id: CAMPAIGN}
    dials = 0
    while True:
        queue.reap(now, campaigns)
        claimed = queue.claim(owner, now, LEASE, 7)
        if not claimed:
            return dials
        for item in claimed:
            decision = queue.decide(item, owner, CAMPAIGN, compliance, contact_of(item.customer_id), now)
            if decision is None or not decision.allowed:
                continue
            log_dial(log, item.attempt_id, owner)
            dials += 1
            if hang_after is not None:
                if dials < hang_after:
                    continue  # waiting for the result, which never comes
                (log.parent / f"{owner}.hung").write_text(str(dials))
                while True:  # killed here: N attempts stay `dialling`
                    time.sleep(60)
            queue.complete(item.attempt_id, CAMPAIGN, "answered", now, reason="worker")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("owner")
    parser.add_argument("now")
    parser.add_argument("log", type=Path)
    parser.add_argument("--hang-after", type=int)
    args = parser.parse_args()
    work(args.url, args.owner, datetime.fromisoformat(args.now), args.log, args.hang_after)


if __name__ == "__main__":
    main()
