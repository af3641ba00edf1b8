#!/usr/bin/env bash
# Runs fstore's test suites: unit | asan | fuzz | integration | all.
# Assumes scripts/install-deps.sh has run (the Makefile makes sure).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-$(nproc)}"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

# Throwaway servers on 127.0.0.1 for the tests that talk to real backends:
# PostgreSQL (registry conformance, PostgreSQL sources, SQL semantics),
# Redis single + a 3-master cluster (online store conformance) and an S3
# server (offline store on S3). Each script prints the exports of its URLs;
# all are stopped on exit. Already-exported URLs are used as they are.
STARTED_SERVERS=()
stop_servers() {
  for s in "${STARTED_SERVERS[@]}"; do scripts/"$s" stop || true; done
}
start_servers() {
  [ "${SERVERS_STARTED:-0}" = 1 ] && return
  SERVERS_STARTED=1
  trap stop_servers EXIT
  if [ -z "${FSTORE_TEST_POSTGRES_URL:-}" ]; then
    eval "$(scripts/test-postgres.sh start)"
    STARTED_SERVERS+=(test-postgres.sh)
  fi
  if [ -z "${FSTORE_TEST_REDIS_URL:-}" ] && [ -x scripts/test-redis.sh ]; then
    eval "$(scripts/test-redis.sh start)"
    STARTED_SERVERS+=(test-redis.sh)
  fi
  if [ -z "${FSTORE_TEST_S3_ENDPOINT:-}" ] && [ -x scripts/test-s3.sh ]; then
    eval "$(scripts/test-s3.sh start)"
    STARTED_SERVERS+=(test-s3.sh)
  fi
  export FSTORE_TEST_POSTGRES_URL FSTORE_TEST_REDIS_URL FSTORE_TEST_REDIS_CLUSTER_URL \
    FSTORE_TEST_S3_ENDPOINT FSTORE_TEST_S3_ACCESS_KEY FSTORE_TEST_S3_SECRET_KEY \
    FSTORE_TEST_S3_REGION 2>/dev/null || true
}

unit() {
  start_servers
  echo "== unit tests (build/)"
  ctest --test-dir build --output-on-failure -j "$JOBS" --timeout 300
}

asan() {
  start_servers
  echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
  if [ ! -f build-asan/build.ninja ]; then
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFSTORE_SANITIZE=ON \
      -DFSTORE_BUILD_SERVER=OFF
  fi
  cmake --build build-asan -j "$JOBS"
  # lsan.supp: the embedded Python interpreter is never finalized (by design,
  # src/fstore/python/embedded_python.h); what it holds is not a leak.
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1" \
  LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS" --timeout 600
}

fuzz() {
  echo "== libFuzzer targets, ${FUZZ_SECONDS}s each (build-fuzz/)"
  if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug \
      -DFSTORE_FUZZ=ON -DFSTORE_BUILD_TESTS=OFF -DFSTORE_BUILD_SERVER=OFF
  fi
  local targets=(transformation_fuzzer expression_fuzzer definition_json_fuzzer serving_request_fuzzer
                 security_input_fuzzer)
  cmake --build build-fuzz -j "$JOBS" --target "${targets[@]}"
  for t in "${targets[@]}"; do
    local exe corpus
    exe=$(find build-fuzz -type f -name "$t" -perm -u+x | head -n 1)
    corpus="build-fuzz/corpus/$t"
    mkdir -p "$corpus"
    cp -n tests/fuzz/"$t"/* "$corpus"/ 2>/dev/null || true
    echo "-- $t"
    "$exe" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      "$corpus" 2>&1 | tail -n 12
    echo "$t: no crash in ${FUZZ_SECONDS}s"
  done
}

integration() {
  echo "== integration tests (build/fstore over HTTP)"
  # The tests' data directories live under build/pytest-tmp, which pytest
  # empties at the start of each run: one run's data at a time (about 1 GB at
  # its peak), not pytest's default of the last three runs' in /tmp.
  FSTORE_BIN="$PWD/build/fstore" .venv/bin/python -m pytest tests/integration -q -p no:cacheprovider \
    --basetemp "$PWD/build/pytest-tmp"
}

# The suites write several GB (three builds, the tests' data); a full disk
# shows up as unrelated failures far into the run, so say so up front.
check_disk() {
  local free_gb
  free_gb=$(( $(df -Pk . | awk 'NR==2 {print $4}') / 1048576 ))
  echo "== ${free_gb} GB free on $(df -P . | awk 'NR==2 {print $6}')"
  if [ "$free_gb" -lt 8 ]; then
    echo "warning: under 8 GB free; the builds and the integration tests' data may not fit" >&2
  fi
}

check_disk
case "${1:-all}" in
  unit) unit ;;
  asan) asan ;;
  fuzz) fuzz ;;
  integration) integration ;;
  all) unit; asan; fuzz; integration ;;
  *) echo "usage: $0 unit|asan|fuzz|integration|all" >&2; exit 2 ;;
esac
