"""Agent accounts: who may log in to the desk, under which name, and what each may do.

Accounts come from a YAML file (AGENT_ACCOUNTS_FILE) checked against
ivr_config/agents.schema.json. Passwords are stored only as scrypt hashes; make one with
`python -m web.accounts hash` (the password is read from standard input, never an argument).
A file marked `development_only: true` (the repository's own, whose passwords are published)
is refused unless IVR_ENV=development.

Roles: `agent` takes hand-overs and talks to customers; `reviewer` decides held account
actions; `supervisor` does both and may close a case another agent holds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ivr_config.loader import ConfigError, load_yaml
from trust.env_secrets import development_mode

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "ivr_config" / "agents.schema.json"
# scrypt's cost: about 50 ms a check here, which the login throttle multiplies for a guesser.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 12
PERMISSIONS = {
    "agent": frozenset({"handle"}),
    "reviewer": frozenset({"review"}),
    "supervisor": frozenset({"handle", "review", "supervise"}),
}


class AccountsError(ConfigError):
    """The accounts file is broken, or a development file outside development."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    given = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                           maxmem=128 * int(n) * int(r) * 2)
    return hmac.compare_digest(given, base64.b64decode(digest))


@dataclass(frozen=True)
class Agent:
    login: str
    display_name: str  # what the customer sees next to the agent's messages
    roles: frozenset[str]

    def may(self, permission: str) -> bool:
        return any(permission in PERMISSIONS[role] for role in self.roles)


@dataclass(frozen=True)
class _Account:
    agent: Agent
    password_hash: str


# Checked when the login names no account, so an unknown name costs as much time as a known one.
_NOBODY = hash_password(secrets.token_hex(16))


class Accounts:
    def __init__(self, accounts: Mapping[str, _Account]) -> None:
        self._accounts = dict(accounts)

    def __len__(self) -> int:
        return len(self._accounts)

    def authenticate(self, login: str, password: str) -> Agent | None:
        account = self._accounts.get(login.strip())
        matches = password_matches(password, account.password_hash if account else _NOBODY)
        return account.agent if account and matches else None

    def get(self, login: str) -> Agent | None:
        account = self._accounts.get(login)
        return account.agent if account else None


def load_accounts(path: Path | str, env: Mapping[str, str] = os.environ) -> Accounts:
    data = load_yaml(path, SCHEMA_PATH, AccountsError)
    if data.get("development_only") and not development_mode(env):
        raise AccountsError(f"{path}: development accounts (their passwords are published): give "
                            "AGENT_ACCOUNTS_FILE your own accounts, or IVR_ENV=development on a developer's machine")
    accounts: dict[str, _Account] = {}
    for index, raw in enumerate(data["agents"]):
        if raw["login"] in accounts:
            raise AccountsError(f"{path}: agents[{index}].login: {raw['login']!r} is listed twice")
        agent = Agent(raw["login"], raw["display_name"], frozenset(raw["roles"]))
        accounts[agent.login] = _Account(agent, raw["password_hash"])
    return Accounts(accounts)


def main(argv: list[str]) -> int:
    if argv != ["hash"]:
        print("usage: python -m web.accounts hash   (reads the password from standard input)", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        print(f"a password needs at least {MIN_PASSWORD_LENGTH} characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
