#!/usr/bin/env bash
# Starts a throwaway S3 server for the tests on 127.0.0.1 (moto's server mode,
# from requirements-dev.txt: MinIO has no package here) and prints the
# variables the S3 tests read; `stop` stops it. Both are idempotent.
#   eval "$(scripts/test-s3.sh start)"   # exports FSTORE_TEST_S3_ENDPOINT, ...
#   scripts/test-s3.sh stop
# moto keeps everything in memory: a restart starts from no buckets.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PORT="${FSTORE_TEST_S3_PORT:-59000}"
DIR="${FSTORE_TEST_S3_DIR:-/tmp/fstore-test-s3-$PORT}"
PIDFILE="$DIR/moto.pid"
ENDPOINT="http://127.0.0.1:$PORT"

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

answers() {
  # Any HTTP answer will do (moto lists the buckets on GET /).
  "$ROOT/.venv/bin/python" - "$ENDPOINT" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1)
except urllib.error.HTTPError:
    pass
EOF
}

case "${1:-start}" in
  start)
    if ! running; then
      if [ ! -x "$ROOT/.venv/bin/moto_server" ]; then
        echo "test-s3.sh: $ROOT/.venv/bin/moto_server not found; run scripts/install-deps.sh" >&2
        exit 1
      fi
      mkdir -p "$DIR"
      # setsid: the server outlives the shell that started it, and a Ctrl-C in
      # that shell does not reach it.
      setsid "$ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$DIR/server.log" 2>&1 &
      echo $! >"$PIDFILE"
      for _ in $(seq 1 100); do
        answers && break
        if ! running; then
          echo "test-s3.sh: moto_server exited; see $DIR/server.log" >&2
          exit 1
        fi
        sleep 0.1
      done
      if ! answers; then
        echo "test-s3.sh: moto_server did not answer on $ENDPOINT; see $DIR/server.log" >&2
        exit 1
      fi
    fi
    echo "export FSTORE_TEST_S3_ENDPOINT=$ENDPOINT"
    echo "export FSTORE_TEST_S3_ACCESS_KEY=testing"
    echo "export FSTORE_TEST_S3_SECRET_KEY=testing"
    echo "export FSTORE_TEST_S3_REGION=us-east-1"
    ;;
  stop)
    if running; then
      kill "$(cat "$PIDFILE")" 2>/dev/null || true
      for _ in $(seq 1 50); do running || break; sleep 0.1; done
      running && kill -9 "$(cat "$PIDFILE")" 2>/dev/null || true
    fi
    rm -rf "$DIR"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
