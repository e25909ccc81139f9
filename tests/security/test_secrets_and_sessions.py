"""Secrets come from the environment and development values stay on developers' machines;
chat session tokens cannot be forged, altered or kept past their expiry; a chat client sends
Rasa an intent only by a button offered to its session."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stack.services import ROOT, SERVICES_VENV, Secrets
from trust import chat_session
from trust.env_secrets import SecretError, check_secret, require_secret

SECRET = "a-signing-secret-for-these-tests"
NOW = 1_800_000_000.0


def test_development_values_only_in_development_mode() -> None:
    with pytest.raises(SecretError, match="RISK_API_ENGINE_TOKEN is a development value"):
        check_secret("RISK_API_ENGINE_TOKEN", "dev-only-risk-engine-token", {})
    assert check_secret("X", "dev-only-risk-engine-token", {"IVR_ENV": "development"})
    with pytest.raises(SecretError, match="not set"):
        require_secret("CHAT_SESSION_SECRET", {})
    with pytest.raises(SecretError, match="shorter"):
        check_secret("X", "short", {})
    assert check_secret("X", "  a-real-secret-of-some-length  ", {}) == "a-real-secret-of-some-length"


def test_make_run_refuses_development_secrets_outside_development() -> None:
    """The Makefile's values with IVR_ENV unset, as a deployment that forgot its secrets would be."""
    env = {key: value for key, value in os.environ.items() if key != "IVR_ENV"}
    env.update({name: f"dev-only-{name.lower()}" for name in Secrets.ENV_NAMES.values()})
    done = subprocess.run([sys.executable, "-m", "stack.run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "development value" in done.stderr and "IVR_ENV=development" in done.stderr


def test_action_server_will_not_start_with_a_development_token() -> None:
    env = {key: value for key, value in os.environ.items() if key != "IVR_ENV"}
    env.update({"ACTION_SERVER_TOKEN": "dev-only-action-server-token", "RISK_API_TOKEN": "x" * 20,
                "SANIC_HOST": "127.0.0.1", "PYTHONPATH": str(ROOT)})
    done = subprocess.run([str(SERVICES_VENV / "bin" / "python"), "-m", "rasa_sdk", "--actions", "bot.actions",
                           "--port", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode != 0
    assert "ACTION_SERVER_TOKEN is a development value" in done.stdout + done.stderr


def test_a_token_names_its_session_until_it_expires() -> None:
    issued = chat_session.issue(SECRET, NOW)
    assert chat_session.verify(SECRET, issued.token, NOW + 60) == issued.session_id
    assert chat_session.verify(SECRET, issued.token, issued.expires_at) is None
    assert chat_session.issue(SECRET, NOW).session_id != issued.session_id, "ids are random, not derived"


@pytest.mark.parametrize("tamper", ["other_secret", "other_session", "longer_life", "truncated", "not_text",
                                    "huge", "version"])
def test_altered_or_forged_tokens_are_refused(tamper: str) -> None:
    issued = chat_session.issue(SECRET, NOW)
    version, session_id, expires, mac = issued.token.split(".")
    token: object = {
        "other_secret": chat_session.issue("another-secret-entirely", NOW).token,
        "other_session": ".".join([version, "0" * 32, expires, mac]),
        "longer_life": ".".join([version, session_id, str(int(expires) + 86400), mac]),
        "truncated": issued.token[:-3],
        "not_text": {"token": issued.token},
        "huge": issued.token + "A" * 10_000,
        "version": ".".join(["v0", session_id, expires, mac]),
    }[tamper]
    assert chat_session.verify(SECRET, token, NOW) is None


@pytest.mark.parametrize("payload", ["/close_account", '/inform{"amount": "3000", "名称": "张三#"}'])
def test_a_button_offered_to_a_session_comes_back_as_its_payload(payload: str) -> None:
    session_id = chat_session.issue(SECRET, NOW).session_id
    clicked = chat_session.offered_choice(SECRET, session_id, payload)
    assert clicked != payload
    assert chat_session.received_text(SECRET, session_id, clicked) == payload
    assert chat_session.received_text(SECRET, session_id, f"  {clicked}\n") == payload


@pytest.mark.parametrize("sent", ["other_session", "other_secret", "other_payload", "unsigned", "typed_entities",
                                  "leading_space", "slashes", "truncated_mac"])
def test_any_other_text_starting_with_a_slash_is_read_as_words(sent: str) -> None:
    mine, theirs = (chat_session.issue(SECRET, NOW).session_id for _ in range(2))
    offered = chat_session.offered_choice(SECRET, mine, "/affirm")
    text = {
        "other_session": chat_session.offered_choice(SECRET, theirs, "/affirm"),
        "other_secret": chat_session.offered_choice("another-secret-entirely", mine, "/affirm"),
        "other_payload": "/deny" + offered[len("/affirm"):],
        "unsigned": "/affirm",
        "typed_entities": '/affirm{"verified_level": "L2"}',
        "leading_space": " /affirm",
        "slashes": "//affirm",
        "truncated_mac": offered[:-1],
    }[sent]
    received = chat_session.received_text(SECRET, mine, text)
    assert not received.startswith("/") and received == text.strip().lstrip("/")


def test_words_are_passed_on_as_they_are() -> None:
    session_id = chat_session.issue(SECRET, NOW).session_id
    assert chat_session.offered_choice(SECRET, session_id, "5分") == "5分", "a button that says words"
    for text in ("我要还款 / 提前还款", "  查账单 ", "", "#affirm"):
        assert chat_session.received_text(SECRET, session_id, text) == text
