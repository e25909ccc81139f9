"""Numbers from the environment (ivr_config/environment.py): a bad one names its variable, in
every service that reads one — the Rasa processes' shared rooms (REDIS_PORT) included."""

from __future__ import annotations

import pytest

from ivr_config.environment import EnvironmentValueError, port_number, whole_number
from stack.scaled import ScaledPorts
from web.config import Settings


@pytest.mark.parametrize("raw", ["six thousand", "0", "70000", "-1", "63 79"])
def test_a_port_that_is_not_one_names_its_variable(raw: str) -> None:
    with pytest.raises(EnvironmentValueError, match=rf"REDIS_PORT must be a port number \(1-65535\), got '{raw}'"):
        port_number({"REDIS_PORT": raw}, "REDIS_PORT", 6379)


def test_unset_or_blank_means_the_default_and_a_number_is_read() -> None:
    assert port_number({}, "REDIS_PORT", 6379) == 6379 == port_number({"REDIS_PORT": " "}, "REDIS_PORT", 6379)
    assert port_number({"REDIS_PORT": "6380"}, "REDIS_PORT", 6379) == 6380
    assert whole_number({"CHAT_WAIT_LIMIT_SECONDS": "0"}, "CHAT_WAIT_LIMIT_SECONDS", 300) == 0  # any wait is too long
    with pytest.raises(EnvironmentValueError, match="CHAT_SESSIONS_PER_SOURCE must be a whole number of at least 1"):
        whole_number({"CHAT_SESSIONS_PER_SOURCE": "0"}, "CHAT_SESSIONS_PER_SOURCE", 10, minimum=1)


def test_the_web_server_takes_a_zero_wait_limit_and_refuses_a_bad_one() -> None:
    secrets = {"RISK_API_TOKEN": "a-long-enough-test-token", "CHAT_SESSION_SECRET": "a-long-enough-test-secret"}
    assert Settings.from_environment({**secrets, "CHAT_WAIT_LIMIT_SECONDS": "0"}).chat_wait_limit_seconds == 0
    with pytest.raises(EnvironmentValueError, match="CHAT_WAIT_LIMIT_SECONDS"):
        Settings.from_environment({**secrets, "CHAT_WAIT_LIMIT_SECONDS": "five minutes"})


def test_the_services_reading_ports_say_which_one_is_wrong() -> None:
    with pytest.raises(EnvironmentValueError, match="REDIS_PORT"):
        ScaledPorts.from_environment(2, {"REDIS_PORT": "redis"})
    with pytest.raises(EnvironmentValueError, match="WEB_PORT"):
        Settings.from_environment({"WEB_PORT": "eighty", "RISK_API_TOKEN": "a-long-enough-test-token",
                                   "CHAT_SESSION_SECRET": "a-long-enough-test-secret"})
