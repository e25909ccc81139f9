"""The distress component inside Rasa's environment, without a trained model:
`.venv/bin/python tests/nlu/distress_scenarios.py` runs each message through `DistressPhrases`
with the classifier's guess preset and prints the intent it leaves, as one JSON line
(tests/dialogue/test_distress_threshold.py checks it; the services' Python cannot import Rasa).
"""

from __future__ import annotations

import json

from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.components import DistressPhrases

CASES = {  # name: (text, the classifier's intent, its confidence)
    "listed_phrase_over_a_bill": ("我的账单太多了我走投无路了", "bill_inquiry", 0.9),
    "unsure_classifier": ("我这个号使命了吗", "distress", 0.2),
    "sure_classifier": ("我已经在楼顶了", "distress", 0.97),
    "at_the_bar": ("我撑着", "distress", 0.5),
    "another_intent": ("我想这样了", "limit_decrease_or_close", 0.2),
}


def main() -> None:
    context = ExecutionContext(GraphSchema({}), node_name="test")
    component = DistressPhrases.create(DistressPhrases.get_default_config(), None,  # type: ignore[arg-type]
                                       Resource("distress"), context)
    seen = {}
    for name, (text, intent, confidence) in CASES.items():
        guess = {"name": intent, "confidence": confidence}
        message = Message(data={TEXT: text, INTENT: guess, INTENT_RANKING_KEY: [guess, {"name": "greet",
                                                                                         "confidence": 0.01}]})
        [processed] = component.process([message])
        seen[name] = {"intent": processed.get(INTENT), "ranking": [entry["name"] for entry in
                                                                    processed.get(INTENT_RANKING_KEY)]}
    print(json.dumps(seen, ensure_ascii=False))


if __name__ == "__main__":
    main()
