#!/usr/bin/env bash
# Sets up everything the test suite needs and runs it: a virtual environment with the CPU build of torch and
# the package's test extras, the Node packages of tests/js (glTF validator, headless-browser driver) and, when
# missing, Debian's chromium. Safe to run again; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${UNIDIT_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0 -e '.[test,bench,serve]'

(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

# The browser tests (tests/web: the in-node viewer, and the editor served by `unidit serve`) drive Debian's
# Chromium, headless.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  else
    echo "tests/web needs Chromium at /usr/bin/chromium; install it (Debian: sudo apt-get install -y" \
         "--no-install-recommends chromium) and run this script again" >&2
    exit 1
  fi
fi

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$venv/bin/pytest" "$@"
