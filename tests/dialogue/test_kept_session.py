"""bot/rasa_launcher.py keeps one aiohttp session per endpoint (the action server's), so custom
action calls reuse a kept-alive connection where Rasa opened a new one for each call; the calls
carry the endpoint's headers and their bodies (the domain's JSON made once) and get their own
answers as before (kept_session_scenario.py, in
Rasa's environment, against a real HTTP server on loopback)."""

from __future__ import annotations

from pathlib import Path

from tests.rasa_scenarios import needs_rasa, run_in_rasa


@needs_rasa
def test_action_calls_share_one_kept_alive_connection() -> None:
    seen = run_in_rasa(Path(__file__).with_name("kept_session_scenario.py"))
    assert seen["rasa"]["connections"] == 4, "Rasa's own session: a connection a call"
    assert seen["kept"]["connections"] == 1
    for way in ("rasa", "kept"):
        assert seen[way]["headers"] == ["Bearer action-token"] * 4
        assert seen[way]["echoes"] == [0, 1, 2, 3]
        # The domain encoded once, then another model's: the server reads every body as it was sent.
        assert seen[way]["bodies_as_sent"] and seen[way]["domain_keys"] > 5
