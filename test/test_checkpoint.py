"""Checkpoint format: round trip, atomic save, resume state, and one clear error per failure."""

import random
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from dtp_stereo import assets
from dtp_stereo.checkpoint import (FORMAT, CheckpointError, load_checkpoint, load_model,
                                   rng_state, save_checkpoint, set_rng_state)
from dtp_stereo.models import _registry

NAME = "_test_ckpt_net"


@dataclass(frozen=True)
class TinyConfig:
    channels: int = 4
    max_disparity: int = 16


class TinyNet(nn.Module):
    """A two-conv stand-in that follows the model contract (config, max_disparity)."""

    model_name = NAME
    size_divisor = 4

    def __init__(self, **cfg) -> None:
        super().__init__()
        self.config = TinyConfig(**cfg)
        self.max_disparity = self.config.max_disparity
        self.conv = nn.Conv2d(6, self.config.channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(self.config.channels)
        self.head = nn.Conv2d(self.config.channels, 1, 1)

    def forward(self, left, right):
        return self.head(torch.relu(self.bn(self.conv(torch.cat([left, right], 1)))))[:, 0]


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Register TinyNet only while a test runs, so registry-wide tests elsewhere never see it."""
    monkeypatch.setitem(_registry._MODELS, NAME, TinyNet)


class NotAllowed:
    """A local class: pickling it embeds a code reference, which weights_only refuses."""

    def __init__(self) -> None:
        self.payload = 1


def _model(channels: int = 4) -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(channels=channels)


def _raw(path):
    return torch.load(path, weights_only=True)


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = _model(channels=5)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, provenance={"data": "synthetic"})
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temp file left behind
    loaded, ckpt = load_model(path, expected_model=NAME)
    assert not loaded.training and ckpt.path == path
    assert ckpt.model_name == NAME and ckpt.model_config == {"channels": 5, "max_disparity": 16}
    assert ckpt.max_disparity == 16 and ckpt.training_state is None
    assert ckpt.input["color"] == "rgb" and len(ckpt.input["mean"]) == 3
    assert ckpt.provenance["data"] == "synthetic" and ckpt.provenance["created"]
    raw = _raw(path)
    assert raw["format"] == FORMAT and raw["format_version"] == 1
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x, x), model.eval()(x, x))


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", _model(channels=3))
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="disk full"):
        save_checkpoint(path, _model(channels=6))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_unstorable_training_state_is_rejected_before_writing(tmp_path):
    with pytest.raises(CheckpointError, match=r"training_state\.extra.*NotAllowed"):
        save_checkpoint(tmp_path / "m.pt", _model(), training_state={"extra": NotAllowed()})
    assert not (tmp_path / "m.pt").exists()


def test_training_state_with_optimizer_scheduler_and_rng_loads_weights_only(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=10)
    x = torch.rand(1, 3, 8, 8)
    model(x, x).mean().backward()
    opt.step()
    sched.step()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = {"stage": "distill", "epoch": 1, "step": 7, "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "rng": rng_state(), "ema": np.arange(3.0)}
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    path = save_checkpoint(tmp_path / "m.pt", model, training_state=state)
    ts = load_checkpoint(path).training_state
    assert ts["step"] == 7 and ts["stage"] == "distill"
    assert torch.equal(ts["ema"], torch.arange(3.0, dtype=torch.float64))
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(ts["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(ts["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: file not found"):
        load_checkpoint(tmp_path / "nope.pt")


# b"not a checkpoint" fails weights_only unpickling ("Unsupported operand"): still not code
@pytest.mark.parametrize("content", [b"hello, I am text", b"", b"PK\x03\x04broken",
                                     b"not a checkpoint"])
def test_not_a_torch_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"bad\.pt: not a readable PyTorch file"):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"m\.pt: not a readable PyTorch file"):
        load_checkpoint(path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "thing": NotAllowed()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: the file contains pickled Python "
                                              r"objects/code; refusing to load"):
        load_checkpoint(path)
    torch.save({"format": FORMAT, "thing": NotAllowed()}, path,
               _use_new_zipfile_serialization=False)  # legacy (non-zip) format too
    with pytest.raises(CheckpointError, match=r"evil\.pt: the file contains pickled Python"):
        load_checkpoint(path)


def test_not_a_dtp_stereo_checkpoint(tmp_path):
    path = tmp_path / "public.tar"
    torch.save({"state_dict": _model().state_dict(), "epoch": 10}, path)
    with pytest.raises(CheckpointError, match=r"public\.tar: not a dtp_stereo checkpoint.*"
                                              r"state_dict.*import-psmnet"):
        load_checkpoint(path)


def _edited(tmp_path, **changes):
    path = save_checkpoint(tmp_path / "m.pt", _model())
    raw = _raw(path)
    raw.update(changes)
    torch.save(raw, path)
    return path


def test_unsupported_format_version(tmp_path):
    path = _edited(tmp_path, format_version=99)
    with pytest.raises(CheckpointError, match=r"m\.pt: unsupported format_version 99"):
        load_checkpoint(path)


def test_wrong_architecture(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model())
    with pytest.raises(CheckpointError, match=rf"m\.pt: holds architecture '{NAME}' but "
                                              r"'psmnet' was expected"):
        load_model(path, expected_model="psmnet")


def test_unknown_model_name_lists_registered(tmp_path):
    path = _edited(tmp_path, model_name="no_such_net")
    with pytest.raises(CheckpointError, match=rf"m\.pt: unknown model 'no_such_net'; "
                                              rf"registered models: .*{NAME}"):
        load_model(path)


def test_config_key_not_accepted(tmp_path):
    path = _edited(tmp_path, model_config={"channels": 4, "max_disparity": 16, "depth": 3})
    with pytest.raises(CheckpointError, match=r"m\.pt: model_config is not accepted.*depth"):
        load_model(path)


def test_state_dict_missing_unexpected_and_shape_mismatch(tmp_path):
    sd = _model().state_dict()
    sd.pop("head.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["conv.weight"] = torch.zeros(7, 6, 3, 3)
    path = _edited(tmp_path, state_dict=sd)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert "m.pt" in msg and "1 missing keys: head.weight" in msg
    assert "1 unexpected keys: extra.weight" in msg
    assert "conv.weight (7, 6, 3, 3) vs model (4, 6, 3, 3)" in msg


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_default_model_path_searches_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        assets.find_model("missing_model.pt")
    searched = tmp_path / "share" / "dtp_stereo" / "models" / "missing_model.pt"
    assert str(searched) in str(info.value)
    assert "models" in str(info.value)
    target = tmp_path / "share" / "dtp_stereo" / "models" / "only_here.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert assets.find_model("only_here.pt") == target


def test_resolve_model_by_name_path_or_default(tmp_path, monkeypatch):
    assert assets.resolve_model(None) == assets.default_model_path()
    assert assets.resolve_model("") == assets.default_model_path()
    for name, fname in assets.OPERATING_POINTS.items():
        assert assets.resolve_model(name).name == fname
    own = tmp_path / "own.pt"
    own.write_bytes(b"x")
    assert assets.resolve_model(str(own)) == own
    with pytest.raises(FileNotFoundError) as info:
        assets.resolve_model("no_such_point")
    assert "no_such_point" in str(info.value) and "default" in str(info.value)


def _rewrite(path, **changes):
    obj = torch.load(path, weights_only=True)
    obj.update(changes)
    torch.save(obj, path)


def test_config_with_huge_widths_is_refused_before_allocating(tmp_path):
    """A config asking for 10^11 weights (400 GB) against a small state_dict: the shape check
    runs on a meta-device build, so the error comes at once and nothing of that size exists."""
    import time

    path = save_checkpoint(tmp_path / "m.pt", _model(channels=4))
    obj = torch.load(path, weights_only=True)
    _rewrite(path, model_config={**obj["model_config"], "channels": 20_000_000_000})
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"m\.pt.*state_dict does not match.*shape"):
        load_model(path)
    assert time.perf_counter() - t0 < 5.0


def test_nan_weights_are_refused_naming_the_tensor(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model(channels=4))
    obj = torch.load(path, weights_only=True)
    state = dict(obj["state_dict"])
    state["head.weight"] = torch.full_like(state["head.weight"], float("nan"))
    _rewrite(path, state_dict=state)
    with pytest.raises(CheckpointError, match=r"m\.pt.*NaN or infinite.*head\.weight"):
        load_model(path)
