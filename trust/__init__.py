"""What every service shares at the trust boundary: signed chat sessions, secrets from the
environment, how a session is named in logs, the HTTP guards in front of its routes and how it
serves HTTP and stops (serving.py). Standard library only, so that Rasa (Python 3.10) and the
services (Python 3.11) import the same code — except serving.py (uvicorn), which only the
services' environment imports."""
