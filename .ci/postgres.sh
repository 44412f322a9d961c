#!/usr/bin/env bash
# A private PostgreSQL server on 127.0.0.1 for the ledger tests.
#
#   source .ci/postgres.sh          # exports COLLAPSELAB_TEST_PG_URL (what .ci/run does)
#   eval "$(bash .ci/postgres.sh)"  # the same from a script that runs it instead
#
# Installs Debian's `postgresql` with apt-get when no server binaries are found (needs root),
# then runs its own cluster (initdb + pg_ctl, as the `postgres` user when run as root) in
# $COLLAPSELAB_PG_DIR on port $COLLAPSELAB_PG_PORT, listening on 127.0.0.1 only, with a role and
# a database for the tests. Running it again reuses the running server. Stop it with
#   runuser -u postgres -- /usr/lib/postgresql/<version>/bin/pg_ctl -D <dir>/data stop
# Progress goes to stderr; stdout carries only the `export` line.

_collapselab_pg() {
  local port="${COLLAPSELAB_PG_PORT:-54329}"
  local dir="${COLLAPSELAB_PG_DIR:-/tmp/collapselab-pg-$port}"
  local role="${COLLAPSELAB_PG_ROLE:-collapselab}"
  local password="${COLLAPSELAB_PG_PASSWORD:-collapselab}"
  local db="${COLLAPSELAB_PG_DB:-collapselab_test}"
  local bin as

  _pg_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
      if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
    return 1
  }

  if ! bin=$(_pg_bindir); then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      echo ".ci/postgres.sh: no PostgreSQL server found; install Debian's postgresql (apt-get install postgresql) and run again" >&2
      return 1
    fi
    echo ".ci/postgres.sh: installing postgresql with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || return 1
    bin=$(_pg_bindir) || { echo ".ci/postgres.sh: postgresql installed but initdb not found" >&2; return 1; }
  fi

  # Run server commands as `postgres` when we are root (PostgreSQL refuses to run as root).
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /bin/sh postgres || return 1
    as=(runuser -u postgres --)
  else
    as=()
  fi

  mkdir -p "$dir" || return 1
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"

  if [ ! -s "$dir/data/PG_VERSION" ]; then
    echo ".ci/postgres.sh: initdb $dir/data" >&2
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; return 1; }
  fi

  if ! "${as[@]}" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    echo ".ci/postgres.sh: starting PostgreSQL on 127.0.0.1:$port" >&2
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >&2 \
      || { tail -20 "$dir/server.log" >&2; return 1; }
  fi

  local psql=("${as[@]}" "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != "1" ]; then
    "${psql[@]}" -c "CREATE ROLE \"$role\" LOGIN PASSWORD '$password'" >&2 || return 1
  fi
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
    "${psql[@]}" -c "CREATE DATABASE \"$db\" OWNER \"$role\"" >&2 || return 1
  fi

  unset -f _pg_bindir
  COLLAPSELAB_TEST_PG_URL="postgresql://$role:$password@127.0.0.1:$port/$db"
  export COLLAPSELAB_TEST_PG_URL
  echo ".ci/postgres.sh: PostgreSQL ready at postgresql://$role:***@127.0.0.1:$port/$db" >&2
  echo "export COLLAPSELAB_TEST_PG_URL=$COLLAPSELAB_TEST_PG_URL"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Run as a script: fail loudly, print the export line for eval.
  set -euo pipefail
  _collapselab_pg
else
  # Sourced: set the variable in the caller's shell; report failure through the return status.
  _collapselab_pg >/dev/null
fi
