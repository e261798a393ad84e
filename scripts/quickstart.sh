#!/usr/bin/env bash
# A first real lease: a throwaway store, a base secret for the local PostgreSQL, a dynamic
# secret granting SELECT, and one lease. Override the admin with PGHOST, PGPORT, PGUSER,
# PGPASSWORD and PGDATABASE.
set -euo pipefail
cd "$(dirname "$0")/.."
sy=./bin/sy
export SY_HOME="${SY_HOME:-$(mktemp -d)/sy}"
export SY_MASTER_KEY="${SY_MASTER_KEY:-$($sy key generate)}"
$sy init --format table >&2
base=$(mktemp)
trap 'rm -f "$base"' EXIT
cat >"$base" <<JSON
{"host": "${PGHOST:-127.0.0.1}", "port": ${PGPORT:-5432}, "username": "${PGUSER:-postgres}",
 "password": "${PGPASSWORD:-}", "database": "${PGDATABASE:-postgres}"}
JSON
$sy secret create db:postgresql:root --attributes '{"type": "postgresql"}' --data "@$base" --desc 'local PostgreSQL admin' >/dev/null
$sy secret create db:postgresql:dyn1 --desc 'read-only, 10 minutes' \
  --attributes '{"linkConfig": {"linkType": "dynamic", "linkedSecret": "db:postgresql:root"},
                 "grantPermissions": {"what": "SELECT", "where": "*.*"}, "ttl": 600}' >/dev/null
$sy secret read db:postgresql:dyn1
echo >&2
echo "Store: $SY_HOME (key in SY_MASTER_KEY for this shell only)." >&2
echo "Revoke with: SY_HOME=$SY_HOME SY_MASTER_KEY=... ./bin/sy dynamic lease revoke <lease_id>" >&2
