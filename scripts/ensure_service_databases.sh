#!/usr/bin/env bash
# `make run SCALE=n`: the deployment's databases on the local PostgreSQL, made the way a deployment
# makes them (deploy/postgres-init.sh): one login role and one database per service, each role
# allowed into its own database only, and the quality stream's writers allowed to add events only.
# Names carry IVR_DATABASE_PREFIX (so they never meet the tests' own); passwords are the
# POSTGRES_*_PASSWORD the services log in with. Made once; later runs set the roles' passwords
# again (a changed password in the environment takes effect). As root on Debian, like
# ensure_postgres.sh (which starts the cluster). Progress -> stderr; prints the port on stdout.
set -euo pipefail
source "$(dirname "$0")/service_databases_env.sh"
roles=(rasa risk outbound quality quality_writer)
passwords=()
for role in "${roles[@]}"; do
  variable="POSTGRES_${role^^}_PASSWORD"
  passwords+=("$variable=${!variable:?set $variable}")
done
exists="$(as_postgres psql -h /var/run/postgresql -p "$port" -qtA -v ON_ERROR_STOP=1 -v role="${prefix}rasa" \
  <<<"SELECT 1 FROM pg_roles WHERE rolname = :'role';")"
if [ "$exists" != 1 ]; then
  echo "ensure_service_databases: making the services' roles and databases (${prefix}rasa, ${prefix}risk, …)" >&2
  as_postgres env PGHOST=/var/run/postgresql PGPORT="$port" POSTGRES_USER=postgres POSTGRES_DB=postgres \
    IVR_DATABASE_PREFIX="$prefix" "${passwords[@]}" sh "$here/../deploy/postgres-init.sh" >&2
else
  for index in "${!roles[@]}"; do
    as_postgres psql -h /var/run/postgresql -p "$port" -q -v ON_ERROR_STOP=1 -v role="${prefix}${roles[$index]}" \
      -v password="${passwords[$index]#*=}" <<<"ALTER ROLE :\"role\" PASSWORD :'password';" >&2
  done
fi
echo "$port"
