"""What Rasa's tracker store keeps (bot/tracker_store.py): no one-time code or ID digits in any
form, other personal data masked, everything encrypted with TRACKER_STORE_KEY, nothing past
TRACKER_RETENTION_DAYS. The store runs in Rasa's own environment (tracker_store_scenarios.py);
these tests read what it printed and the SQLite file it wrote, byte for byte."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack
from tests.dialogue.conftest import CUSTOMERS, ChatSession
from tests.rasa_scenarios import needs_rasa, run_in_rasa
from trust.logs import session_ref

SCENARIOS = Path(__file__).with_name("tracker_store_scenarios.py")
KEY = "a-tracker-store-key-for-these-tests"
OTHER_KEY = "another-tracker-store-key-for-these-tests"
SENDER = "conversation-under-test"
# What the scripted conversation says: none of it may be in the file in clear. (Its ID digits,
# 7305, are checked in what the store gives back: four characters can occur in any ciphertext.)
SECRETS = ("482913", "661177", "13812345678", "张三")
IDENTITY = {"phone_number": "phone", "customer_name": "name", "id_last4": "id_last4"}

pytestmark = needs_rasa


def run(scenario: str, db: Path, key: str = KEY, **env: str) -> dict[str, Any]:
    # A production-like environment: the key is a real one, IVR_ENV is not development.
    seen: dict[str, Any] = run_in_rasa(SCENARIOS, scenario, str(db), timeout=180, env={
        "IVR_ENV": "production", "TRACKER_STORE_KEY": key, "TRACKER_RETENTION_DAYS": "30", **env})
    return seen


def assert_nothing_in_clear(db: Path, *secrets: str) -> None:
    wal = db.with_name(db.name + "-wal")  # pages not yet checkpointed into the file
    raw = db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    for secret in secrets:
        for form in (secret.encode(), json.dumps(secret)[1:-1].encode()):  # as JSON writes 张三: \u5f20…
            assert form not in raw, f"{secret!r} is in the database file"
    with sqlite3.connect(db) as connection:
        rows = [data for (data,) in connection.execute("SELECT data FROM events")]
    assert rows and all(re.fullmatch(r"[0-9a-f]{8}:gAAAAA[A-Za-z0-9_=-]+", data) for data in rows), rows[:3]


def user_texts(stored: dict[str, Any]) -> list[str]:
    return [text for kind, text, _ in stored["events"] if kind == "user"]


def test_codes_and_id_digits_never_reach_the_database(tmp_path: Path) -> None:
    db = tmp_path / "tracker.sqlite3"
    seen = run("conversation", db)
    assert_nothing_in_clear(db, *SECRETS)
    with sqlite3.connect(db) as connection:  # the project's engine: write-ahead log, not a rollback journal
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # The turn being handled had the real answers; only what was stored changed.
    assert seen["memory"]["texts"][1:] == ["7305", "我的验证码是 482913", "661177"]
    assert (seen["memory"]["otp_code"], seen["memory"]["id_last4"]) == ("661177", "7305")
    stored = seen["stored"]
    assert user_texts(stored) == ["我叫张*，手机138****5678，想查账单", "[redacted]", "[redacted]", "[redacted]"]
    assert all(entities == [] for entities in stored["entities"])
    for slot in ("otp_code", "id_last4"):
        assert {value for kind, name, value in stored["events"] if kind == "slot" and name == slot} == {None}
    assert not re.search(r"7305|482913|661177", json.dumps(stored))
    # What the engine needs in later turns (encrypted at rest) is still there.
    assert stored["slots"] == {"otp_code": None, "id_last4": None, "customer_name": "张三",
                               "caller_number": "13812345678", "requested_slot": None}
    bot_texts = [text for kind, text, _ in stored["events"] if kind == "bot"]
    assert "张先生您好，您本期账单为1,234.56元，到期日2026-12-04。" in bot_texts


def test_a_conversation_whose_code_was_set_goes_on_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "tracker.sqlite3"
    run("conversation", db)  # ends with otp_code set in memory
    seen = run("restart", db)  # a new process, as after a Rasa restart
    before, after = seen["before"], seen["after"]
    assert before["slots"]["otp_code"] is None, "a redacted code reads back unset, never as an answer"
    assert after["events"][:len(before["events"])] == before["events"]
    assert [kind for kind, _, _ in after["events"][len(before["events"]):]] == ["slot", "user", "slot", "slot",
                                                                              "slot", "action"]
    assert user_texts(after)[-1] == "[redacted]"
    assert_nothing_in_clear(db, *SECRETS, "135790")


def test_another_key_is_a_clear_error_and_the_customer_starts_afresh(tmp_path: Path) -> None:
    db = tmp_path / "tracker.sqlite3"
    run("conversation", db)
    seen = run("wrong_key", db, key=OTHER_KEY)
    assert "do not decrypt with TRACKER_STORE_KEY" in seen["error"] and "starts afresh" in seen["error"]
    assert SENDER not in seen["error"], "logs name a conversation by its digest"
    assert user_texts(seen["afresh"]) == ["你好"]
    with sqlite3.connect(db) as connection:
        kept = connection.execute("SELECT count(*) FROM events WHERE sender_id = ?", (SENDER,)).fetchone()[0]
    assert kept > len(seen["afresh"]["events"]), "the other key's events are kept, not deleted"


def test_events_kept_opened_in_memory_read_as_the_database_holds_them(tmp_path: Path) -> None:
    seen = run("opened_in_memory", tmp_path / "tracker.sqlite3")
    assert seen["kept"]["events"] and seen["kept"] == seen["fresh"] == seen["few"][0] == seen["few"][1]
    assert seen["kept"]["slots"]["otp_code"] is None, "what is kept opened is the stored, redacted copy"
    assert seen["error"] and "1 of" in seen["error"] and "do not decrypt" in seen["error"]


def test_a_turn_reads_the_latest_session_and_the_full_tracker_every_session(tmp_path: Path) -> None:
    seen = run("sessions", tmp_path / "tracker.sqlite3")
    latest, full = seen["latest"]["events"], seen["full"]["events"]
    assert [kind for kind, _, _ in latest] == ["session_started", "action", "user"], latest
    assert len(full) == seen["before"] + 4 and full[-3:] == latest
    assert seen["stored"] == len(latest)


def test_a_save_waiting_for_the_disk_leaves_the_event_loop_serving(tmp_path: Path) -> None:
    seen = run("slow_disk", tmp_path / "tracker.sqlite3")
    assert seen["waits"] == [True] * len(seen["waits"]) and len(seen["waits"]) == 4, seen["waits"]  # one a turn
    assert user_texts(seen["stored"])[0] == "我叫张*，手机138****5678，想查账单"
    assert seen["many"] == [[f"第{n}个", f"好的{n}"] for n in range(8)]


def test_a_failing_database_refuses_the_turn_instead_of_carrying_on_in_memory(tmp_path: Path) -> None:
    """Rasa's fail-safe wrapper would log the database's error (the SQL's parameters: the sender
    id) and keep the turn in an in-memory store; the launcher's wrapper fails the turn instead."""
    seen = run("database_down", tmp_path / "tracker.sqlite3")
    ref = session_ref(SENDER)
    refused = "the tracker store's database failed (OperationalError); the turn is refused"
    assert seen["errors"] == {"read": f"TrackerStoreUnavailable: conversation {ref} not read: {refused}",
                              "save": f"TrackerStoreUnavailable: conversation {ref} not saved: {refused}"}
    assert not seen["fell_back_to_memory"] and seen["wrapper"] == "FailSafeTrackerStore"
    errors = [line for line in seen["logged"] if line.startswith("ERROR")]
    assert len(errors) == 2 and all(ref in line for line in errors), seen["logged"]
    assert not any(SENDER in line or "482913" in line or "SQL" in line for line in seen["logged"]), seen["logged"]


def test_events_past_the_retention_go_at_start_and_at_most_hourly(tmp_path: Path) -> None:
    seen = run("retention", tmp_path / "tracker.sqlite3")
    # 40 days old at start: deleted. 31 days old: kept until the next hourly pass, 1 day old: kept.
    assert seen["counts"] == {"after_start": 0, "old_saved": 1, "half_hour": 2, "after_an_hour": 1}
    assert seen["keys"] == ["conversation-after_an_hour"]


def test_events_rasas_own_store_wrote_in_clear_are_protected_at_start(tmp_path: Path) -> None:
    db = tmp_path / "tracker.sqlite3"
    seen = run("legacy", db)
    assert_nothing_in_clear(db, *SECRETS)
    assert user_texts(seen["stored"]) == ["我叫张*，手机138****5678，想查账单", "[redacted]", "[redacted]",
                                          "[redacted]"]


def test_endpoints_yml_configures_the_protected_store(tmp_path: Path) -> None:
    db = tmp_path / "tracker.sqlite3"
    seen = run("endpoint", db, RASA_TRACKER_DB=str(db), ACTION_SERVER_URL="http://127.0.0.1:1/webhook",
               ACTION_SERVER_TOKEN="x" * 20)
    assert seen == {"type": "ProtectedSQLTrackerStore", "db": str(db)}


@pytest.mark.parametrize(("env", "error"), [
    ({"TRACKER_STORE_KEY": "dev-only-tracker-store-key"}, "SecretError: TRACKER_STORE_KEY is a development value"),
    ({"TRACKER_STORE_KEY": ""}, "SecretError: TRACKER_STORE_KEY is not set"),
    ({"TRACKER_RETENTION_DAYS": "half a year"},
     "SettingsError: TRACKER_RETENTION_DAYS must be a whole number of at least 1"),
])
def test_the_store_will_not_start_without_a_usable_configuration(tmp_path: Path, env: dict[str, str],
                                                                 error: str) -> None:
    assert error in run("refused", tmp_path / "tracker.sqlite3", **env)["error"]


@pytest.mark.stack
def test_the_running_assistant_stores_no_code_or_id_digits(running_stack: Stack) -> None:
    customer = CUSTOMERS.take("normal")
    session = ChatSession(running_stack)
    replies = session.send("我想提前还清")
    asked: list[str] = []
    code: str | None = None
    for _ in range(5):  # answer the identity questions, the SMS code included
        expected = [reply["custom"]["expect"] for reply in replies if "expect" in (reply.get("custom") or {})]
        slot = expected[-1]["slot"] if expected else None
        if slot not in (*IDENTITY, "otp_code"):
            break
        asked.append(slot)
        if slot == "otp_code":
            code = running_stack.latest_otp(customer["phone"])
        replies = session.send(code if slot == "otp_code" else customer[IDENTITY[slot]])
    assert asked[-2:] == ["id_last4", "otp_code"] and code, session.dump()
    tracker = running_stack.tracker(session.sender)
    assert tracker["slots"]["verified_level"] == "L2", session.dump()
    texts = [event["text"] for event in tracker["events"] if event["event"] == "user"]
    phone = customer["phone"]
    assert texts[-2:] == ["[redacted]", "[redacted]"] and f"{phone[:3]}****{phone[-4:]}" in texts, texts
    assert_nothing_in_clear(running_stack.tracker_db, code, phone, customer["name"])
    assert_not_in_logs(running_stack, session.sender, code, phone, customer["name"], customer["id_number"])


def assert_not_in_logs(stack: Stack, sender: str, code: str, *personal: str) -> None:
    """Every log the stack's services wrote during the run (tests before this one included)."""
    logs = sorted(stack.log_dir.glob("*.log"))
    assert {"rasa.log", "actions.log", "risk_api.log"} <= {log.name for log in logs}, logs
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        assert sender not in text, f"the conversation's id is in {log.name}: logs name it by its digest"
        for value in personal:
            assert value not in text and json.dumps(value)[1:-1] not in text, f"{value!r} is in {log.name}"
        # Six digits also occur by chance (process ids, ports): look where a code could be told.
        near = [line for line in text.splitlines() if session_ref(sender) in line or re.search(
            r"验证码|otp|code", line, re.IGNORECASE)]
        assert not [line for line in near if re.search(rf"(?<!\d){code}(?!\d)", line)], f"the code is in {log.name}"
