"""Inference rewrites: BatchNorm folding keeps every model's outputs; regression ops match the
plain formulas they replace."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dtp_stereo.models import build_model
from dtp_stereo.models.layers import (regress, regress_unnormalised, soft_argmax,
                                      window_confidence)
from dtp_stereo.optimize import count_batchnorms, fuse_conv_bn
from dtp_test_utils import tiny_dtpnet_config

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _randomise_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so folding has work to do."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


@pytest.mark.parametrize("name,cfg", [
    ("dtpnet", {**tiny_dtpnet_config(16), "head": "full"}),
    ("dtpnet", {**tiny_dtpnet_config(16), "head": "fast", "correlation": 4}),
    ("psmnet", dict(base_width=4, layer1_blocks=1, layer2_blocks=1, layer3_blocks=1,
                    layer4_blocks=1, max_disparity=16)),
    ("gwcnet_student", {}),
])
def test_fuse_conv_bn_removes_every_batchnorm_and_keeps_outputs(name, cfg):
    torch.manual_seed(0)
    model = _randomise_batchnorms(build_model(name, **cfg))
    before = count_batchnorms(model)
    fused = fuse_conv_bn(model)
    assert before > 0 and count_batchnorms(fused) == 0
    assert count_batchnorms(model) == before  # not in place by default
    x = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -3, dims=3)
    with torch.inference_mode():
        ref, out = model(x, y), fused(x, y)
    assert torch.allclose(out.disparity, ref.disparity, atol=1e-3)
    assert torch.allclose(out.confidence, ref.confidence, atol=1e-4)
    # the reference must depend on the statistics, or the comparison proves nothing
    plain = _randomise_batchnorms(build_model(name, **cfg), seed=5)
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if "running" not in k}, strict=False)
    with torch.inference_mode():
        assert not torch.allclose(plain(x, y).disparity, ref.disparity, atol=1e-3)


def test_fuse_conv_bn_inplace_and_leaves_lone_batchnorms():
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.BatchNorm2d(4))  # the second BN follows a ReLU: not foldable
    _randomise_batchnorms(seq)
    x = torch.rand(2, 3, 8, 8)
    ref = seq(x)
    out = fuse_conv_bn(seq, inplace=True)
    assert out is seq and count_batchnorms(seq) == 1
    assert isinstance(seq[1], nn.Identity) and seq[0].bias is not None
    assert torch.allclose(seq(x), ref, atol=1e-5)


def test_fuse_conv_bn_transposed_conv():
    seq = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                           bias=False), nn.BatchNorm2d(6))
    _randomise_batchnorms(seq)
    x = torch.rand(1, 4, 5, 7)
    ref = seq(x)
    fuse_conv_bn(seq, inplace=True)
    assert count_batchnorms(seq) == 0 and torch.allclose(seq(x), ref, atol=1e-5)


def test_regression_ops_match_the_plain_formulas():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 24, 5, 7, generator=g) * 3
    logits[0, 0, 0, 0] = 50.0  # peak at the first plane: window clipped at 0
    logits[0, 23, 0, 1] = 50.0  # and at the last plane
    prob = F.softmax(logits, dim=1)
    d = torch.arange(24.0).view(1, -1, 1, 1)
    expected_disp = (prob * d).sum(1)
    peak = prob.argmax(1, keepdim=True).float()
    expected_conf = (prob * ((d - peak).abs() <= 2).float()).sum(1)
    assert torch.allclose(soft_argmax(prob), expected_disp, atol=1e-4)
    assert torch.allclose(window_confidence(prob, 2), expected_conf, atol=1e-6)
    assert torch.allclose(window_confidence(prob, 0), prob.amax(1), atol=1e-6)
    disp, conf = regress(logits)
    assert disp[0, 0, 0].item() == pytest.approx(0.0, abs=1e-3)
    assert disp[0, 0, 1].item() == pytest.approx(23.0, abs=1e-3)
    assert conf[0, 0, 0].item() == pytest.approx(1.0, abs=1e-4)
    for radius in (0, 2):  # the export's form: same values, peaks at both ends included
        fast_disp, fast_conf = regress_unnormalised(logits, radius)
        ref_disp, ref_conf = regress(logits, radius)
        assert torch.allclose(fast_disp, ref_disp, atol=1e-4)
        assert torch.allclose(fast_conf, ref_conf, atol=1e-6)


def test_soft_argmax_float32_under_autocast():
    prob = F.softmax(torch.randn(1, 192, 4, 4) * 4, dim=1)
    exact = (prob * torch.arange(192.0).view(1, -1, 1, 1)).sum(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        disp = soft_argmax(prob)  # autocast would run a plain MatMul in bf16 (~0.2 px off)
    assert disp.dtype == torch.float32
    assert torch.allclose(disp, exact, atol=1e-4)
