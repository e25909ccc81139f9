"""`make bench`'s outbound figures run on a small campaign (bench/outbound_dialling.py): the bench
drives the real dialler, queue and AMI originator, so a change to them that the bench no longer
fits fails here and not only on the quiet machine that measures. No timing is asserted."""

from __future__ import annotations

import asyncio

import pytest

from bench import outbound_dialling

CUSTOMERS = 300


def test_the_outbound_bench_decides_a_small_campaign_and_reaches_the_ami_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bench measures for MEASURE_SECONDS of wall time; here it runs until every customer is
    # decided, however busy the machine.
    monkeypatch.setattr(outbound_dialling, "MEASURE_SECONDS", outbound_dialling.BOUND_SECONDS)
    figures = asyncio.run(outbound_dialling.backend_figures("sqlite", None, CUSTOMERS))
    directory = outbound_dialling.CampaignDirectory(CUSTOMERS)
    not_due = sum(1 for customer in directory.customers if customer.timezone != "Asia/Shanghai")
    assert figures["customers"] == CUSTOMERS
    assert figures["decisions"] == CUSTOMERS - not_due, "every customer due in the window is decided once"
    assert 0 < figures["dials"] < figures["decisions"], "the do-not-call customers are decided, not dialled"
    assert figures["operator_starts"] == outbound_dialling.STARTS
