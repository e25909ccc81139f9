"""What every service shares at the trust boundary: signed chat sessions, secrets from the
environment, and how a session is named in logs. Standard library only: Rasa (Python 3.10)
and the services (Python 3.11) import the same code."""
