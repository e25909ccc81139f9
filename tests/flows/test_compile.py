"""The compiler turns every flow into an intent, a form and its start/finish rules."""

from __future__ import annotations

from pathlib import Path

import yaml

from flowspec.compile_rasa import HEADER, compile_all
from flowspec.model import load_flowset


def test_every_flow_becomes_intent_form_rules_and_examples(tmp_path: Path) -> None:
    flowset = load_flowset()
    compile_all(flowset, tmp_path)
    domain_text = (tmp_path / "domain.yml").read_text(encoding="utf-8")
    assert domain_text.startswith(HEADER)
    domain = yaml.safe_load(domain_text)
    rules = yaml.safe_load((tmp_path / "data" / "rules.yml").read_text(encoding="utf-8"))["rules"]
    nlu = yaml.safe_load((tmp_path / "data" / "nlu.yml").read_text(encoding="utf-8"))["nlu"]
    examples = {block["intent"]: block["examples"].count("\n- ") + 1 for block in nlu}
    rule_names = {rule["rule"] for rule in rules}
    for flow in flowset.flows.values():
        assert flow.id in domain["intents"]
        assert domain["forms"][flow.form_name]["required_slots"] == list(flow.slot_names)
        assert f"validate_{flow.form_name}" in domain["actions"]
        assert {f"{flow.id}: start", f"{flow.id}: finish"} <= rule_names
        assert examples[flow.id] == len(flow.examples)
    for name in flowset.all_slot_names():
        assert f"action_ask_{name}" in domain["actions"]


def test_voice_and_outbound_get_the_voice_wording(tmp_path: Path) -> None:
    compile_all(load_flowset(), tmp_path)
    greet = yaml.safe_load((tmp_path / "domain.yml").read_text(encoding="utf-8"))["responses"]["utter_greet"]
    conditioned = {v["condition"][0]["value"]: v["text"] for v in greet if "condition" in v}
    default = [v for v in greet if "condition" not in v]
    assert set(conditioned) == {"voice", "outbound"} and len(default) == 1
    assert conditioned["voice"] == load_flowset().shared_intents["greet"].response.voice


def test_bank_names_and_aliases_stay_whole_words(tmp_path: Path) -> None:
    compile_all(load_flowset(), tmp_path)
    dictionary = (tmp_path / "jieba" / "userdict.txt").read_text(encoding="utf-8")
    for bank in load_flowset().banks:
        assert f"{bank['name']} 1000 n" in dictionary
