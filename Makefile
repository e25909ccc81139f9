# One-command set-up: `make run` starts the stack, `make test` runs every test.
# Both create the virtual environments, install pinned packages, compile the flows and train
# the Rasa model when its inputs changed.

SHELL := /bin/bash
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10))
PY311 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.11*/bin/python3.11) $(shell command -v python3.11))
RASA_VENV := .venv
SVC_VENV := .venv-services
SVC_PY := $(SVC_VENV)/bin/python

# Development defaults only: a deployment sets its own secrets in the environment. Every
# service refuses a `dev-only-` value unless IVR_ENV=development (docs/security.md).
export IVR_ENV ?= development
export RISK_API_ENGINE_TOKEN ?= dev-only-risk-engine-token
export RISK_API_DESK_TOKEN ?= dev-only-risk-desk-token
export RISK_API_GATEWAY_TOKEN ?= dev-only-risk-gateway-token
export RISK_API_DIALER_TOKEN ?= dev-only-risk-dialer-token
export RASA_API_TOKEN ?= dev-only-rasa-api-token
export RASA_GATEWAY_TOKEN ?= dev-only-rasa-gateway-token
export RASA_DIALER_TOKEN ?= dev-only-rasa-dialer-token
export ACTION_SERVER_TOKEN ?= dev-only-action-server-token
export CHAT_SESSION_SECRET ?= dev-only-chat-session-secret
export TRACKER_STORE_KEY ?= dev-only-tracker-store-key
export OUTBOUND_NUMBER_KEY ?= dev-only-outbound-number-key
export OUTBOUND_DESK_TOKEN ?= dev-only-outbound-desk-token
export QUALITY_API_TOKEN ?= dev-only-quality-api-token
export OUTBOUND_GATEWAY_TOKEN ?= dev-only-outbound-gateway-token
export RASA_DESK_TOKEN ?= dev-only-rasa-desk-token
export METRICS_TOKEN ?= dev-only-metrics-token
export GATEWAY_DESK_TOKEN ?= dev-only-gateway-desk-token
# Only `make run SCALE=n`: the Redis lock store's password, and each service's PostgreSQL role
# (deploy/postgres-init.sh's names; the roles and databases are named ivr_rasa, ivr_risk, …).
export REDIS_PASSWORD ?= dev-only-redis-password
export IVR_DATABASE_PREFIX ?= ivr_
export POSTGRES_RASA_PASSWORD ?= dev-only-rasa-db-password
export POSTGRES_RISK_PASSWORD ?= dev-only-risk-db-password
export POSTGRES_OUTBOUND_PASSWORD ?= dev-only-outbound-db-password
export POSTGRES_QUALITY_PASSWORD ?= dev-only-quality-db-password
export POSTGRES_QUALITY_WRITER_PASSWORD ?= dev-only-quality-writer-db-password
# The agent desk's accounts: development ones (password dev-only-agent-password), refused
# outside IVR_ENV=development; a deployment names its own file.
export AGENT_ACCOUNTS_FILE ?= $(CURDIR)/ivr_config/agents.dev.yaml
export PYTHONPATH := $(CURDIR)

.PHONY: setup voice-tools turn-models compile lint train run clean-scale test test-loaded bench voice-demo asterisk-sounds prerender heard-examples clean

# requirements/*.txt name what we use; requirements/*.lock pin every package underneath them
# (regenerate with pip freeze after changing a .txt).
$(RASA_VENV)/.installed: requirements/rasa.txt requirements/rasa.lock
	@test -n "$(PY310)" || { echo "Python 3.10 not found (pyenv install 3.10)"; exit 1; }
	$(PY310) -m venv $(RASA_VENV)
	$(RASA_VENV)/bin/pip install --quiet --no-input pip==24.0
	$(RASA_VENV)/bin/pip install --quiet --no-input -r requirements/rasa.txt -c requirements/rasa.lock
	touch $@

$(SVC_VENV)/.installed: requirements/services.txt requirements/services.lock
	@test -n "$(PY311)" || { echo "Python 3.11 not found (pyenv install 3.11)"; exit 1; }
	$(PY311) -m venv $(SVC_VENV)
	$(SVC_VENV)/bin/pip install --quiet --no-input -r requirements/services.txt -c requirements/services.lock
	touch $@

# Debian packages: the espeak-ng library (the bot's Mandarin voice, driven by pyttsx3) to run;
# to test and benchmark also the espeak-ng and sox commands (test callers' speech and noise),
# Debian's Chromium and a Chinese font (browser tests, widget benchmark).
VOICE_PACKAGES := libespeak-ng1
# docker-compose: `docker-compose config` checks deploy/docker-compose.yml (tests/deploy/).
TEST_PACKAGES := espeak-ng sox chromium fonts-wqy-microhei haproxy redis-server docker-compose
# The scaled topology (`make run SCALE=n`): the load balancer and the lock store.
SCALE_PACKAGES := haproxy redis-server

voice-tools:
	bash scripts/ensure_debian_packages.sh $(VOICE_PACKAGES)

# Smart Turn (end of turn) and Silero VAD (speech onset) for the phone, from the pinned pipecat-ai wheel
# (its sha256 and the models' checked) into var/models/turn/ with their licence notices; nothing to do
# when they are there. Without a reachable package registry this warns and calls end turns on silence
# alone, as before (voice/README.md); the tests that need the models then say why they skip.
turn-models: $(SVC_VENV)/.installed
	$(SVC_PY) -m voice.turn_models --optional

# The desk's charts: Chart.js (MIT) from the npm registry, pinned by package-lock.json, served by
# the web server itself (no CDN) with its licence. Debian's node and npm only when none is there.
DESK_CHARTS := web/static/vendor/chart.umd.js
$(DESK_CHARTS): package.json package-lock.json
	command -v npm >/dev/null || bash scripts/ensure_debian_packages.sh nodejs npm
	npm ci --ignore-scripts --no-audit --no-fund
	mkdir -p web/static/vendor
	cp node_modules/chart.js/dist/chart.umd.js $@
	cp node_modules/chart.js/LICENSE.md web/static/vendor/chart.js.LICENSE.md

setup: $(RASA_VENV)/.installed $(SVC_VENV)/.installed voice-tools turn-models $(DESK_CHARTS)

compile: $(SVC_VENV)/.installed
	$(SVC_PY) -m flowspec compile

lint: $(SVC_VENV)/.installed
	$(SVC_PY) -m flowspec lint
	$(SVC_PY) -m knowledge lint
	$(SVC_VENV)/bin/ruff check .

train: setup compile
	$(SVC_PY) -m stack.train
	$(SVC_PY) -m knowledge index

# `make run SCALE=n` (n ≥ 2): n Rasa processes and n action servers behind HAProxy, locks in Redis,
# and every service's data in PostgreSQL, one role and database per service as in a deployment.
run: train
ifdef SCALE
	bash scripts/ensure_debian_packages.sh $(SCALE_PACKAGES)
	port="$$(bash scripts/ensure_service_databases.sh)" && \
		IVR_DATABASE_PORT="$$port" $(SVC_PY) -m stack.run --scale $(SCALE)
else
	$(SVC_PY) -m stack.run
endif

# Drops what `make run SCALE=n` stored on the local PostgreSQL (its databases and roles).
clean-scale:
	bash scripts/drop_service_databases.sh

# The PostgreSQL URL is taken in the same shell so that a failed set-up stops the target.
test: train lint
	bash scripts/ensure_debian_packages.sh $(TEST_PACKAGES)
	pg_url="$$(bash scripts/ensure_postgres.sh)" && RISK_API_TEST_PG_URL="$$pg_url" $(SVC_PY) -m pytest tests

# Issue 12's check: `make test` RUNS times in a row (default 3) with stress-ng on every core; wall
# times and results in var/loaded-test/summary.txt.
test-loaded:
	bash scripts/loaded_test.sh $(or $(RUNS),3)

bench: train
	bash scripts/ensure_debian_packages.sh $(TEST_PACKAGES)
	pg_url="$$(bash scripts/ensure_postgres.sh)" && RISK_API_TEST_PG_URL="$$pg_url" $(SVC_PY) -m bench.run

# One WAV file (8 or 16 kHz) through the voice pipeline and the assistant: `make voice-demo WAV=path`
# (optional: SAY="text the audio says" when no Chinese Vosk model is configured, KEYS="1234" keyed
# at the bot's next pause).
voice-demo: train
	@test -n "$(WAV)" || { echo "usage: make voice-demo WAV=path/to/call.wav [SAY=...] [KEYS=digits]"; exit 2; }
	$(SVC_PY) -m bench.voice_demo "$(WAV)" $(if $(SAY),--say "$(SAY)") $(if $(KEYS),--keys "$(KEYS)")

# The Chinese prompts and hold music Asterisk plays without the bot (queue, failover), in the bot's
# voice: copy var/asterisk-sounds/* into Asterisk's data directory (ivr_config/README.md).
asterisk-sounds: setup
	$(SVC_PY) -m telephony.queue_sounds var/asterisk-sounds

# Kokoro's renderings of every prompt the phone channel says (normal and slow) into var/tts-cache: about
# an hour of one core the first time, then only what changed. The gateway also runs it in the background
# at start; calls hear espeak-ng for a prompt until it is rendered (voice/README.md).
prerender: setup
	$(SVC_PY) -m voice.kokoro

# What Whisper hears of the flows' examples, spoken by Kokoro over a phone line, into flows/shared/heard.yml
# (committed; `make compile` adds it to the NLU data): after editing flow examples, about 3 CPU-seconds per
# new sentence (bench/heard_examples.py).
heard-examples: setup
	$(SVC_PY) -m bench.heard_examples

clean:
	rm -rf bot/models bot/domain.yml bot/data bot/jieba var .pytest_cache
