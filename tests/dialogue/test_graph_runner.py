"""bot/rasa_launcher.py runs the model's graph without dask's scheduler: the same parse of every
message and the same prediction after it as Rasa's `DaskGraphRunner` for the trained model, on
messages of the training data and a few odd ones, each after a conversation of the ones before
(graph_runner_scenario.py, in Rasa's environment, dask made unusable for the second run)."""

from __future__ import annotations

from pathlib import Path

from tests.rasa_scenarios import needs_rasa, run_in_rasa


@needs_rasa
def test_the_graph_run_in_order_understands_and_predicts_as_dask_runs_it() -> None:
    seen = run_in_rasa(Path(__file__).with_name("graph_runner_scenario.py"))
    assert seen["same"], seen
    assert seen["messages"] == 84 and seen["intents"] > 30, seen  # not vacuous: many intents met
    # Both of the turn's runs took the order: the NLU pipeline's nodes and the policies'.
    assert len(seen["orders"]) == 2 and all(nodes > 1 for nodes in seen["orders"].values()), seen
