"""Custom actions served by rasa-sdk: the flow engine and the shared actions."""

from bot.actions import flow_engine, shared_actions

__all__ = ["flow_engine", "shared_actions"]
