"""DepGraph pruning of a small DTPnet: ~50 % parameters removed, head kept, plain rebuild."""

import dataclasses

import pytest
import torch
from torch import nn

from dtp_stereo.checkpoint import load_model, save_checkpoint
from dtp_stereo.complexity import count_parameters
from dtp_stereo.models import build_model
from dtp_stereo.models.dtpnet import DTPNet
from training.config import PruneCfg
from training.prune import head_layers, prune_model, search_channel_ratio, simulate_reduction

SMALL = dict(max_disparity=32, stem=(16, 16, 16), layer1_mids=(16,), layer1_out=16,
             layer2_mids=(32,), layer2_out=32, fuse=(32, 16), c2d=(16, 8), pre=(16,),
             hourglass=(32, 32, 32, 32), classifier=16)


@pytest.fixture(scope="module")
def pruned():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("dtpnet", **SMALL)
    original_params = count_parameters(model)
    g = torch.Generator().manual_seed(1)
    example = (torch.rand(1, 3, 32, 64, generator=g), torch.rand(1, 3, 32, 64, generator=g))
    calls = []

    def finetune(m: nn.Module, step: int) -> None:  # a real optimisation step between steps
        calls.append(step)
        opt = torch.optim.SGD(m.parameters(), lr=1e-3)
        m.train()
        m(*example).disparity.mean().backward()
        opt.step()
        opt.zero_grad()

    cfg = PruneCfg(target_param_reduction=0.5, iterative_steps=2, round_to=8)
    result = prune_model(model, example, cfg, finetune, model_name="dtpnet")
    return result, model, example, calls, original_params


def test_reaches_about_half_the_parameters(pruned):
    result, _, _, calls, original = pruned
    assert result.params_before == original
    assert result.params_after == count_parameters(result.model)
    assert 0.4 <= result.param_reduction <= 0.6
    assert result.macs_after < result.macs_before
    assert calls == [0, 1]
    assert [s["step"] for s in result.steps] == [1, 2]


def test_disparity_head_convs_untouched(pruned):
    result, pruned_model, _, _, _ = pruned
    for model in (pruned_model, result.model):
        cost_conv, logit_conv = head_layers(model)
        assert cost_conv.out_channels == SMALL["c2d"][-1]
        assert logit_conv.out_channels == SMALL["max_disparity"]
    assert result.config.c2d[-1] == SMALL["c2d"][-1]
    changed = [w for w in result.config.hourglass + result.config.stem
               if w not in SMALL["hourglass"] + SMALL["stem"]]
    assert changed and all(w % 8 == 0 for w in changed)  # round_to=8


def test_rebuilt_plain_model_reproduces_pruned_outputs(pruned, tmp_path):
    result, pruned_model, example, _, _ = pruned
    assert type(result.model) is DTPNet and result.model is not pruned_model
    assert result.max_abs_diff == 0.0
    pruned_model.eval()
    with torch.no_grad():
        ref = pruned_model(*example).disparity
    # the checkpoint rebuilds from its config alone (weights_only, no torch-pruning)
    path = save_checkpoint(tmp_path / "pruned.pt", result.model, model_name="dtpnet",
                           provenance={"prune": result.summary()})
    loaded, ckpt = load_model(path)
    assert ckpt.model_config == dataclasses.asdict(result.config)
    with torch.no_grad():
        assert torch.equal(loaded(*example).disparity, ref)


def test_search_is_deterministic_in_widths():
    torch.manual_seed(3)
    model = build_model("dtpnet", **SMALL)
    example = (torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64))
    cfg = PruneCfg(target_param_reduction=0.5, iterative_steps=2)
    assert simulate_reduction(model, example, 0.0, cfg) == 0.0
    ratio, red = search_channel_ratio(model, example, cfg, iterations=4)
    assert 0 < ratio <= cfg.max_channel_ratio
    assert red == pytest.approx(simulate_reduction(model, example, ratio, cfg))
    assert count_parameters(model) == count_parameters(build_model("dtpnet", **SMALL))


@pytest.mark.parametrize("norm", [False, True])
def test_correlation_student_prunes_and_rebuilds(norm):
    """The shipped student's architecture (correlation planes, optionally of unit-length
    features): DepGraph traces the unrolled shift slices, keeps the fixed widths and the plain
    class rebuilds the result exactly."""
    torch.manual_seed(0)
    cfg_model = {"max_disparity": 32, "correlation": 8,  # default widths, as shipped
                 "correlation_norm": norm}
    model = build_model("dtpnet", **cfg_model)
    g = torch.Generator().manual_seed(2)
    example = (torch.rand(1, 3, 32, 64, generator=g), torch.rand(1, 3, 32, 64, generator=g))
    cfg = PruneCfg(target_param_reduction=0.4, iterative_steps=1, round_to=8)
    result = prune_model(model, example, cfg, lambda m, step: None, model_name="dtpnet")
    assert 0.3 <= result.param_reduction <= 0.5
    assert result.max_abs_diff == 0.0
    assert result.config.correlation == 8 and result.config.c2d[-1] == 48  # fixed cost planes
    assert result.config.correlation_norm == norm
    assert result.model.corr_proj[0].out_channels == 8
    assert result.model.corr_logits.out_channels == 32


def _prune_fast_student_with(**extension):
    """Prune a fast-head student grown by ``extension`` (refine or upsample widths) by 40 %,
    after drawing the grown module's zero-initialised last conv at random, so the rebuild check
    sees the module."""
    torch.manual_seed(0)
    model = build_model("dtpnet", max_disparity=32, correlation=8, head="fast", **extension)
    last = [model.refine.residual] if model.refine is not None else [model.upsample.mask]
    if model.upsample is not None and model.upsample.offset is not None:
        last.append(model.upsample.offset)
    with torch.no_grad():
        for conv in last:
            conv.weight.normal_(0.0, 0.1)
    g = torch.Generator().manual_seed(2)
    example = (torch.rand(1, 3, 32, 64, generator=g), torch.rand(1, 3, 32, 64, generator=g))
    cfg = PruneCfg(target_param_reduction=0.4, iterative_steps=1, round_to=8)
    return prune_model(model, example, cfg, lambda m, step: None, model_name="dtpnet")


def test_refined_student_prunes_and_rebuilds():
    """A student with the edge refinement: its one-plane residual conv keeps its width and the
    plain class rebuilds the pruned model (refine widths read back by config_from_module)."""
    result = _prune_fast_student_with(refine=(16, 16))
    assert result.max_abs_diff == 0.0
    assert result.model.refine.residual.out_channels == 1
    assert len(result.config.refine) == 2


def test_convex_upsampling_student_prunes_and_rebuilds():
    """A student with the convex upsampling: its 144-logit mask conv keeps its width and the
    plain class rebuilds the pruned model (upsample widths read back by config_from_module)."""
    result = _prune_fast_student_with(upsample=(16,))
    assert result.max_abs_diff == 0.0
    assert result.model.upsample.mask.out_channels == 144
    assert len(result.config.upsample) == 1
    # its offset conv (16 sub-pixel corrections) keeps its width too, and the flag round-trips
    result = _prune_fast_student_with(upsample=(16,), upsample_offset=True)
    assert result.max_abs_diff == 0.0
    assert result.model.upsample.offset.out_channels == 16
    assert result.config.upsample_offset is True
