"""Real-time quality inspection (质检): one event stream of every conversation (Rasa's events
and the phone gateway's call events, masked at rest), rules declared in YAML, live alerts, a
score per conversation and the day's service figures (docs/quality.md)."""
