"""The compiler turns every flow into an intent, a form and its start/finish rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from flowspec.compile_rasa import HEADER, compile_all, heard_examples
from flowspec.model import FlowError, load_flowset, load_heard


def test_every_flow_becomes_intent_form_rules_and_examples(tmp_path: Path) -> None:
    flowset = load_flowset()
    compile_all(flowset, tmp_path)
    domain_text = (tmp_path / "domain.yml").read_text(encoding="utf-8")
    assert domain_text.startswith(HEADER)
    domain = yaml.safe_load(domain_text)
    rules = yaml.safe_load((tmp_path / "data" / "rules.yml").read_text(encoding="utf-8"))["rules"]
    nlu = yaml.safe_load((tmp_path / "data" / "nlu.yml").read_text(encoding="utf-8"))["nlu"]
    examples = {block["intent"]: block["examples"].count("\n- ") + 1 for block in nlu}
    intents = {flow.id: flow.examples for flow in flowset.flows.values()}
    intents.update({name: intent.examples for name, intent in flowset.shared_intents.items()})
    heard = heard_examples(flowset.heard, intents)
    rule_names = {rule["rule"] for rule in rules}
    for flow in flowset.flows.values():
        assert flow.id in domain["intents"]
        assert domain["forms"][flow.form_name]["required_slots"] == list(flow.slot_names)
        assert f"validate_{flow.form_name}" in domain["actions"]
        assert {f"{flow.id}: start", f"{flow.id}: finish"} <= rule_names
        assert examples[flow.id] == len(flow.examples) + len(heard.get(flow.id, ()))
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


def test_heard_texts_train_their_intent_while_their_sentence_is_one_of_its_examples() -> None:
    intents = {"bill_inquiry": ("这期账单多少钱", "我的账单"), "reset_login_password": ("登录密码忘了",)}
    heard = {
        "bill_inquiry": (("这期账单多少钱", "这期账单多少前"),  # kept
                         ("我的账单", "登录密码忘了"),  # said like another intent's example: no
                         ("上个月的账单", "上个月的账单呢"),  # no longer an example: no
                         ("我的账单", "  ")),  # nothing heard
        "reset_login_password": (("登录密码忘了", "nove fighter"),  # mostly characters no example uses
                                 ("登录密码忘了", "这期账单多少前")),  # the same text twice: once
    }
    assert heard_examples(heard, intents) == {"bill_inquiry": ["这期账单多少前"]}


def test_compile_adds_the_heard_texts_to_their_intents_examples(tmp_path: Path) -> None:
    flowset = load_flowset()
    said = flowset.flows["bill_inquiry"].examples[0].strip()
    heard_text = said[:-1] + "前" if not said.endswith("前") else said[:-1] + "钱"
    flowset = dataclasses.replace(flowset, heard={"bill_inquiry": ((said, heard_text),)})
    compile_all(flowset, tmp_path)
    nlu = yaml.safe_load((tmp_path / "data" / "nlu.yml").read_text(encoding="utf-8"))["nlu"]
    blocks = {block["intent"]: block["examples"] for block in nlu}
    assert f"- {heard_text}\n" in blocks["bill_inquiry"]
    assert not any(heard_text in examples for intent, examples in blocks.items() if intent != "bill_inquiry")


@pytest.mark.parametrize("body", ["heard: [a, b]\n", "heard:\n  bill_inquiry:\n  - said: 我的账单\n",
                                  "heard:\n  bill_inquiry: 我的账单\n"])
def test_a_malformed_heard_file_is_named_with_its_field(tmp_path: Path, body: str) -> None:
    path = tmp_path / "heard.yml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(FlowError, match="heard"):
        load_heard(path)
