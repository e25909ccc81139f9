"""Fixtures of the phone tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.telephony.peers import AmiPeer


@pytest.fixture
async def peer() -> AsyncIterator[AmiPeer]:
    """A fake Asterisk Manager on loopback (tests/telephony/peers.py)."""
    fake = await AmiPeer().start()
    yield fake
    await fake.stop()
