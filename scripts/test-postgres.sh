#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests on 127.0.0.1 and prints
# the connection URL; `stop` stops it and removes its data.
#   eval "$(scripts/test-postgres.sh start)"   # exports FSTORE_TEST_POSTGRES_URL
#   scripts/test-postgres.sh stop
# PostgreSQL refuses to run as root, so as root the server runs as the
# `postgres` user the Debian package creates.
set -euo pipefail
PORT="${FSTORE_TEST_PG_PORT:-55432}"
DIR="${FSTORE_TEST_PG_DIR:-/tmp/fstore-test-pg-$PORT}"
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"

as_pg() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
  start)
    if ! as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
      rm -rf "$DIR"
      mkdir -p "$DIR"
      [ "$(id -u)" = "0" ] && chown postgres:postgres "$DIR"
      as_pg "$BIN/initdb" -D "$DIR" -A trust -U fstore --no-sync >/dev/null
      as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c timezone=UTC" start >/dev/null
      as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U fstore fstore_test
    fi
    echo "export FSTORE_TEST_POSTGRES_URL=postgresql://fstore@127.0.0.1:$PORT/fstore_test"
    ;;
  stop)
    as_pg "$BIN/pg_ctl" -D "$DIR" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
