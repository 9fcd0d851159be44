#!/usr/bin/env bash
# Start a throwaway PostgreSQL 15 on a free loopback port, for tests; print its URL.
#
#   eval "$(scripts/pg_test_server.sh)"   # exports DELTAMEM_TEST_POSTGRES_URL and PG_TEST_DIR
#   scripts/pg_test_server.sh stop DIR    # stop it and delete DIR
#
# The server runs as the `postgres` user (initdb refuses root) in a temp dir with fsync off
# (a test server: speed over durability). PostgreSQL 15 is installed with apt when absent.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
as_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi; }

if [ "${1:-}" = stop ]; then
  dir=${2:?usage: pg_test_server.sh stop DIR}
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit 0
fi

if [ ! -x "$PGBIN/initdb" ]; then
  echo "installing postgresql-15 with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq postgresql-15 >&2
fi
id -u postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
dir=$(mktemp -d /tmp/deltamem-pg.XXXXXX)
chown postgres "$dir"
as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
url="postgresql://postgres@127.0.0.1:$port/postgres"
echo "export DELTAMEM_TEST_POSTGRES_URL=$url"
echo "export PG_TEST_DIR=$dir"
