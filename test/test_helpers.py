"""The shared helpers: atomic writes (dtp_stereo.files) and eval_mode (dtp_stereo.models)."""

import pytest
import torch
from torch import nn

from dtp_stereo.files import atomic_path, atomic_write_bytes
from dtp_stereo.models import eval_mode


def test_atomic_write_replaces_only_on_success(tmp_path):
    dst = tmp_path / "sub" / "file.onnx"
    atomic_write_bytes(dst, b"first")
    assert dst.read_bytes() == b"first"
    with pytest.raises(RuntimeError):
        with atomic_path(dst) as tmp:
            assert tmp.parent == dst.parent and tmp.name.endswith(".onnx") and tmp != dst
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert dst.read_bytes() == b"first"  # untouched
    assert sorted(p.name for p in dst.parent.iterdir()) == ["file.onnx"]  # no temp left


def test_eval_mode_restores_mode_and_device_even_on_error():
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)).train()
    with eval_mode(model) as m:
        assert m is model and not model.training and not model[1].training
    assert model.training and model[1].training
    model.eval()
    with pytest.raises(ValueError):
        with eval_mode(model, "cpu"):
            raise ValueError("inside")
    assert not model.training
    assert next(model.parameters()).device == torch.device("cpu")


def test_temporaries_of_a_writer_killed_mid_save_are_removed_by_the_next_save(tmp_path):
    """kill -9 during a save leaves the temporary; the next save of that file removes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "m.pt"
    code = ("import sys, time\nfrom dtp_stereo.files import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'x' * 1000)\n    print('writing', flush=True)\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.05)
    from dtp_stereo.files import _HOST

    orphans = [p.name for p in tmp_path.iterdir()]
    assert len(orphans) == 1 and f".m.pt.{_HOST}-{proc.pid}." in orphans[0]  # kill -9 left it
    # kept: a live writer's temporary (saving the same file right now), another host's (its
    # pids are not ours: a shared volume), and odd names
    kept = [f".m.pt.{_HOST}-{os.getppid()}.abc.tmp.pt", f".m.pt.otherhost-{proc.pid}.x.tmp.pt",
            f".m.pt.{_HOST}-99999999999999999999.x.tmp", f".m.pt.{_HOST}-\u00b2.x.tmp"]
    for name in kept:
        (tmp_path / name).write_bytes(b"busy")
    atomic_write_bytes(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.pt", *kept])
    assert target.read_bytes() == b"new"


def test_written_files_follow_the_umask_and_cache_entries_stay_private(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        plain = atomic_write_bytes(tmp_path / "model.pt", b"w")
        cached = atomic_write_bytes(tmp_path / "engine.plan", b"e", private=True)
        os.umask(0o002)
        shared = atomic_write_bytes(tmp_path / "group.pt", b"g")
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664
