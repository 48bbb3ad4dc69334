"""ONNX export: named I/O, dynamic axes at two sizes, metadata, parity, and the CLI."""

import numpy as np
import onnx
import pytest
import torch

from dtp_stereo.backends.onnx_backend import OnnxRuntimeBackend
from dtp_stereo.backends.torch_backend import TorchBackend
from dtp_stereo.checkpoint import save_checkpoint
from dtp_stereo.cli.main import main
from dtp_stereo.export import StereoOnnxWrapper, check_onnx_against_torch, export_onnx
from dtp_stereo.models import StereoOutput, build_model
from dtp_test_utils import tiny_dtpnet_config

TINY = tiny_dtpnet_config(16)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return build_model("dtpnet", **TINY).eval()


@pytest.fixture(scope="module")
def dynamic_onnx(model, tmp_path_factory):
    return export_onnx(model, str(tmp_path_factory.mktemp("dyn") / "tiny_dyn.onnx"), 64, 128,
                       dynamic=True)


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_dynamic_graph_has_named_io_and_axes(dynamic_onnx):
    proto = onnx.load(dynamic_onnx)
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["left", "right"]
    assert [o.name for o in proto.graph.output] == ["disparity", "confidence"]
    assert _dims(proto.graph.input[0]) == ["batch", 3, "height", "width"]
    assert _dims(proto.graph.output[0]) == ["batch", "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["dtp_stereo.max_disparity"] == "16" and meta["dtp_stereo.size_divisor"] == "16"
    assert "dtp_stereo.input_size" not in meta


@pytest.mark.parametrize("size", [(64, 128), (48, 96)])
def test_dynamic_export_infers_at_two_sizes(model, dynamic_onnx, size):
    h, w = size
    rng = np.random.default_rng(h)
    left = rng.random((h, w, 3), dtype=np.float32)
    right = np.roll(left, -3, axis=1)
    ob = OnnxRuntimeBackend(dynamic_onnx, threads=1)
    got = ob.infer(left, right)
    ref = TorchBackend(model).infer(left, right)
    assert got.disparity.shape == (h, w) and got.confidence.shape == (h, w)
    assert float(np.abs(got.disparity - ref.disparity).max()) < 1e-3
    assert check_onnx_against_torch(model, dynamic_onnx, h, w) < 1e-3


def test_fixed_export_records_size_and_rejects_bad_sizes(model, tmp_path):
    path = export_onnx(model, str(tmp_path / "fixed.onnx"), 32, 64)
    proto = onnx.load(path)
    assert _dims(proto.graph.input[1]) == [1, 3, 32, 64]
    assert {p.key: p.value for p in proto.metadata_props}["dtp_stereo.input_size"] == "32x64"
    with pytest.raises(ValueError, match="multiples of the model's size_divisor 16"):
        export_onnx(model, str(tmp_path / "bad.onnx"), 40, 64)
    assert model.training is False  # mode restored


def test_wrapper_gives_zero_confidence_when_model_has_none():
    class NoConf(torch.nn.Module):
        def forward(self, left, right):
            return StereoOutput((left - right).mean(1))

    disp, conf = StereoOnnxWrapper(NoConf())(torch.ones(1, 3, 4, 8), torch.zeros(1, 3, 4, 8))
    assert torch.equal(disp, torch.ones(1, 4, 8)) and torch.equal(conf, torch.zeros(1, 4, 8))


def test_export_cli(model, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model)
    out = tmp_path / "cli.onnx"
    assert main(["export", str(ckpt), "--output", str(out), "--size", "32x64"]) == 0
    text = capsys.readouterr().out
    assert "max |torch - onnxruntime|" in text and out.is_file()
    diff = float(text.rsplit("=", 1)[1].split()[0])
    assert 0.0 <= diff < 1e-3
    # a tolerance no real export can meet makes the command fail
    assert main(["export", str(ckpt), "--output", str(tmp_path / "b.onnx"), "--size", "32x64",
                 "--tolerance", "-1"]) == 1
    assert "exceeds tolerance" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--output", str(out)]) == 2


def test_onnx_metadata_round_trip_and_clear_errors():
    """One reader/writer of the dtp_stereo.* properties (dtp_stereo.onnx_metadata)."""
    from dtp_stereo.onnx_metadata import OnnxMetadata, OnnxMetadataError

    meta = OnnxMetadata(model_name="dtpnet", max_disparity=192, size_divisor=16,
                        input_size=(480, 640))
    props = meta.to_props()
    assert props == {"dtp_stereo.model_name": "dtpnet", "dtp_stereo.max_disparity": "192",
                     "dtp_stereo.size_divisor": "16", "dtp_stereo.input_size": "480x640"}
    assert OnnxMetadata.from_props({**props, "other.key": "x"}) == meta
    assert OnnxMetadata.from_props({}) == OnnxMetadata()
    with pytest.raises(OnnxMetadataError, match=r"f\.onnx: metadata dtp_stereo\.input_size"):
        OnnxMetadata.from_props({"dtp_stereo.input_size": "480"}, "f.onnx")
    with pytest.raises(OnnxMetadataError, match="max_disparity = 'abc' is not a positive"):
        OnnxMetadata.from_props({"dtp_stereo.max_disparity": "abc"}, "f.onnx")


def test_convbn_of_concat_equals_the_conv_over_the_concatenation(monkeypatch):
    from dtp_stereo.models.layers import convbn, convbn_of_concat

    torch.manual_seed(0)
    seq = convbn(7, 5, 3, 2, 1)
    with torch.no_grad():  # a BatchNorm that is not the identity
        seq[1].running_mean.normal_()
        seq[1].running_var.uniform_(0.5, 2.0)
        seq[1].weight.normal_()
        seq[1].bias.normal_()
    parts = [torch.randn(2, 3, 10, 12), torch.randn(2, 4, 10, 12)]
    seq.eval()
    want = seq(torch.cat(parts, 1))
    assert torch.equal(convbn_of_concat(seq, parts), want)  # eagerly: the concatenation
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)  # the export's form
    got = convbn_of_concat(seq, parts)
    assert got.shape == want.shape == (2, 5, 5, 6)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="7"):
        convbn_of_concat(seq, parts[:1] + [torch.randn(2, 3, 10, 12)])
    seq.train()  # training: the plain conv over the concatenation (batch statistics)
    assert torch.equal(convbn_of_concat(seq, parts), seq(torch.cat(parts, 1)))


def test_dtpnet_export_feeds_no_concatenation_to_a_conv(tmp_path):
    """ONNX Runtime's blocked conv layout leaves and re-enters around each Concat: the export
    writes DTPnet's convs over concatenations (feature fusion, channel-to-disparity, convex
    upsampling) as sums of convs, with the same outputs."""
    torch.manual_seed(0)
    net = build_model("dtpnet", **tiny_dtpnet_config(32, head="fast", correlation=4,
                                                     upsample=(8,))).eval()
    path = export_onnx(net, str(tmp_path / "m.onnx"), 32, 64)
    graph = onnx.load(path).graph
    concat_outputs = {o for n in graph.node if n.op_type == "Concat" for o in n.output}
    assert not [n.name for n in graph.node
                if n.op_type == "Conv" and concat_outputs.intersection(n.input)]
    assert check_onnx_against_torch(net, path, 32, 64) < 1e-3
