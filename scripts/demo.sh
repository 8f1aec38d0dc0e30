#!/usr/bin/env bash
# Sets up a virtual environment (the CPU build of torch and the package) and runs `unidit demo`: one prompt ->
# an image, a video, a Gaussian splat and a mesh with the shipped demo bundle. Safe to run again; extra arguments
# go to `unidit demo` (e.g. --prompt "a small blue torus" --out demo).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${UNIDIT_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0 -e .

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$venv/bin/unidit" demo "$@"
