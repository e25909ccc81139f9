"""The desk's conversation references (web/conversation_refs.py): the same conversation always the
same reference, which shows nothing of its id and opens only under the secret that sealed it."""

from __future__ import annotations

import re

from web.conversation_refs import PATTERN, ConversationRefs

SESSION = "0f8e9d2c-4b1a-4c3e-9a7b-5d6e7f8a9b0c"


def test_a_reference_is_stable_opaque_and_opens_only_under_its_secret() -> None:
    refs = ConversationRefs("s" * 32)
    ref = refs.ref(SESSION)
    assert ref == refs.ref(SESSION) == ConversationRefs("s" * 32).ref(SESSION)
    assert re.fullmatch(PATTERN, ref) and SESSION not in ref and SESSION.replace("-", "") not in ref
    assert refs.ref(SESSION + "x") != ref
    assert refs.conversation_of(ref) == SESSION
    assert ConversationRefs("o" * 32).conversation_of(ref) is None
    tampered = ref[:-2] + ("AA" if ref[-2:] != "AA" else "BB")
    for bad in (tampered, "Q-" + "A" * 40, "Q-not base64!", ref[2:], "Q-"):
        assert refs.conversation_of(bad) is None, bad


def test_the_longest_conversation_id_the_stream_keeps_fits_the_routes_pattern() -> None:
    refs = ConversationRefs("s" * 32)
    for length in (1, 36, 255):
        ref = refs.ref("c" * length)
        assert re.fullmatch(PATTERN, ref), length
        assert refs.conversation_of(ref) == "c" * length
