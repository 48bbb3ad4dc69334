#!/usr/bin/env bash
# The test command: sets up the local venv (pinned) if needed, then runs the unit and integration tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k checkpoint`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup_env.sh"
cd "$root"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$root/.venv/bin/python" -m pytest -q "$@"
