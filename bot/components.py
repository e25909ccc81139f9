"""Custom Rasa NLU components (loaded by module path from bot/config.yml)."""

from __future__ import annotations

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

NO_TEXT_INTENT = {"name": "nlu_fallback", "confidence": 1.0}


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class TextlessSafeLogisticRegression(LogisticRegressionClassifier):
    """Rasa's logistic-regression intent classifier, minus its crash on messages with no text.

    An empty or blank message has no features, and scikit-learn refuses a 0-column matrix; such
    a message is classified as `nlu_fallback`, so the assistant asks the customer to rephrase.
    """

    def process(self, messages: list[Message]) -> list[Message]:
        with_text = [message for message in messages if (message.get(TEXT) or "").strip()]
        for message in messages:
            if message not in with_text:
                message.set(INTENT, dict(NO_TEXT_INTENT), add_to_output=True)
                message.set(INTENT_RANKING_KEY, [dict(NO_TEXT_INTENT)], add_to_output=True)
        if with_text:
            super().process(with_text)
        return messages
