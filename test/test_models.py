"""Registry-wide model contract tests (small configs, odd input sizes) and DTPnet specifics."""

import dataclasses
import io
import json

import numpy as np
import pytest
import torch

from dtp_stereo.models import StereoOutput, build_model, list_models
from dtp_stereo.models.dtpnet import DTPNet, DTPNetConfig, config_from_module
from dtp_stereo.preprocess import InputPadder

torch.set_num_threads(2)

D = 48
SMALL = {
    "dtpnet": dict(max_disparity=D, stem=(8, 8, 8), layer1_mids=(8,), layer1_out=8,
                   layer2_mids=(16,), layer2_out=16, fuse=(16, 8), c2d=(12, 12), pre=(12,),
                   hourglass=(16, 16, 16, 16), classifier=8),
    "psmnet": dict(max_disparity=D, base_width=4, layer1_blocks=1, layer2_blocks=2,
                   layer3_blocks=1, layer4_blocks=1),
    "gwcnet": dict(max_disparity=D, base_width=4, blocks=(1, 2, 1, 1), num_groups=4, agg_width=4),
    "gwcnet_student": dict(max_disparity=D, base_width=4, num_groups=4, agg_width=2),
}


def _small(name):
    if name not in SMALL:
        pytest.fail(f"no small test config for registered model {name!r}; add one to SMALL")
    torch.manual_seed(0)
    return build_model(name, **SMALL[name])


def _pair(h=67, w=131, b=1):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


def test_registry_lists_all_architectures():
    assert {"dtpnet", "psmnet", "gwcnet", "gwcnet_student"} <= set(list_models())
    with pytest.raises(KeyError, match="registered models"):
        build_model("nope")
    with pytest.raises(TypeError):
        build_model("dtpnet", not_a_field=1)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("training", [True, False])
def test_forward_contract_at_odd_size(name, training):
    model = _small(name).train(training)
    assert isinstance(model.size_divisor, int) and model.max_disparity == D
    left, right = _pair()
    padder = InputPadder(67, 131, model.size_divisor)
    lp, rp = padder.pad(left, right)
    hp, wp = lp.shape[-2:]
    with torch.set_grad_enabled(training):
        out = model(lp, rp)
    assert isinstance(out, StereoOutput)
    disp = padder.unpad(out.disparity)
    assert disp.shape == (1, 67, 131) and disp.dtype == torch.float32
    assert torch.isfinite(disp).all()
    assert disp.min() >= 0 and disp.max() <= D - 1
    if out.logits is not None:
        assert out.logits.shape == (1, D, hp, wp)
    assert out.confidence.shape == (1, hp, wp)
    assert (out.confidence >= 0).all() and (out.confidence <= 1 + 1e-5).all()
    assert out.intermediates["features"].shape[-2:] == (hp // 4, wp // 4)
    assert "cost_volume" in out.intermediates
    if training:
        assert all(a.shape == (1, hp, wp) for a in out.aux)
        if name != "dtpnet":
            assert len(out.aux) >= 1
        out.disparity.mean().backward()  # the graph is differentiable end to end
    else:
        assert out.aux == ()


@pytest.mark.parametrize("name", list_models())
def test_config_round_trip_through_json(name):
    model = _small(name)
    cfg = json.loads(json.dumps(dataclasses.asdict(model.config)))
    rebuilt = build_model(name, **cfg)
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_unpadded_input_is_rejected():
    model = _small("dtpnet")
    left, right = _pair()
    with pytest.raises(ValueError, match="size_divisor"):
        model(left, right)


def test_gwcnet_teacher_and_student_taps_match():
    teacher, student = _small("gwcnet").eval(), _small("gwcnet_student").eval()
    left, right = _pair(64, 64)
    with torch.no_grad():
        t, s = teacher(left, right), student(left, right)
    for key in ("features", "cost_volume"):
        assert t.intermediates[key].shape == s.intermediates[key].shape
    assert t.intermediates["cost_volume"].shape == (1, 4, D // 4, 16, 16)
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters())


def test_dtpnet_fast_and_full_heads():
    left, right = _pair(64, 128)
    full = _small("dtpnet").eval()
    fast = build_model("dtpnet", **{**SMALL["dtpnet"], "head": "fast"}).eval()
    fast.load_state_dict(full.state_dict())  # the head choice adds no parameters
    with torch.no_grad():
        a, b = full(left, right), fast(left, right)
    assert a.logits.shape == (1, D, 64, 128) and b.logits is None
    assert a.disparity.shape == b.disparity.shape == (1, 64, 128)
    assert b.confidence.shape == (1, 64, 128)
    q = a.intermediates
    assert q["logits_quarter"].shape == (1, D, 16, 32)
    assert q["cost_volume"].shape == (1, 12, 16, 32)
    assert q["features"].shape == q["features_right"].shape == (1, 8, 16, 32)
    # same logits, upsampled before vs after regression: close on average
    assert (a.disparity - b.disparity).abs().mean() < 2.0
    with pytest.raises(ValueError, match="head"):
        DTPNetConfig(head="slow")


def test_dtpnet_config_from_module_after_manual_shrink():
    shrunk = DTPNetConfig(max_disparity=D, stem=(6, 5, 7), layer1_mids=(3, 4), layer1_out=9,
                          layer2_mids=(11,), layer2_out=10, fuse=(5, 6), c2d=(7, 13),
                          pre=(9, 5), hourglass=(6, 7, 8, 9), classifier=4)
    model = DTPNet(shrunk)
    assert config_from_module(model) == shrunk
    assert config_from_module(build_model("dtpnet")) == DTPNetConfig()


def test_dtpnet_torch_pruning_rebuild_from_config():
    tp = pytest.importorskip("torch_pruning")
    model = _small("dtpnet").eval()
    example = _pair(64, 64)
    pruner = tp.pruner.BasePruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
        ignored_layers=[model.classifier[2]], output_transform=lambda out: out.disparity)
    pruner.step()
    cfg = config_from_module(model)
    assert cfg != DTPNetConfig(**SMALL["dtpnet"])
    rebuilt = DTPNet(cfg)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    rebuilt.eval()
    with torch.no_grad():
        assert torch.allclose(rebuilt(*example).disparity, model(*example).disparity, atol=1e-5)


class _DispConf(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, left, right):
        out = self.model(left, right)
        return out.disparity, out.confidence


@pytest.mark.parametrize("head", ["full", "fast"])
def test_dtpnet_onnx_has_no_3d_ops_or_5d_tensors(head):
    onnx = pytest.importorskip("onnx")
    model = build_model("dtpnet", **{**SMALL["dtpnet"], "head": head}).eval()
    left, right = _pair(64, 128)
    buf = io.BytesIO()
    torch.onnx.export(_DispConf(model), (left, right), buf, opset_version=17, dynamo=False,
                      input_names=["left", "right"], output_names=["disparity", "confidence"])
    graph = onnx.shape_inference.infer_shapes(onnx.load_from_string(buf.getvalue())).graph
    ops = [n.op_type for n in graph.node]
    assert "Conv" in ops
    assert not [op for op in ops if "3D" in op.upper() or "CONV3D" in op.upper()]
    # the plane softmax is written out (ORT's axis-1 Softmax was ~5x slower) and the
    # soft-argmax is one MatMul: guards the ONNX Runtime speed-up
    assert "Softmax" not in ops and ops.count("MatMul") == 1 and "Exp" in ops
    assert "Clip" not in ops  # integer Clip (gather indices) is not TensorRT-safe
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        assert len(dims) <= 4, f"{vi.name} has rank {len(dims)}"
    for init in graph.initializer:
        assert len(init.dims) <= 4, f"weight {init.name} has rank {len(init.dims)}"


def test_default_dtpnet_size_matches_paper_budget():
    """Default DTPnet: ~0.64 M parameters and ~4 GMACs at 1x3x256x512 (paper: 0.64 M, 4.00 G)."""
    from dtp_stereo.complexity import count_macs, count_parameters

    tp = pytest.importorskip("torch_pruning")
    model = build_model("dtpnet").eval()
    n = count_parameters(model)
    macs = count_macs(model, 256, 512)
    x = torch.zeros(1, 3, 256, 512)
    tp_macs, tp_params = tp.utils.count_ops_and_params(_DispConf(model), (x, x))
    assert tp_params == n
    assert 0.55e6 < n < 0.75e6
    assert 3.0e9 < macs < tp_macs < 4.6e9  # tp also charges BN and ConvTranspose output grid


@pytest.mark.parametrize("name,cfg", [
    ("psmnet", dict(base_width=8, layer2_blocks=2, max_disparity=192)),
    ("gwcnet", None),
])
def test_volume_narrower_than_disparity_range(name, cfg):
    """A 64x128 input gives a 1/4 map 32 wide, narrower than D/4 = 48 planes: must still run."""
    model = build_model(name, **(cfg or {})).eval() if cfg else build_model(name).eval()
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        out = model(x, x)
    assert out.disparity.shape == (1, 64, 128)
    assert torch.isfinite(out.disparity).all()


def test_shift_correlation_matches_loop_reference():
    from dtp_stereo.models.dtpnet import ShiftCorrelation

    torch.manual_seed(0)
    left, right = torch.randn(2, 3, 4, 10), torch.randn(2, 3, 4, 10)
    out = ShiftCorrelation(3, 5)(left, right)
    ref = torch.zeros(2, 5, 4, 10)
    for i in range(5):
        ref[:, i, :, i:] = (left[..., i:] * right[..., :10 - i]).mean(1)
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("shifts,width", [(1, 6), (2, 6), (5, 10), (12, 5), (48, 40)])
def test_sheared_correlation_matches_loop_reference(shifts, width):
    """The export's matrix-product form gives the loop's planes, also when w < n (zero planes)."""
    from dtp_stereo.models.dtpnet import sheared_correlation

    g = torch.Generator().manual_seed(shifts)
    left = torch.randn(2, 3, 4, width, generator=g)
    right = torch.randn(2, 3, 4, width, generator=g)
    ref = torch.zeros(2, shifts, 4, width)
    for i in range(min(shifts, width)):
        ref[:, i, :, i:] = (left[..., i:] * right[..., :width - i]).mean(1)
    assert torch.allclose(sheared_correlation(left, right, shifts), ref, atol=1e-6)


def test_dtpnet_correlation_option_config_roundtrip_and_2d_export(tmp_path):
    import onnx

    model = build_model("dtpnet", max_disparity=32, correlation=4, stem=(8, 8, 8),
                        layer1_mids=(8,), layer1_out=8, layer2_mids=(8,), layer2_out=8,
                        fuse=(8, 8), c2d=(8, 8), pre=(8,), hourglass=(8, 8, 8, 8),
                        classifier=8).eval()
    assert config_from_module(model) == model.config
    assert model.c2d[0][0].in_channels == 2 * 8 + 32 // 4
    assert not any("correlate" in k for k in model.state_dict())  # no parameters, nothing saved
    x = torch.rand(1, 3, 32, 64)
    path = tmp_path / "corr.onnx"
    torch.onnx.export(model, (x, x), str(path), opset_version=17, dynamo=False,
                      input_names=["left", "right"], output_names=["disparity"])
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Conv" in ops and not any("3D" in op or op == "Loop" for op in ops)
    # the export writes the sheared correlation and the unnormalised regression, not n slices
    # and a normalised volume; its outputs are the eager model's
    assert ops.count("ReduceMean") == 0 and "Softmax" not in ops and "ArgMax" in ops
    ort = pytest.importorskip("onnxruntime")
    x = torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(1))
    y = torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(2))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"left": x.numpy(), "right": y.numpy()})[0]
    with torch.no_grad():
        want = model(x, y).disparity.numpy()
    assert np.abs(got - want).max() < 1e-3


def test_dtpnet_correlation_norm_gives_cosine_planes_and_exports(tmp_path):
    """``correlation_norm``: parameter-free unit-length features, so every correlation plane is
    a cosine similarity in [-1, 1] (1 at shift 0 of a pair of identical images); the config
    round-trips and the ONNX graph matches eager PyTorch."""
    ort = pytest.importorskip("onnxruntime")
    from dtp_stereo.export import export_onnx
    from dtp_test_utils import tiny_dtpnet_config

    cfg = tiny_dtpnet_config(32, head="fast", correlation=4, correlation_norm=True)
    model = build_model("dtpnet", **cfg).eval()
    assert config_from_module(model) == model.config and model.config.correlation_norm
    plain = build_model("dtpnet", **{**cfg, "correlation_norm": False}).eval()
    assert model.state_dict().keys() == plain.state_dict().keys()  # no parameters added
    planes = []
    model.correlate.register_forward_hook(lambda m, i, o: planes.append(o))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1, 3, 32, 64, generator=g), torch.rand(1, 3, 32, 64, generator=g)
    with torch.no_grad():
        model(x, x)
        model(x, y)
    assert torch.allclose(planes[0][:, 0], torch.ones_like(planes[0][:, 0]), atol=1e-4)
    assert all(p.abs().max() <= 1.0 + 1e-5 for p in planes)
    with pytest.raises(ValueError, match="correlation_norm needs correlation"):
        DTPNetConfig(correlation_norm=True)
    path = export_onnx(model, str(tmp_path / "norm.onnx"), 32, 64)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        None, {"left": x.numpy(), "right": y.numpy()})[0]
    with torch.no_grad():
        want = model(x, y).disparity.numpy()
    assert np.abs(got - want).max() < 1e-3


def test_dtpnet_disparity_planes_coarse_volume_regresses_full_range_and_exports(tmp_path):
    """``disparity_planes``: P < D logit planes, plane j = j·(D-1)/(P-1) pixels. The logit and
    correlation-to-logit convs write P planes, the disparity stays in pixels over 0..D-1 (a
    one-hot volume on plane j gives exactly j·step), the config round-trips, and the ONNX graph
    (the unnormalised regression) matches eager PyTorch."""
    ort = pytest.importorskip("onnxruntime")
    from dtp_stereo.export import export_onnx
    from dtp_stereo.models.layers import regress
    from dtp_test_utils import tiny_dtpnet_config

    cfg = tiny_dtpnet_config(32, head="fast", correlation=4, disparity_planes=8)
    model = build_model("dtpnet", **cfg).eval()
    assert config_from_module(model) == model.config
    assert model.planes == 8 and model.plane_step == pytest.approx(31 / 7)
    assert model.classifier[2].out_channels == 8 and model.corr_logits.out_channels == 8
    # the correlation-to-logit init copies to plane j the shift (4 px each) at or below j·step
    init = model.corr_logits.weight[:, :, 0, 0]
    assert init.sum(dim=1).eq(1).all()
    assert init.argmax(dim=1).tolist() == [int(j * 31 / 7 / 4 + 1e-6) for j in range(8)]
    one_hot = torch.full((1, 8, 2, 2), -30.0)
    one_hot[:, 5] = 30.0
    disp, conf = regress(one_hot, model.confidence_radius)
    assert torch.allclose(disp * model.plane_step, torch.full_like(disp, 5 * 31 / 7))
    assert torch.allclose(conf, torch.ones_like(conf))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1, 3, 32, 64, generator=g), torch.rand(1, 3, 32, 64, generator=g)
    with torch.no_grad():
        out = model(x, y)
    assert out.intermediates["logits_quarter"].shape[1] == 8
    assert float(out.disparity.min()) >= 0.0 and float(out.disparity.max()) <= 31.0 + 1e-4
    path = export_onnx(model, str(tmp_path / "planes.onnx"), 32, 64)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        None, {"left": x.numpy(), "right": y.numpy()})[0]
    assert np.abs(got - out.disparity.numpy()).max() < 1e-3
    with pytest.raises(ValueError, match="disparity_planes needs head='fast'"):
        DTPNetConfig(disparity_planes=48)
    with pytest.raises(ValueError, match="disparity_planes must be"):
        DTPNetConfig(head="fast", max_disparity=32, disparity_planes=64)
