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
