#!/bin/sh
# One database and one login role per service on the deployment's PostgreSQL, each role allowed
# into its own database only: a service taken over reads nothing of the others (the risk API's
# customers above all). Rasa's tracker store (rasa), the risk API (risk), the dialler's queue
# (outbound), the quality inspection (quality, which creates its tables) and the writers of the
# quality stream (quality_writer: Rasa's event broker and the phone gateways may add events, and
# read or change nothing; the quality service grants it that on its table when it creates it,
# QUALITY_WRITER_ROLE). Passwords from the environment, passed to psql as variables (quoted by psql).
#
# The official image runs this once, on an empty volume, as POSTGRES_USER (a superuser). Tests run
# it against their own cluster with IVR_DATABASE_PREFIX set, so the names do not meet others'.
set -eu
prefix="${IVR_DATABASE_PREFIX:-}"
psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" \
  -v rasa="${prefix}rasa" -v rasa_password="${POSTGRES_RASA_PASSWORD:?set POSTGRES_RASA_PASSWORD}" \
  -v risk="${prefix}risk" -v risk_password="${POSTGRES_RISK_PASSWORD:?set POSTGRES_RISK_PASSWORD}" \
  -v outbound="${prefix}outbound" \
  -v outbound_password="${POSTGRES_OUTBOUND_PASSWORD:?set POSTGRES_OUTBOUND_PASSWORD}" \
  -v quality="${prefix}quality" -v quality_password="${POSTGRES_QUALITY_PASSWORD:?set POSTGRES_QUALITY_PASSWORD}" \
  -v quality_writer="${prefix}quality_writer" \
  -v quality_writer_password="${POSTGRES_QUALITY_WRITER_PASSWORD:?set POSTGRES_QUALITY_WRITER_PASSWORD}" <<'SQL'
CREATE ROLE :"rasa" LOGIN PASSWORD :'rasa_password';
CREATE DATABASE :"rasa" OWNER :"rasa";
REVOKE ALL ON DATABASE :"rasa" FROM PUBLIC;

CREATE ROLE :"risk" LOGIN PASSWORD :'risk_password';
CREATE DATABASE :"risk" OWNER :"risk";
REVOKE ALL ON DATABASE :"risk" FROM PUBLIC;

CREATE ROLE :"outbound" LOGIN PASSWORD :'outbound_password';
CREATE DATABASE :"outbound" OWNER :"outbound";
REVOKE ALL ON DATABASE :"outbound" FROM PUBLIC;

CREATE ROLE :"quality" LOGIN PASSWORD :'quality_password';
CREATE ROLE :"quality_writer" LOGIN PASSWORD :'quality_writer_password';
CREATE DATABASE :"quality" OWNER :"quality";
REVOKE ALL ON DATABASE :"quality" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"quality" TO :"quality_writer";
\connect :"quality"
-- Only the database's owner creates tables (PostgreSQL 15 and later already refuse everyone else).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
