"""Run with Rasa's environment (`.venv/bin/python tests/dialogue/graph_runner_scenario.py`): the
trained model's graph run by Rasa's `DaskGraphRunner.run` and by bot/rasa_launcher.py's
`_run_graph_in_order` (dask made unusable meanwhile), on the same messages and conversations:
what the NLU made of each message and what the policies predicted after it; prints JSON."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import dask
from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.core.processor import MessageProcessor
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import ActionExecuted, Event, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.training_data.loading import load_data

from bot import rasa_launcher
from stack.services import ROOT, latest_model

MESSAGES = 80
HISTORY = 8  # events kept before each message: the policies see a conversation, not one message


def texts() -> list[str]:
    training = load_data(str(ROOT / "bot" / "data" / "nlu.yml"))
    examples = [str(example.get("text")) for example in training.training_examples]
    return [*random.Random(20261207).sample(examples, MESSAGES), "", "？？？", "asdf 1234", "我的手机号是13800000000"]


def untimed(event: Event) -> dict[str, Any]:
    """The event as a dict, without the time it was made at."""
    return {key: value for key, value in event.as_dict().items() if key != "timestamp"}


async def understood(processor: MessageProcessor, said: list[str]) -> dict[str, Any]:
    parsed, predicted = [], []
    events: list[Event] = []
    for text in said:
        data = await processor.parse_message(UserMessage(text))
        parsed.append(data)
        events = [*events[-HISTORY:], ActionExecuted(ACTION_LISTEN_NAME),
                  UserUttered(text, data["intent"], data["entities"], data)]
        tracker = DialogueStateTracker.from_events("graph-runner", events, slots=processor.domain.slots)
        prediction = processor._predict_next_with_tracker(tracker)
        predicted.append({"policy": prediction.policy_name, "probabilities": prediction.probabilities,
                          "events": [untimed(event) for event in prediction.events],
                          "optional_events": [untimed(event) for event in prediction.optional_events]})
        events.append(ActionExecuted(processor.domain.action_names_or_texts[prediction.max_confidence_index]))
    return {"parsed": parsed, "predicted": predicted}


def unusable(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("dask ran the graph")


def main() -> None:
    processor = Agent.load(str(latest_model())).processor
    assert processor is not None
    said = texts()
    by_dask = asyncio.run(understood(processor, said))
    DaskGraphRunner.run = rasa_launcher._run_graph_in_order  # type: ignore[method-assign]
    dask.get = unusable
    in_order = asyncio.run(understood(processor, said))
    print(json.dumps({
        "messages": len(said), "same": json.dumps(by_dask, default=str) == json.dumps(in_order, default=str),
        "intents": len({data["intent"]["name"] for data in by_dask["parsed"] if data["intent"]}),
        "policies": sorted({prediction["policy"] for prediction in by_dask["predicted"]}),
        "orders": {" ".join(targets): len(order)
                   for targets, order in processor.graph_runner.__dict__.get("_orders_by_targets", {}).items()},
    }))


if __name__ == "__main__":
    main()
