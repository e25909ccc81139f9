"""Agent desk accounts for tests: one file with an agent, a second agent, a supervisor and a
reviewer, all with PASSWORD (hashed as `python -m web.accounts hash` would)."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import yaml

from web.accounts import hash_password

PASSWORD = "a-password-for-test-agents"
AGENT, SECOND_AGENT, SUPERVISOR, REVIEWER = "desk-agent", "desk-agent2", "desk-supervisor", "desk-reviewer"
ACCOUNTS = {AGENT: ("小测", ["agent"]), SECOND_AGENT: ("小试", ["agent"]),
            SUPERVISOR: ("测主管", ["supervisor"]), REVIEWER: ("测审核", ["reviewer"])}


def display_name(login: str) -> str:
    return ACCOUNTS[login][0]


@cache
def accounts_file() -> Path:
    """Written once per test process (hashing is deliberately slow)."""
    path = Path(tempfile.mkdtemp(prefix="desk-accounts-")) / "agents.yaml"
    agents = [{"login": login, "display_name": name, "roles": roles, "password_hash": hash_password(PASSWORD)}
              for login, (name, roles) in ACCOUNTS.items()]
    path.write_text(yaml.safe_dump({"agents": agents}, allow_unicode=True), encoding="utf-8")
    return path
