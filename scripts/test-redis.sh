#!/usr/bin/env bash
# Starts throwaway Redis servers for the tests on 127.0.0.1 and prints their
# URLs; `stop` stops them and removes their data.
#   eval "$(scripts/test-redis.sh start)"
#     exports FSTORE_TEST_REDIS_URL          one server        (port 56379)
#             FSTORE_TEST_REDIS_CLUSTER_URL  a 3-master cluster (ports 57001-57003;
#                                            cluster bus on 47001-47003)
#             FSTORE_TEST_REDISS_URL         one server over TLS (port 56380), when
#                                            redis-server was built with TLS
#   scripts/test-redis.sh stop
# Idempotent: `start` leaves running servers alone. The tests share these
# servers and keep apart by a random key prefix each; tests that kill or
# reshard a server start their own (redis_online_store_test.cc).
set -euo pipefail
PORT="${FSTORE_TEST_REDIS_PORT:-56379}"
TLS_PORT="${FSTORE_TEST_REDISS_PORT:-56380}"
CLUSTER_PORTS=(57001 57002 57003)
DIR="${FSTORE_TEST_REDIS_DIR:-/tmp/fstore-test-redis}"
SERVER="${REDIS_SERVER:-redis-server}"
CLI="${REDIS_CLI:-redis-cli}"

ping() { "$CLI" -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

wait_ping() {
  for _ in $(seq 1 100); do
    ping "$1" && return 0
    sleep 0.05
  done
  echo "redis on port $1 did not start (see $DIR/$1/server.log)" >&2
  exit 1
}

# start_server <port> <extra args...>: a redis-server in $DIR/<port>, no disk writes.
start_server() {
  local port="$1"
  shift
  mkdir -p "$DIR/$port"
  "$SERVER" --bind 127.0.0.1 --port "$port" --dir "$DIR/$port" --daemonize yes \
    --pidfile "$DIR/$port/redis.pid" --logfile "$DIR/$port/server.log" \
    --save "" --appendonly no "$@" >/dev/null
}

cluster_ok() { "$CLI" -h 127.0.0.1 -p "${CLUSTER_PORTS[0]}" cluster info 2>/dev/null | grep -q "cluster_state:ok"; }

case "${1:-start}" in
  start)
    mkdir -p "$DIR"
    if ! ping "$PORT"; then
      start_server "$PORT"
      wait_ping "$PORT"
    fi

    if ! cluster_ok; then
      for p in "${CLUSTER_PORTS[@]}"; do
        if ping "$p"; then "$CLI" -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true; fi
        rm -rf "${DIR:?}/$p"
        start_server "$p" --cluster-enabled yes --cluster-config-file "$DIR/$p/nodes.conf" \
          --cluster-node-timeout 2000 --cluster-port $((p - 10000))
      done
      for p in "${CLUSTER_PORTS[@]}"; do wait_ping "$p"; done
      "$CLI" --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") \
        --cluster-replicas 0 --cluster-yes >"$DIR/cluster-create.log" 2>&1
      for _ in $(seq 1 200); do
        cluster_ok && break
        sleep 0.05
      done
      cluster_ok || { echo "the redis cluster did not reach cluster_state:ok" >&2; exit 1; }
    fi

    TLS_URL=""
    if ldd "$(command -v "$SERVER")" 2>/dev/null | grep -q libssl; then
      if ! "$CLI" --tls --cacert "$DIR/tls/ca.pem" -h 127.0.0.1 -p "$TLS_PORT" ping 2>/dev/null | grep -q PONG; then
        mkdir -p "$DIR/tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=127.0.0.1 \
          -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
          -keyout "$DIR/tls/key.pem" -out "$DIR/tls/ca.pem" >/dev/null 2>&1
        mkdir -p "$DIR/$TLS_PORT"
        "$SERVER" --bind 127.0.0.1 --port 0 --tls-port "$TLS_PORT" --dir "$DIR/$TLS_PORT" \
          --daemonize yes --pidfile "$DIR/$TLS_PORT/redis.pid" --logfile "$DIR/$TLS_PORT/server.log" \
          --save "" --appendonly no --tls-cert-file "$DIR/tls/ca.pem" --tls-key-file "$DIR/tls/key.pem" \
          --tls-ca-cert-file "$DIR/tls/ca.pem" --tls-auth-clients no >/dev/null
        for _ in $(seq 1 100); do
          "$CLI" --tls --cacert "$DIR/tls/ca.pem" -h 127.0.0.1 -p "$TLS_PORT" ping 2>/dev/null | grep -q PONG && break
          sleep 0.05
        done
      fi
      if "$CLI" --tls --cacert "$DIR/tls/ca.pem" -h 127.0.0.1 -p "$TLS_PORT" ping 2>/dev/null | grep -q PONG; then
        TLS_URL="rediss://127.0.0.1:$TLS_PORT/0?tls_ca_file=$DIR/tls/ca.pem"
      fi
    fi

    echo "export FSTORE_TEST_REDIS_URL=redis://127.0.0.1:$PORT/0"
    echo "export FSTORE_TEST_REDIS_CLUSTER_URL=redis+cluster://$(printf '127.0.0.1:%s,' "${CLUSTER_PORTS[@]}" | sed 's/,$//')"
    [ -n "$TLS_URL" ] && echo "export FSTORE_TEST_REDISS_URL=$TLS_URL"
    true
    ;;
  stop)
    for p in "$PORT" "${CLUSTER_PORTS[@]}" "$TLS_PORT"; do
      if [ -f "$DIR/$p/redis.pid" ]; then
        pid="$(cat "$DIR/$p/redis.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
          kill -0 "$pid" 2>/dev/null || break
          sleep 0.05
        done
      fi
    done
    rm -rf "$DIR"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
