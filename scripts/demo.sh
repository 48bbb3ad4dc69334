#!/usr/bin/env bash
# The main job: sets up the local venv (pinned) if needed, then runs the shipped student through the real
# ROS 2 node on the synthetic sample bag and prints a summary. Extra arguments go to `dtp-stereo demo`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "$root/.venv/bin/dtp-stereo" demo "$@"
