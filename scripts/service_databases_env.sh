# Sourced by ensure_service_databases.sh and drop_service_databases.sh: `prefix` (checked), the local
# cluster's `port` (started when it is not), and `as_postgres` to run a command as its superuser.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${IVR_DATABASE_PREFIX:?set IVR_DATABASE_PREFIX}"
if ! [[ "$prefix" =~ ^[a-z_][a-z0-9_]*$ ]]; then
  echo "$(basename "$0"): IVR_DATABASE_PREFIX must be lower-case letters, digits and _" >&2; exit 2
fi
test_url="$(bash "$here/ensure_postgres.sh")"  # the cluster up (its URL names the tests' role)
port="$(sed -E 's#.*:([0-9]+)/[^/]*$#\1#' <<<"$test_url")"
as_postgres() {
  if command -v runuser >/dev/null; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
}
