"""Whatever a customer says, types or a recogniser mishears, a validator answers a value or None."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.actions.validators import VALIDATORS, Utterance, validate
from flowspec.model import Response, Slot

CHINESE_NUMERALS = "零〇一二两三四五六七八九十百千万亿点幺块元号月日天周星期礼拜"
NUMBERISH = st.text(alphabet=st.sampled_from(CHINESE_NUMERALS + "0123456789.,xX 是不好对的吧 😀<>{}"), max_size=40)
TEXT = NUMBERISH | st.text(max_size=40)
SLOT_OPTIONS = {
    "digits": {"length": 4},
    "choice": {"choices": [{"value": "a", "say": "第一", "words": ["一"]}, {"value": "b", "say": "第二"}]},
    "amount": {"min": 0, "max": 100000},
}
BANKS = [{"name": "招商银行", "aliases": ["招行"]}]


@settings(max_examples=300, deadline=None)
@given(text=TEXT, kind=st.sampled_from(sorted(VALIDATORS)), answering=st.booleans())
@example(text="九九九九九九九九九天后", kind="date", answering=True)
@example(text="99999999999天", kind="days", answering=True)
@example(text="13月45号", kind="date", answering=True)
@example(text="²³", kind="digits", answering=True)
@example(text="１２３４", kind="rating", answering=True)
def test_any_text_gives_a_value_or_none(text: str, kind: str, answering: bool) -> None:
    slot = Slot("x", kind, Response("?", "?"), options=SLOT_OPTIONS.get(kind, {}))
    validate(slot, Utterance(text, None, BANKS, answering=answering))
