"""A turn waiting for its conversation's lock keeps its ticket alive without ever writing back a
lock another Rasa process changed meanwhile (bot/rasa_launcher.py), against a real Redis (Debian's
redis-server, as the scaled topology runs it) from Rasa's environment (lock_scenarios.py)."""

from __future__ import annotations

import secrets
from pathlib import Path

from stack.scaled import redis_server
from stack.services import ROOT, free_port, started
from tests.rasa_scenarios import needs_rasa, run_in_rasa

SCENARIOS = ROOT / "tests" / "scale" / "lock_scenarios.py"


@needs_rasa
def test_a_waiting_ticket_is_renewed_without_resurrecting_or_dropping_other_processes_tickets(
        tmp_path: Path) -> None:
    port, password = free_port(), secrets.token_hex(16)
    with started([redis_server(port, password, tmp_path)], tmp_path):
        seen = run_in_rasa(SCENARIOS, str(port), password)
    # The holder finished between the renewal's read and write: its ticket stays gone.
    assert seen["finished_renewed"] is True and seen["finished_tickets"] == [1]
    # A newcomer took ticket 2 meanwhile: it is kept, and the waiter's ticket lives on.
    assert seen["newcomer_renewed"] is True and seen["newcomer_tickets"] == [0, 1, 2]
    # Issued together with 20 s each; the waiter's renewed to the full lock lifetime from now.
    assert seen["renewed_lifetime_s"] >= seen["lifetime"] - 20 - 1
    # The lock is gone: the waiter is told its place is lost (not that the conversation is busy).
    assert seen["gone_renewed"] is False
