"""Lint: flake8 (99 columns, as setup.cfg's [flake8]) over the package, tests, launch and tools.

Like ament_flake8's ``test_flake8``: one test, no errors allowed, every error listed on failure.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("dtp_stereo", "test", "launch", "benchmarks", "training")


def test_flake8():
    pytest.importorskip("flake8")
    paths = [p for p in CHECKED if (ROOT / p).exists()]
    cmd = [sys.executable, "-m", "flake8", "--max-line-length", "99", *paths]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode in (0, 1), f"flake8 did not run: {proc.stderr}"
    assert not errors, f"{len(errors)} flake8 error(s):\n" + "\n".join(errors)
