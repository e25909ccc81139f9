# The whole stack in one image: Rasa (Python 3.10), the action server and the risk-check API
# (Python 3.11, Debian bookworm's python3), the web chat and the phone gateway.
# Build: docker build -t xiaoan .
# Run: docker run --env-file secrets.env -p 5005:5005 -p 9092:9092 xiaoan
# where secrets.env sets every secret of docs/security.md (RISK_API_ENGINE_TOKEN, …,
# CHAT_SESSION_SECRET, TRACKER_STORE_KEY, AGENT_DESK_PASSWORD, ASTERISK_AMI_SECRET): the image
# runs with IVR_ENV=production and refuses the Makefile's development values.
# (a Chinese Vosk model: mount it and set VOSK_MODEL_PATH, see voice/README.md)
FROM python:3.10-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv make libespeak-ng1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, so code changes do not reinstall them.
COPY Makefile package.json package-lock.json ./
COPY requirements/ requirements/
COPY scripts/ scripts/
RUN make setup PY310=/usr/local/bin/python3.10 PY311=/usr/bin/python3.11

COPY . .
RUN touch .venv/.installed .venv-services/.installed && make train

# Rasa and the AudioSocket port answer outside the container; the action server and risk API
# stay on loopback. Of Rasa only the channels answer non-loopback clients (/webhooks/chat,
# /webhooks/trusted with the gateway's or dialer's token, /socket.io); put the proxy and firewall
# of docs/security.md in front.
ENV RASA_HOST=0.0.0.0 AUDIOSOCKET_HOST=0.0.0.0 IVR_ENV=production
EXPOSE 5005 9092
CMD ["make", "run"]
