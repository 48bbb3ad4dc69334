#!/usr/bin/env bash
# Create (or refresh) the project's local venv with pinned installs. Idempotent: a stamp file records
# the hash of the pins and setup.py, so a second call returns at once.
# torch is installed first from its pin so pip never resolves a CUDA build of torch.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${DTP_VENV:-$root/.venv}
constraints=$root/requirements/constraints.txt
stamp=$venv/.dtp_stereo_installed
want=$(cat "$constraints" "$root/setup.py" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating venv at $venv (pinned installs; a few minutes on a fresh machine)" >&2
python3 -m venv "$venv"
py=$venv/bin/python
log=$venv/setup.log
pip_install() {  # quiet unless it fails; the full log stays in $log
  if ! "$py" -m pip install -q --disable-pip-version-check "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "[setup] pip install $* failed; full log: $log" >&2
    exit 1
  fi
}
pip_install --upgrade pip
pip_install -c "$constraints" "torch==2.13.0"
pip_install -c "$constraints" -e "$root[ros,onnx,training,dev]"
"$py" -c "import torch, rclpy, onnxruntime, torch_pruning, rosbags, cv2" >/dev/null
echo "$want" > "$stamp"
echo "[setup] done" >&2
