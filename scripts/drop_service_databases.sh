#!/usr/bin/env bash
# `make clean-scale`: drop what scripts/ensure_service_databases.sh made for `make run SCALE=n` on
# the local PostgreSQL (the databases of IVR_DATABASE_PREFIX, closing their connections, then the
# roles). Everything the scaled stack stored there is gone afterwards. As root on Debian, like the
# script that made them; a prefix with nothing made is no error.
set -euo pipefail
source "$(dirname "$0")/service_databases_env.sh"
drops=""
for database in rasa risk outbound quality; do
  drops+="DROP DATABASE IF EXISTS \"${prefix}${database}\" WITH (FORCE);"$'\n'
done
for role in quality_writer quality outbound risk rasa; do
  drops+="DROP ROLE IF EXISTS \"${prefix}${role}\";"$'\n'
done
as_postgres psql -h /var/run/postgresql -p "$port" -q -v ON_ERROR_STOP=1 <<<"$drops" >&2
echo "drop_service_databases: the ${prefix}* databases and roles are dropped" >&2
