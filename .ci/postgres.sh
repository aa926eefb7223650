#!/usr/bin/env bash
# A throw-away PostgreSQL server for the sweep test in which two workers share one Optuna study
# (tests/sweep/test_postgres.py). Idempotent: installs the server when missing (as root, Debian/Ubuntu),
# initialises a data folder once, starts the server if it is down, creates the database protfit_test,
# and prints its URL on stdout (everything else goes to stderr).
#   export PROTFIT_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"
set -euo pipefail
PORT="${PROTFIT_PG_PORT:-55432}"
DATA="${PROTFIT_PG_DATA:-/tmp/protfit-postgres-$PORT}"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed; install the postgresql package (needs root)" >&2
    exit 1
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
BIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"

# the server refuses to run as root: as root, run it as the postgres user
as_server_user() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

if [ ! -f "$DATA/PG_VERSION" ]; then
  mkdir -p "$DATA"
  [ "$(id -u)" = 0 ] && chown postgres: "$DATA"
  as_server_user "'$BIN/initdb' -D '$DATA' -A trust -U postgres" >&2
fi
if ! as_server_user "'$BIN/pg_ctl' -D '$DATA' status" >/dev/null 2>&1; then
  as_server_user "'$BIN/pg_ctl' -D '$DATA' -l '$DATA/server.log' -w -o \"-p $PORT -k /tmp -c listen_addresses=127.0.0.1\" start" >&2
fi
if ! as_server_user "'$BIN/psql' -h 127.0.0.1 -p $PORT -U postgres -tAc \"SELECT 1 FROM pg_database WHERE datname = 'protfit_test'\"" | grep -q 1; then
  as_server_user "'$BIN/createdb' -h 127.0.0.1 -p $PORT -U postgres protfit_test" >&2
fi
echo "postgresql://postgres@127.0.0.1:$PORT/protfit_test"
