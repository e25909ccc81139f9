#!/usr/bin/env bash
# Make sure a local PostgreSQL runs for the risk API tests and print its URL on stdout.
# Installs postgresql when missing, creates/starts the cluster (127.0.0.1:5432 by default) and
# a login role + database for the tests. Idempotent; for root on Debian 12. Progress -> stderr.
set -euo pipefail

ROLE="${RISK_API_PG_ROLE:-risk_api_test}"
PASSWORD="${RISK_API_PG_PASSWORD:-risk_api_test}"
DATABASE="${RISK_API_PG_DATABASE:-risk_api_test}"
PORT="${RISK_API_PG_PORT:-5432}"
READY_TIMEOUT_S=60

log() { echo "ensure_postgres: $*" >&2; }
as_postgres() {
  if command -v runuser >/dev/null; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
}
psql_admin() { as_postgres psql -p "$PORT" -h /var/run/postgresql -v ON_ERROR_STOP=1 -qtA "$@"; }

if [ "$(id -u)" != 0 ]; then
  log "run me as root (installs packages and controls the cluster)"; exit 1
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"

if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {found = 1} END {exit !found}'; then
  log "creating cluster $VERSION/main on port $PORT"
  pg_createcluster "$VERSION" main --port="$PORT" >&2
fi
CLUSTER_PORT="$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')"
if [ "$CLUSTER_PORT" != "$PORT" ]; then
  log "cluster $VERSION/main listens on $CLUSTER_PORT, not $PORT: using $CLUSTER_PORT"
  PORT="$CLUSTER_PORT"
fi
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" && $4 ~ /online/ {found = 1} END {exit !found}'; then
  log "starting cluster $VERSION/main"
  pg_ctlcluster "$VERSION" main start >&2
fi

deadline=$((SECONDS + READY_TIMEOUT_S))
until pg_isready -q -h 127.0.0.1 -p "$PORT"; do
  if [ "$SECONDS" -ge "$deadline" ]; then log "PostgreSQL not ready after ${READY_TIMEOUT_S}s"; exit 1; fi
  sleep 1
done

# CREATEDB: the test suite makes a fresh database per run next to this one and drops it after.
psql_admin <<SQL >&2
DO \$\$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    ALTER ROLE "$ROLE" LOGIN CREATEDB PASSWORD '$PASSWORD';
  ELSE
    CREATE ROLE "$ROLE" LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END
\$\$;
SQL
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" ]; then
  log "creating database $DATABASE"
  as_postgres createdb -p "$PORT" -h /var/run/postgresql -O "$ROLE" "$DATABASE"
fi

echo "postgresql+psycopg2://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
