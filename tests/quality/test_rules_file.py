"""The rules file and the word lists: broken ones are refused with the file, the place and what
is wrong (the project's one loader, ivr_config/loader.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr_config.loader import ConfigError
from quality.__main__ import main
from quality.rules import CONFIG_DIR, RULES_PATH, load_rules


def copied(tmp_path: Path) -> Path:
    for name in ("rules.yaml", "phrases.yaml"):
        shutil.copy(CONFIG_DIR / name, tmp_path / name)
    return tmp_path / "rules.yaml"


def test_the_shipped_rules_load_and_pass_the_check_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_rules(RULES_PATH).rules["recording_notice"]["phrase"] == "录音"
    assert main(["check"]) == 0
    assert "15 rules, alerts at critical" in capsys.readouterr().out


def test_an_unknown_severity_names_the_file_and_the_rule(tmp_path: Path) -> None:
    rules = copied(tmp_path)
    rules.write_text(rules.read_text().replace("caller_silence: {severity: minor", "caller_silence: {severity: urgent"))
    with pytest.raises(ConfigError, match=r"rules\.yaml: rules\.caller_silence\.severity: 'urgent' is not one of"):
        load_rules(rules)


def test_a_misspelt_setting_is_refused_rather_than_ignored(tmp_path: Path) -> None:
    rules = copied(tmp_path)
    rules.write_text(rules.read_text().replace("bot_silence: {severity: major, seconds: 5}",
                                               "bot_silence: {severity: major, secnds: 5}"))
    with pytest.raises(ConfigError, match=r"rules\.bot_silence"):
        load_rules(rules)


def test_an_anger_prosody_missing_its_rate_is_refused(tmp_path: Path) -> None:
    rules = copied(tmp_path)
    rules.write_text(rules.read_text().replace("prosody: {decibels: 8, characters_per_second: 6.0}",
                                               "prosody: {decibels: 8}"))
    with pytest.raises(ConfigError, match=r"rules\.anger\.prosody: 'characters_per_second' is a required"):
        load_rules(rules)


def test_yaml_that_does_not_parse_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = copied(tmp_path)
    rules.write_text(rules.read_text().replace("alert_at: critical", "alert_at: [critical"))
    with pytest.raises(ConfigError, match=r"rules\.yaml: line \d+, column \d+: invalid YAML"):
        load_rules(rules)
    assert main(["check", str(rules)]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_a_broken_word_list_names_its_own_file(tmp_path: Path) -> None:
    rules = copied(tmp_path)
    (tmp_path / "phrases.yaml").write_text(
        "forbidden: {threat: [上门催收]}\ndebt_detail: [逾期]\nanger: 垃圾\ndistress: []\n")
    with pytest.raises(ConfigError, match=r"phrases\.yaml: anger: '垃圾' is not of type 'array'"):
        load_rules(rules)
