"""The scaled topology's lock store (bot/lock_store.py): one turn of a conversation at a time
across Rasa processes, a waiting turn keeping its ticket alive, each step one atomic script;
against a real Redis (Debian's redis-server, as the scaled topology runs it) from Rasa's
environment (lock_scenarios.py). And the single process's lock in memory, whose waiting turns
keep their tickets alive too (bot/rasa_launcher.py)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from stack.scaled import redis_server
from stack.services import ROOT, free_port, started
from tests.rasa_scenarios import needs_rasa, run_in_rasa

SCENARIOS = ROOT / "tests" / "scale" / "lock_scenarios.py"
pytestmark = needs_rasa


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    port, password, run_dir = free_port(), secrets.token_hex(16), tmp_path_factory.mktemp("redis")
    with started([redis_server(port, password, Path(run_dir))], Path(run_dir)):
        return run_in_rasa(SCENARIOS, str(port), password)


def test_a_turn_nobody_waits_for_takes_two_round_trips_and_leaves_no_lock(seen: dict[str, Any]) -> None:
    # Rasa's RedisLockStore: get, set, get to take it; get, set, get, delete to release it.
    assert seen["commands"] == ["EVALSHA", "EVALSHA"]
    assert seen["left_behind"] == 0


def test_a_held_lock_is_stored_as_rasa_stores_it_and_expires_with_its_ticket(seen: dict[str, Any]) -> None:
    assert seen["held_tickets"] == [0]
    assert 0 < seen["held_key_ms_left"] <= 20_001


def test_a_ticket_asked_for_again_is_the_same_ticket(seen: dict[str, Any]) -> None:
    assert seen["sent_twice"] == [[0, 1], [0, 1]]
    assert seen["sent_twice_tickets"] == [0]


def test_turns_of_one_conversation_on_two_processes_are_served_one_at_a_time(seen: dict[str, Any]) -> None:
    assert seen["together"] == {"most_inside": 1, "served": 8}


def test_a_turn_behind_a_killed_process_keeps_its_ticket_and_is_served(seen: dict[str, Any]) -> None:
    # Issued together with two seconds each: without its renewal, the waiting ticket expires too.
    assert seen["after_dead_holder"] == "served"


def test_a_waiting_turn_whose_lock_is_gone_is_told_its_place_is_lost(seen: dict[str, Any]) -> None:
    assert seen["lock_deleted"] == "TicketLost"


def test_a_turn_waits_a_bounded_number_of_polls(seen: dict[str, Any]) -> None:
    assert seen["busy"] == "ConversationBusy"


def test_in_one_process_a_turn_behind_one_that_outlasts_the_lock_keeps_its_place(seen: dict[str, Any]) -> None:
    assert seen["in_memory_rasa"] == "LockError"  # Rasa's: its ticket expired with the holder's
    assert seen["in_memory"] == "served"


@pytest.mark.parametrize("store", ["next_turn_once_released", "next_turn_once_released_by_another_process",
                                   "in_memory_next_turn_once_released"])
def test_a_waiting_turn_is_served_when_the_turn_ahead_ends(seen: dict[str, Any], store: str) -> None:
    # The lock is polled once an hour here: only the release can have woken the second turn.
    assert seen[store] == {"waited": True, "order": ["first", "second"], "left_watching": 0}


def test_after_redis_dropped_the_releases_subscription_it_is_logged_and_a_release_wakes_again(
        seen: dict[str, Any]) -> None:
    dropped = seen["after_the_subscription_dropped"]
    assert dropped["next_turn_once_released"] == {"waited": True, "order": ["first", "second"], "left_watching": 0}
    # Each process says so once when it drops and once when it is back, not at every attempt.
    assert sorted(line.split(" (")[0] for line in dropped["logged"]) == [
        "lock store: subscribed to the releases again"] * 2 + [
        "lock store: the subscription to the releases dropped"] * 2


def test_a_watched_conversations_release_wakes_its_reader_in_another_process(seen: dict[str, Any]) -> None:
    # The desk's read of a live chat (bot/channels.py) on one process, the customer's turn on another.
    assert seen["watched_from_another_process"] == {"woken": True, "published": ["watched"]}


def test_rasas_step_by_step_lock_writes_are_refused_on_the_atomic_store(seen: dict[str, Any]) -> None:
    assert seen["step_by_step_writes"] == dict.fromkeys(
        ["issue_ticket", "save_lock", "delete_lock", "finish_serving", "cleanup", "update_lock", "get_or_create_lock"],
        "refused")


def test_rasas_own_redis_lock_store_is_refused_and_the_atomic_one_configured(seen: dict[str, Any]) -> None:
    assert "bot.lock_store.AtomicRedisLockStore" in seen["rasas_redis"]
    assert seen["configured"] == "AtomicRedisLockStore"
