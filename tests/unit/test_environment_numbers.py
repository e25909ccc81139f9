"""The one settings layer (ivr_config/environment.py): a bad number, switch or secret is a
SettingsError naming its variable, in every service that reads one — the Rasa processes' shared
rooms (REDIS_PORT) included; the tracker store's in tests/security/test_tracker_store.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ivr_config import environment
from ivr_config.environment import SettingsError, port_number, whole_number
from outbound.service import OutboundSettings
from quality.service import QualitySettings
from risk_api.config import Settings as RiskSettings
from stack.scaled import ScaledPorts
from stack.services import Ports
from telephony.ami import AmiConfig
from telephony.gateway import GatewaySettings
from web.config import Settings


@pytest.mark.parametrize("raw", ["six thousand", "0", "70000", "-1", "63 79"])
def test_a_port_that_is_not_one_names_its_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match=rf"REDIS_PORT must be a port number \(1-65535\), got '{raw}'"):
        port_number({"REDIS_PORT": raw}, "REDIS_PORT", 6379)


def test_unset_or_blank_means_the_default_and_a_number_is_read() -> None:
    assert port_number({}, "REDIS_PORT", 6379) == 6379 == port_number({"REDIS_PORT": " "}, "REDIS_PORT", 6379)
    assert port_number({"REDIS_PORT": "6380"}, "REDIS_PORT", 6379) == 6380
    assert whole_number({"CHAT_WAIT_LIMIT_SECONDS": "0"}, "CHAT_WAIT_LIMIT_SECONDS", 300) == 0  # any wait is too long
    with pytest.raises(SettingsError, match="CHAT_SESSIONS_PER_SOURCE must be a whole number of at least 1"):
        whole_number({"CHAT_SESSIONS_PER_SOURCE": "0"}, "CHAT_SESSIONS_PER_SOURCE", 10, minimum=1)


def test_the_web_server_takes_a_zero_wait_limit_and_refuses_a_bad_one() -> None:
    secrets = {"RISK_API_TOKEN": "a-long-enough-test-token", "CHAT_SESSION_SECRET": "a-long-enough-test-secret"}
    assert Settings.from_env({**secrets, "CHAT_WAIT_LIMIT_SECONDS": "0"}).chat_wait_limit_seconds == 0
    with pytest.raises(SettingsError, match="CHAT_WAIT_LIMIT_SECONDS"):
        Settings.from_env({**secrets, "CHAT_WAIT_LIMIT_SECONDS": "five minutes"})


def test_the_services_reading_ports_say_which_one_is_wrong() -> None:
    with pytest.raises(SettingsError, match="REDIS_PORT"):
        ScaledPorts.from_env(2, {"REDIS_PORT": "redis"})
    with pytest.raises(SettingsError, match="WEB_PORT"):
        Settings.from_env({"WEB_PORT": "eighty", "RISK_API_TOKEN": "a-long-enough-test-token",
                                   "CHAT_SESSION_SECRET": "a-long-enough-test-secret"})


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("yes", True), (" TRUE ", True), ("on", True),
                                               ("0", False), ("no", False), ("false", False), ("off", False)])
def test_a_switch_reads_the_usual_spellings(raw: str, expected: bool) -> None:
    assert environment.flag({"WEB_BEHIND_PROXY": raw}, "WEB_BEHIND_PROXY") is expected


def test_a_switch_unset_is_its_default_and_anything_else_names_it() -> None:
    assert environment.flag({}, "KOKORO_PRERENDER_AT_START", True) is True
    with pytest.raises(SettingsError, match="WEB_BEHIND_PROXY must be 1 or 0"):
        environment.flag({"WEB_BEHIND_PROXY": "maybe"}, "WEB_BEHIND_PROXY")


SECRETS = {"RISK_API_TOKEN": "a-long-enough-test-token", "CHAT_SESSION_SECRET": "a-long-enough-test-secret",
           "QUALITY_API_TOKEN": "a-long-enough-quality-token", "OUTBOUND_NUMBER_KEY": "a-long-enough-number-key"}


@pytest.mark.parametrize(("read", "broken"), [
    (Settings.from_env, "WEB_BEHIND_PROXY"), (Settings.from_env, "CHAT_SESSIONS_PER_SOURCE"),
    (QualitySettings.from_env, "QUALITY_KEEP_DAYS"), (QualitySettings.from_env, "QUALITY_PORT"),
    (OutboundSettings.from_env, "OUTBOUND_MAX_IN_FLIGHT"), (RiskSettings.from_env, "RISK_API_PORT"),
    (RiskSettings.from_env, "RISK_API_OTP_SENDS_PER_CUSTOMER_HOUR"),
    (GatewaySettings.from_env, "AUDIOSOCKET_MAX_CALLS"), (GatewaySettings.from_env, "AUDIOSOCKET_SHARED"),
    (AmiConfig.from_env, "ASTERISK_AMI_PORT"), (Ports.from_env, "QUALITY_PORT"),
])
def test_every_service_refuses_a_bad_setting_with_one_error_naming_it(read: Callable[[dict[str, str]], object],
                                                                      broken: str) -> None:
    env = {**SECRETS, "RISK_API_ENGINE_TOKEN": "a-long-enough-engine-token", "ASTERISK_AMI_SECRET": "ami-secret"}
    read(env)  # the same environment, without the bad value, is fine
    with pytest.raises(SettingsError, match=broken):
        read({**env, broken: "lots"})


def test_a_missing_or_development_secret_is_a_settings_error_too() -> None:
    with pytest.raises(SettingsError, match="CHAT_SESSION_SECRET is not set"):
        Settings.from_env({"RISK_API_TOKEN": "a-long-enough-test-token"})
    with pytest.raises(SettingsError, match="development value"):
        GatewaySettings.from_env({"RISK_API_TOKEN": "dev-only-gateway-token-for-tests"})
