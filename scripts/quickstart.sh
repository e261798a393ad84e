#!/usr/bin/env bash
# A first real lease: a throwaway store, a base secret for the local PostgreSQL, a dynamic
# secret granting SELECT, and one lease, printed on stdout. Override the admin with PGHOST,
# PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
#
# The store is left for you to go on using: its key is in a 0600 file beside it, and the
# last lines (on stderr) give the `export SY_HOME=... SY_MASTER_KEY_FILE=...` line that opens
# it, so the lease can be listed and revoked. The key file, rather than the key, is what is
# printed, so the key never lands in a terminal's scrollback or a CI log.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
# How the newcomer reaches bin/sy from where they ran this script.
if [ "$caller" = "$PWD" ]; then bin=./bin/sy; else bin="$PWD/bin/sy"; fi
sy=./bin/sy

# Always a store of its own: a caller's SY_HOME or key must not receive the demo secrets.
unset SY_HOME SY_STORE SY_MASTER_KEY SY_MASTER_KEY_FILE SY_PASSPHRASE
umask 077
dir=$(mktemp -d)
export SY_HOME="$dir/sy"
export SY_MASTER_KEY_FILE="$dir/master.key"
$sy key generate >"$SY_MASTER_KEY_FILE"
$sy init --quiet --key-source master-key-file --format table >&2

base="$dir/base.json"
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
lease_id=$($sy dynamic lease list --filter data.0.lease_id)

{
  echo
  echo "The store is in $SY_HOME, its key in $SY_MASTER_KEY_FILE. To go on using it in your shell:"
  printf '  export SY_HOME=%q SY_MASTER_KEY_FILE=%q\n' "$SY_HOME" "$SY_MASTER_KEY_FILE"
  echo "then, for instance:"
  echo "  $bin dynamic lease list"
  echo "  $bin dynamic lease revoke $lease_id"
  echo "The lease stops working in 10 minutes (VALID UNTIL); the first sy command on this store"
  echo "after that, or '$bin dynamic sweep', drops its user. rm -r $dir removes the store."
} >&2
