#!/usr/bin/env bash
# Installs what fstore's build and tests need, idempotently and without prompts:
# Debian bookworm packages (when missing) and the Python venv at the repository
# root (.venv) with the pinned pyarrow wheel whose Arrow C++ libraries we link.
set -euo pipefail
cd "$(dirname "$0")/.."

PYARROW_VERSION="26.0.1"
DEB_PACKAGES=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates
  libboost1.81-dev libboost-json1.81-dev
  libpg-query-dev librocksdb-dev libjemalloc-dev libsqlite3-dev libpq-dev libhiredis-dev libssl-dev
  libspdlog-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  postgresql redis-server openssl
  python3-venv libpython3.11-dev
)

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "install-deps: creating .venv"
  "$PY" -m venv .venv
fi
# Reinstalled when requirements-dev.txt changes (its hash is kept in the venv).
REQ_HASH="$(sha256sum requirements-dev.txt | cut -d' ' -f1)"
if ! .venv/bin/python -c "import pyarrow, sys; sys.exit(0 if pyarrow.__version__ == '$PYARROW_VERSION' else 1)" 2>/dev/null \
   || [ "$(cat .venv/.fstore-requirements 2>/dev/null)" != "$REQ_HASH" ]; then
  echo "install-deps: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  echo "$REQ_HASH" > .venv/.fstore-requirements
fi
# The Python SDK (python/, package fstore), reinstalled when its files change.
SDK_HASH="$(find python -type f \( -name '*.py' -o -name '*.toml' -o -name 'py.typed' -o -name '*.md' \) \
  -not -path '*/build/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
if [ "$(cat .venv/.fstore-sdk 2>/dev/null)" != "$SDK_HASH" ] \
   || ! .venv/bin/python -c "import fstore" 2>/dev/null; then
  echo "install-deps: installing the Python SDK (python/) into .venv"
  .venv/bin/pip install -q --no-deps --force-reinstall ./python
  echo "$SDK_HASH" > .venv/.fstore-sdk
fi
echo "install-deps: ok"
