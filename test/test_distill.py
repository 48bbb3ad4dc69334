"""Distiller: taps, adapters (only when widths differ), frozen teacher, supervision modes."""

import pytest
import torch
from torch import nn

from dtp_stereo.models import build_model
from dtp_stereo.models.output import StereoOutput
from training.config import DistillCfg, PointCfg
from training.distill import Distiller, align_logits, resolve_tap

D = 8


class Toy(nn.Module):
    """Tiny stereo-like model: 2D features (C channels), a 3D volume (V channels), D logits."""

    max_disparity = D

    def __init__(self, feat: int, vol: int) -> None:
        super().__init__()
        self.feat = nn.Conv2d(3, feat, 3, padding=1)
        self.vol = nn.Conv3d(1, vol, 1)
        self.head = nn.Conv2d(feat, D, 1)

    def forward(self, left, right):
        f = self.feat(left - right)
        v = self.vol(f[:, :1].unsqueeze(2).expand(-1, -1, 2, -1, -1).contiguous())
        logits = self.head(f)
        prob = torch.softmax(logits, 1)
        disp = (prob * torch.arange(D, dtype=prob.dtype).view(1, -1, 1, 1)).sum(1)
        return StereoOutput(disp, logits, None, (), {"features": f, "cost_volume": v})


def _pair():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)


def _points(adapter="auto"):
    return (PointCfg("feat", "features", "features", "cosine", 1.0, adapter),
            PointCfg("vol", "cost_volume", "cost_volume", "mse", 1.0, adapter),
            PointCfg("logits", "logits", "logits", "logits_l1", 1.0))


def test_adapters_only_when_channels_differ():
    cfg = DistillCfg(supervision="teacher", points=_points())
    d = Distiller(Toy(4, 2), Toy(6, 3), cfg, example=_pair())
    assert set(d.adapters) == {"feat", "vol"}
    assert isinstance(d.adapters["feat"], nn.Conv2d) and d.adapters["feat"].out_channels == 6
    assert isinstance(d.adapters["vol"], nn.Conv3d) and d.adapters["vol"].in_channels == 2
    aligned = Distiller(Toy(6, 3), Toy(6, 3), cfg, example=_pair())
    assert len(aligned.adapters) == 0
    forced = Distiller(Toy(6, 3), Toy(6, 3), DistillCfg(points=_points("conv")),
                       example=_pair())
    assert set(forced.adapters) == {"feat", "vol"}
    no_adapter = Distiller(Toy(4, 3), Toy(6, 3), DistillCfg(points=_points("none")),
                           example=_pair())
    with pytest.raises(ValueError, match="adapter is 'none'"):
        no_adapter(*_pair())


def test_teacher_frozen_and_gradients_reach_student_and_adapters():
    d = Distiller(Toy(4, 2), Toy(6, 3), DistillCfg(points=_points()), example=_pair())
    d.train()
    assert not d.teacher.training and d.student.training
    step = d(*_pair())
    assert set(step.terms) == {"feat", "vol", "logits"}
    step.loss.backward()
    assert all(p.grad is None for p in d.teacher.parameters())
    assert all(p.grad is not None for p in d.student.parameters())
    assert all(p.grad is not None for p in d.adapters.parameters())
    trainable = {id(p) for p in d.trainable_parameters()}
    assert not trainable & {id(p) for p in d.teacher.parameters()}


def test_supervision_modes_select_terms():
    left, right = _pair()
    gt = torch.full((2, 8, 8), 3.0)
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    pts = (_points()[2],)
    gt_only = Distiller(Toy(4, 2), None, DistillCfg(supervision="gt", points=()))
    assert set(gt_only(left, right, gt, valid).terms) == {"gt"}
    both = Distiller(Toy(4, 2), Toy(4, 2), DistillCfg(supervision="both", points=pts))
    assert set(both(left, right, gt, valid).terms) == {"gt", "logits"}
    with pytest.raises(ValueError, match="needs ground truth"):
        both(left, right)
    with pytest.raises(ValueError, match="needs a teacher"):
        Distiller(Toy(4, 2), None, DistillCfg(supervision="teacher", points=pts))


def test_step_decay_weights_points_not_gt():
    pts = (PointCfg("logits", "logits", "logits", "logits_l1", 2.0),)
    cfg = DistillCfg(supervision="both", points=pts, decay_epochs=(1, 2), decay_factor=10.0)
    d = Distiller(Toy(4, 2), Toy(4, 2), cfg)
    assert [d.point_weight(pts[0], e) for e in (0, 1, 2)] == pytest.approx([2.0, 0.2, 0.02])
    left, right = _pair()
    gt, valid = torch.full((2, 8, 8), 3.0), torch.ones(2, 8, 8, dtype=torch.bool)
    s0, s2 = d(left, right, gt, valid, epoch=0), d(left, right, gt, valid, epoch=2)
    assert s0.loss.item() == pytest.approx(s0.terms["gt"] + 2.0 * s0.terms["logits"], rel=1e-5)
    assert s2.loss.item() == pytest.approx(s2.terms["gt"] + 0.02 * s2.terms["logits"], rel=1e-5)


def test_co_training_updates_the_teacher():
    cfg = DistillCfg(supervision="teacher", points=(_points()[2],), co_train=True)
    d = Distiller(Toy(4, 2), Toy(4, 2), cfg)
    d.train()
    assert d.teacher.training and d.teacher_parameters()
    left, right = _pair()
    step = d(left, right, torch.full((2, 8, 8), 3.0), torch.ones(2, 8, 8, dtype=torch.bool))
    assert "teacher_gt" in step.terms
    step.loss.backward()
    assert d.teacher.feat.weight.grad is not None and d.teacher.head.weight.grad is not None


def test_align_logits_crops_pads_and_resizes():
    s = torch.zeros(1, 4, 6, 8)
    assert align_logits(s, torch.randn(1, 6, 6, 8)).shape == s.shape
    padded = align_logits(s, torch.zeros(1, 2, 6, 8))
    assert padded.shape == s.shape and torch.all(padded[:, 2:] < -1e3)
    assert align_logits(s, torch.randn(1, 4, 3, 4)).shape == s.shape


def test_resolve_tap_lists_available_taps():
    out = Toy(4, 2)(*_pair())
    assert resolve_tap(out, "features").shape[1] == 4
    with pytest.raises(KeyError, match="cost_volume"):
        resolve_tap(out, "nope")


def test_real_models_psmnet_teacher_dtpnet_student():
    torch.manual_seed(0)
    teacher = build_model("psmnet", max_disparity=16, base_width=4, layer1_blocks=1,
                          layer2_blocks=1, layer3_blocks=1, layer4_blocks=1)
    student = build_model("dtpnet", max_disparity=16, stem=(8, 8, 8), layer1_mids=(8,),
                          layer1_out=8, layer2_mids=(8,), layer2_out=8, fuse=(8, 8),
                          c2d=(8, 8), pre=(8,), hourglass=(8, 8, 8, 8), classifier=8)
    pts = (PointCfg("logits", "logits", "logits", "kl", 1.0),
           PointCfg("feat", "features", "features", "cosine", 1.0))
    left, right = torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64)
    d = Distiller(student, teacher, DistillCfg(points=pts, temperature_start=2.0),
                  example=(left, right))
    assert set(d.adapters) == {"feat"}  # student features 8 ch, teacher 4 ch
    d.train()
    step = d(left, right)
    assert torch.isfinite(step.loss)
    step.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_logit_distillation_refuses_models_with_different_disparity_planes():
    """align_logits assumes 1-px planes: a DTPnet with 8 planes of 4.4 px must not be matched
    plane by plane to a 32-plane teacher (it would silently compare different disparities)."""
    from dtp_test_utils import tiny_dtpnet_config

    coarse = build_model("dtpnet", **tiny_dtpnet_config(32, head="fast", disparity_planes=8))
    fine = build_model("dtpnet", **tiny_dtpnet_config(32, head="fast"))
    point = PointCfg(name="logits", teacher_tap="logits_quarter", student_tap="logits_quarter",
                     loss="logits_l1", weight=1.0)
    cfg = DistillCfg(supervision="both", points=[point])
    with pytest.raises(ValueError, match="8 planes of 4.43 px.*32 of 1 px"):
        Distiller(coarse, fine, cfg)
    Distiller(coarse, build_model("dtpnet", **tiny_dtpnet_config(
        32, head="fast", disparity_planes=8)), cfg)  # same planes: fine
    Distiller(fine, fine, cfg)
