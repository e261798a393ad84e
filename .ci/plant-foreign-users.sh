#!/usr/bin/env bash
# Plants, on the machine's PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306), users
# named exactly as sy names its users (`<prefix><10 [a-z0-9]>_sy<7 base-36 digits>`), as other
# sy stores and tools leave them on any real server, so that the suite runs against servers
# that are not clean. Every run uses fresh random names under a prefix per kind:
#
#   fxp<run>_…  3 past their bound (a day ago): two own nothing, one holds privileges in the
#               base database (CONNECT on postgres, USAGE on public) — any reaper may drop them;
#   fxd<run>_…  2 past their bound with privileges in a second database, sy_foreign_<run>
#               (PostgreSQL: SELECT on a table there and the owner of another table; MariaDB:
#               grants on that database and on a table in it) — any reaper may drop them;
#   fxl<run>_…  3 live, bound in 2090, with grants — nothing may touch them;
#   app_user_<run>  not sy-named, with grants — nothing may touch it.
#
# Usage:
#   .ci/plant-foreign-users.sh [--plant [STATE]]  plant; prints the state file's path on stdout
#                                                 (default ${RUNNER_TEMP:-/tmp}/sy-ci-foreign-<run>.txt).
#                                                 Given an existing STATE, plants the same names
#                                                 again (idempotent: what exists is left as is).
#   .ci/plant-foreign-users.sh --check STATE      exit 1 unless every live user and app_user_<run>
#                                                 still exist exactly as planted (login, validity,
#                                                 password, grants); lists past-bound leftovers.
#   .ci/plant-foreign-users.sh --cleanup STATE    drop everything the run planted (and any
#                                                 fx?<run>_ user a bug left behind); idempotent.
#
# Admins as in the tests: `psql -h 127.0.0.1 -U postgres` (trust), `mariadb -uroot` (no password).
set -euo pipefail
shopt -s inherit_errexit # a failing query inside $(...) fails the script
export PGOPTIONS='-c client_min_messages=warning'

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p 5432 -U postgres)
MARIADB=(mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -uroot -N -B)
LIVE_BOUND_ISO='2090-01-01 00:00:00+00'

die() { echo "plant-foreign-users: $*" >&2; exit 2; }
log() { echo "plant-foreign-users: $*" >&2; }

pg() { "${PSQL[@]}" -d "${2:-postgres}" -c "$1"; }
my() { "${MARIADB[@]}" -e "$1"; }

# n characters of [a-z0-9] from /dev/urandom (no pipeline that could die of SIGPIPE).
random_alnum() {
  local alphabet=abcdefghijklmnopqrstuvwxyz0123456789 out='' b
  for b in $(od -An -N"$1" -tu1 /dev/urandom); do out+=${alphabet:$((b % 36)):1}; done
  printf '%s' "$out"
}

# A Unix time as sy writes it in a name: base 36, 7 digits.
base36_7() {
  local n=$1 alphabet=0123456789abcdefghijklmnopqrstuvwxyz out=''
  while [ "$n" -gt 0 ]; do out=${alphabet:$((n % 36)):1}$out; n=$((n / 36)); done
  while [ ${#out} -lt 7 ]; do out=0$out; done
  printf '%s' "$out"
}

sy_name() { printf '%s%s_sy%s' "$1" "$(random_alnum 10)" "$(base36_7 "$2")"; }

# ---------------------------------------------------------------- state file
# Lines: `run <run>`, then `<kind> <name>` (kind: past, second, live, plain), then, once planted,
# `fp <engine> <name> <sha256>` for the users that must survive.

state_run() { awk '$1 == "run" { print $2; exit }' "$1"; }
state_names() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
state_fp() { awk -v e="$2" -v n="$3" '$1 == "fp" && $2 == e && $3 == n { print $4; exit }' "$1"; }

new_state() {
  local state=$1 run=$2 now past live i
  now=$(date +%s)
  past=$((now - 86400))
  live=$(date -u -d "$LIVE_BOUND_ISO" +%s)
  {
    echo "run $run"
    for i in 1 2 3; do echo "past $(sy_name "fxp${run}_" "$past")"; done
    for i in 1 2; do echo "second $(sy_name "fxd${run}_" "$past")"; done
    for i in 1 2 3; do echo "live $(sy_name "fxl${run}_" "$live")"; done
    echo "plain app_user_${run}"
  } >"$state"
}

# When the name says its bound is (sy's reaper reads the same digits).
bound_iso() { date -u -d "@$((36#${1##*_sy}))" '+%Y-%m-%d %H:%M:%S+00'; }

# ---------------------------------------------------------------- what "untouched" means

# PostgreSQL: can log in, same VALID UNTIL and password, same grants on postgres and in the second database.
pg_fingerprint() {
  local name=$1 db=$2 acl out
  # Every privilege granted to the role on databases, schemas and tables (per database).
  acl="SELECT 'db:' || d.datname || ':' || a.privilege_type FROM pg_database d, aclexplode(d.datacl) a, r WHERE a.grantee = r.oid
       UNION ALL SELECT 'schema:' || n.nspname || ':' || a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a, r WHERE a.grantee = r.oid
       UNION ALL SELECT 'table:' || c.relname || ':' || a.privilege_type FROM pg_class c, aclexplode(c.relacl) a, r WHERE a.grantee = r.oid
       ORDER BY 1"
  out=$(
    pg "SELECT rolcanlogin, rolvaliduntil, md5(coalesce(rolpassword, '')) FROM pg_authid WHERE rolname = '$name'"
    pg "WITH r AS (SELECT oid FROM pg_roles WHERE rolname = '$name') $acl"
    pg "WITH r AS (SELECT oid FROM pg_roles WHERE rolname = '$name') $acl" "$db"
  )
  printf '%s\n' "$out" | sha256sum | cut -d' ' -f1
}

# MariaDB: the account (password, lock, expiry: mysql.global_priv) and every grant.
my_fingerprint() {
  local name=$1 out
  out=$(my "SELECT Host, Priv FROM mysql.global_priv WHERE User = '$name' ORDER BY Host"; my "SHOW GRANTS FOR '$name'@'%'")
  printf '%s\n' "$out" | sha256sum | cut -d' ' -f1
}

pg_role_exists() { [ "$(pg "SELECT 1 FROM pg_roles WHERE rolname = '$1'")" = 1 ]; }
my_user_exists() { [ -n "$(my "SELECT 1 FROM mysql.user WHERE User = '$1' LIMIT 1")" ]; }

# ---------------------------------------------------------------- plant

pg_create_role() { # name [valid-until]: sy-named roles get a bound and sy's comment, as sy writes them
  local validity='' comment=''
  if [ -n "${2:-}" ]; then
    validity=" VALID UNTIL '$2'"
    comment="COMMENT ON ROLE \"$1\" IS 'managed by sy; reap after $2';"
  fi
  pg "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$1') THEN
          CREATE ROLE \"$1\" LOGIN PASSWORD 'Fx-$(random_alnum 20)-9'$validity;
          $comment
        END IF;
      END \$\$"
}

plant_pg() {
  local state=$1 run db name i=0
  run=$(state_run "$state")
  db="sy_foreign_${run}"
  echo "SELECT 'CREATE DATABASE \"$db\"' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db') \\gexec" | "${PSQL[@]}" -d postgres
  pg "CREATE TABLE IF NOT EXISTS public.fx_read (id int)" "$db"

  # Past their bound, owning nothing; the third holds privileges in the base database.
  for name in $(state_names "$state" past); do pg_create_role "$name" "$(bound_iso "$name")"; done
  name=$(state_names "$state" past | tail -n1)
  pg "GRANT CONNECT ON DATABASE postgres TO \"$name\"; GRANT USAGE ON SCHEMA public TO \"$name\""

  # Past their bound, with SELECT on a table of the second database and a table of their own there.
  for name in $(state_names "$state" second); do
    i=$((i + 1))
    pg_create_role "$name" "$(bound_iso "$name")"
    pg "GRANT CONNECT ON DATABASE \"$db\" TO \"$name\"" "$db"
    pg "GRANT USAGE ON SCHEMA public TO \"$name\"; GRANT SELECT ON public.fx_read TO \"$name\";
        CREATE TABLE IF NOT EXISTS public.fx_owned_$i (id int); ALTER TABLE public.fx_owned_$i OWNER TO \"$name\"" "$db"
  done

  # Live (bound in 2090) and not sy-named: CONNECT on postgres, SELECT in the second database.
  for name in $(state_names "$state" live) $(state_names "$state" plain); do
    if [[ $name == app_user_* ]]; then pg_create_role "$name"; else pg_create_role "$name" "$(bound_iso "$name")"; fi
    pg "GRANT CONNECT ON DATABASE postgres TO \"$name\"; GRANT CONNECT ON DATABASE \"$db\" TO \"$name\""
    pg "GRANT USAGE ON SCHEMA public TO \"$name\"; GRANT SELECT ON public.fx_read TO \"$name\"" "$db"
  done
}

plant_my() {
  local state=$1 run db grant_db name
  run=$(state_run "$state")
  db="sy_foreign_${run}"
  grant_db="sy\\_foreign\\_${run}" # `_` is a wildcard in a grant's database name
  my "CREATE DATABASE IF NOT EXISTS \`$db\`; CREATE TABLE IF NOT EXISTS \`$db\`.fx_read (id INT)"
  for name in $(state_names "$state" past) $(state_names "$state" second) $(state_names "$state" live) $(state_names "$state" plain); do
    my "CREATE USER IF NOT EXISTS '$name'@'%' IDENTIFIED BY 'Fx-$(random_alnum 20)-9'"
  done
  # Past their bound: two own nothing, the third may read a table.
  name=$(state_names "$state" past | tail -n1)
  my "GRANT SELECT ON \`$db\`.fx_read TO '$name'@'%'"
  # Past their bound, with grants on the second database and on a table in it.
  for name in $(state_names "$state" second); do
    my "GRANT SELECT, INSERT ON \`$grant_db\`.* TO '$name'@'%'; GRANT UPDATE ON \`$db\`.fx_read TO '$name'@'%'"
  done
  # Live and not sy-named.
  for name in $(state_names "$state" live) $(state_names "$state" plain); do
    my "GRANT SELECT ON \`$grant_db\`.* TO '$name'@'%'"
  done
}

plant() {
  local state=${1:-} run name
  if [ -z "$state" ] || [ ! -s "$state" ]; then
    run=$(random_alnum 5)
    state=${state:-${RUNNER_TEMP:-/tmp}/sy-ci-foreign-${run}.txt}
    new_state "$state" "$run"
  fi
  run=$(state_run "$state")
  [ -n "$run" ] || die "$state is not a state file of this script"
  # A run that fails half way (set -e) removes what it made.
  trap 'log "planting failed; cleaning up"; cleanup "$state" >/dev/null 2>&1 || true' EXIT
  plant_pg "$state"
  plant_my "$state"
  # Record what the survivors look like now.
  sed -i '/^fp /d' "$state"
  local pg_fp my_fp
  for name in $(state_names "$state" live) $(state_names "$state" plain); do
    pg_fp=$(pg_fingerprint "$name" "sy_foreign_${run}")
    my_fp=$(my_fingerprint "$name")
    printf 'fp pg %s %s\nfp my %s %s\n' "$name" "$pg_fp" "$name" "$my_fp" >>"$state"
  done
  trap - EXIT
  log "run $run: planted $(state_names "$state" past | wc -l) past-bound, $(state_names "$state" second | wc -l) past-bound with a second database, $(state_names "$state" live | wc -l) live and 1 non-sy user on PostgreSQL and MariaDB"
  echo "$state"
}

# ---------------------------------------------------------------- check

check() {
  local state=$1 run name bad=0 leftovers=() fp
  [ -s "$state" ] || die "no state file $state"
  run=$(state_run "$state")
  for name in $(state_names "$state" live) $(state_names "$state" plain); do
    if ! pg_role_exists "$name"; then
      log "FAIL: PostgreSQL role $name (must survive) was dropped"; bad=1
    else
      fp=$(pg_fingerprint "$name" "sy_foreign_${run}")
      if [ "$fp" != "$(state_fp "$state" pg "$name")" ]; then
        log "FAIL: PostgreSQL role $name (must survive) was altered (login, validity, password or grants)"; bad=1
      fi
    fi
    if ! my_user_exists "$name"; then
      log "FAIL: MariaDB user $name (must survive) was dropped"; bad=1
    else
      fp=$(my_fingerprint "$name")
      if [ "$fp" != "$(state_fp "$state" my "$name")" ]; then
        log "FAIL: MariaDB user $name (must survive) was altered (password, lock or grants)"; bad=1
      fi
    fi
  done
  for name in $(state_names "$state" past) $(state_names "$state" second); do
    pg_role_exists "$name" && leftovers+=("pg:$name")
    my_user_exists "$name" && leftovers+=("my:$name")
  done
  if [ ${#leftovers[@]} -gt 0 ]; then
    log "notice: past-bound users no reaper dropped: ${leftovers[*]}"
  fi
  if [ $bad -ne 0 ]; then return 1; fi
  log "run $run: every live and non-sy planted user is untouched"
}

# ---------------------------------------------------------------- cleanup

cleanup() {
  local state=$1 run db name names
  [ -s "$state" ] || { log "no state file $state: nothing to clean"; return 0; }
  run=$(state_run "$state")
  [[ $run =~ ^[a-z0-9]{5}$ ]] || die "$state has no run id"
  db="sy_foreign_${run}"
  # The second database first: it holds the tables the fxd roles own.
  pg "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
  names=$( { awk '$1 != "run" && $1 != "fp" { print $2 }' "$state"
             pg "SELECT rolname FROM pg_roles WHERE rolname ~ '^fx[pdl]${run}_' OR rolname = 'app_user_${run}'"; } | sort -u)
  for name in $names; do
    if pg_role_exists "$name"; then pg "DROP OWNED BY \"$name\"; DROP ROLE IF EXISTS \"$name\""; fi
  done
  names=$( { awk '$1 != "run" && $1 != "fp" { print $2 }' "$state"
             my "SELECT DISTINCT User FROM mysql.user WHERE User REGEXP '^fx[pdl]${run}_' OR User = 'app_user_${run}'"; } | sort -u)
  for name in $names; do
    my "SELECT Host FROM mysql.user WHERE User = '$name'" | while read -r host; do
      my "DROP USER IF EXISTS '$name'@'$host'"
    done
  done
  my "DROP DATABASE IF EXISTS \`$db\`"
  rm -f "$state"
  log "run $run: removed everything planted"
}

case "${1:---plant}" in
  --plant) plant "${2:-}" ;;
  --check) [ $# -eq 2 ] || die "usage: $0 --check STATE"; check "$2" ;;
  --cleanup) [ $# -eq 2 ] || die "usage: $0 --cleanup STATE"; cleanup "$2" ;;
  *) die "usage: $0 [--plant [STATE]] | --check STATE | --cleanup STATE" ;;
esac
