"""Backends: torch vs onnxruntime parity, input checks, TensorRT cache keys and auto fallback."""

import logging
import sys

import numpy as np
import pytest
import torch

from dtp_stereo.backends import BackendError, InferenceResult, StereoBackend, create_backend
from dtp_stereo.backends import tensorrt_backend as trt_mod
from dtp_stereo.backends.base import check_pair
from dtp_stereo.backends.onnx_backend import OnnxRuntimeBackend
from dtp_stereo.backends.torch_backend import TorchBackend
from dtp_stereo.checkpoint import save_checkpoint
from dtp_stereo.data.synthetic import SyntheticStereo
from dtp_stereo.export import EXPORT_REVISION, export_onnx
from dtp_stereo.models import build_model
from dtp_test_utils import tiny_dtpnet_config

H, W = 64, 128
TINY = tiny_dtpnet_config(16)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("dtpnet", **TINY).eval()


@pytest.fixture(scope="module")
def pair():
    s = SyntheticStereo(height=H, width=W, max_disparity=16, seed=3).sample(0)
    return (s["left"].astype(np.float32) / 255.0, s["right"].astype(np.float32) / 255.0)


@pytest.fixture(scope="module")
def onnx_fixed(model, tmp_path_factory):
    return export_onnx(model, str(tmp_path_factory.mktemp("onnx") / "tiny.onnx"), H, W)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return str(save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model))


def test_torch_and_onnxruntime_agree(model, pair, onnx_fixed):
    tb = TorchBackend(model, threads=1)
    ob = OnnxRuntimeBackend(onnx_fixed, threads=1)
    assert isinstance(tb, StereoBackend) and isinstance(ob, StereoBackend)
    rt, ro = tb.infer(*pair), ob.infer(*pair)
    assert isinstance(ro, InferenceResult)
    assert rt.disparity.shape == ro.disparity.shape == (H, W)
    assert ro.disparity.dtype == np.float32 and ro.confidence.shape == (H, W)
    assert float(np.abs(rt.disparity - ro.disparity).max()) < 1e-3
    # confidence is the mass around the argmax: near-uniform untrained logits make the argmax a
    # tie-break, so only its range is compared here
    assert 0.0 <= ro.confidence.min() and ro.confidence.max() <= 1.0 + 1e-6
    assert 0.0 <= rt.disparity.min() and rt.disparity.max() <= TINY["max_disparity"]
    # the ONNX metadata carries what the preprocessor needs
    assert ob.input_size == (H, W)
    assert (ob.max_disparity, ob.size_divisor) == (tb.max_disparity, tb.size_divisor) == (16, 16)
    assert tb.input_size is None and ob.device == "cpu" and ob.name == "onnxruntime"


def test_fixed_onnx_rejects_other_sizes(onnx_fixed):
    ob = OnnxRuntimeBackend(onnx_fixed, threads=1)
    img = np.zeros((H, 2 * W, 3), np.float32)
    with pytest.raises(BackendError, match="fixed at 64x128"):
        ob.infer(img, img)


def test_check_pair_names_the_problem():
    ok = np.zeros((32, 48, 3), np.float32)
    assert check_pair(ok, ok, 16, None, "x") == (32, 48)
    with pytest.raises(BackendError, match="float32"):
        check_pair(ok.astype(np.uint8), ok, 16, None, "x")
    with pytest.raises(BackendError, match="multiple of size_divisor 16"):
        check_pair(np.zeros((30, 48, 3), np.float32), np.zeros((30, 48, 3), np.float32), 16,
                   None, "x")
    with pytest.raises(BackendError, match="differ"):
        check_pair(ok, np.zeros((32, 64, 3), np.float32), 16, None, "x")
    with pytest.raises(BackendError, match="H×W×3"):
        check_pair(ok[..., 0], ok[..., 0], 16, None, "x")


def test_onnx_backend_missing_file(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        OnnxRuntimeBackend(str(tmp_path / "nope.onnx"))


def test_onnxruntime_optimization_levels_agree(onnx_fixed, pair):
    ref = OnnxRuntimeBackend(onnx_fixed, threads=1).infer(*pair).disparity
    for level in ("disable", "basic", "extended"):
        backend = OnnxRuntimeBackend(onnx_fixed, threads=1, optimization=level)
        assert backend.optimization == level
        assert np.abs(backend.infer(*pair).disparity - ref).max() < 1e-3
    with pytest.raises(BackendError, match="optimization must be one of"):
        OnnxRuntimeBackend(onnx_fixed, optimization="max")


def test_create_backend_torch_and_ondemand_onnx(checkpoint, pair, tmp_path):
    tb = create_backend("torch", checkpoint, threads=1)
    assert isinstance(tb, TorchBackend)
    ob = create_backend("onnxruntime", checkpoint, engine_cache_dir=str(tmp_path), threads=1)
    assert isinstance(ob, OnnxRuntimeBackend) and ob.input_size is None  # dynamic export
    exported = list(tmp_path.glob("*.onnx"))
    assert len(exported) == 1
    assert f"_r{EXPORT_REVISION}_dyn" in exported[0].name  # a new exporter never reuses old files
    mtime = exported[0].stat().st_mtime_ns
    ob2 = create_backend("onnxruntime", checkpoint, engine_cache_dir=str(tmp_path), threads=1)
    assert ob2.onnx_path == str(exported[0]) and exported[0].stat().st_mtime_ns == mtime
    diff = np.abs(tb.infer(*pair).disparity - ob.infer(*pair).disparity).max()
    assert diff < 1e-3


def test_create_backend_head_override(checkpoint, pair, tmp_path):
    full = create_backend("torch", checkpoint, threads=1)
    fast = create_backend("torch", checkpoint, threads=1, head="fast")
    assert full.model.config.head == "full" and fast.model.config.head == "fast"
    ort = create_backend("onnxruntime", checkpoint, engine_cache_dir=str(tmp_path), threads=1,
                         head="fast")
    assert [p.name.endswith("_dyn_head-fast.onnx") for p in tmp_path.glob("*.onnx")] == [True]
    d_fast = fast.infer(*pair).disparity
    assert np.abs(ort.infer(*pair).disparity - d_fast).max() < 1e-3
    # same weights, only where the upsampling happens differs
    assert 0 < np.abs(full.infer(*pair).disparity - d_fast).mean() < 2.0


def test_create_backend_rejects_bad_requests(onnx_fixed):
    with pytest.raises(BackendError, match="unknown backend 'trt'"):
        create_backend("trt", None, onnx=onnx_fixed)
    with pytest.raises(BackendError, match="needs a checkpoint or an ONNX file"):
        create_backend("torch", None)
    with pytest.raises(BackendError, match="torch backend needs a checkpoint"):
        create_backend("torch", None, onnx=onnx_fixed)


def test_engine_cache_key_deterministic_and_sensitive():
    base = dict(onnx_sha256="a" * 64, precision="fp16", input_shape=(256, 512),
                trt_version="10.3.0", gpu_name="Orin")
    key = trt_mod.engine_cache_key(**base)
    assert key == trt_mod.engine_cache_key(**base) and len(key) == 64
    variants = [dict(onnx_sha256="b" * 64), dict(precision="fp32"), dict(input_shape=(256, 640)),
                dict(input_shape=(320, 512)), dict(trt_version="10.4.0"),
                dict(gpu_name="NVIDIA H100")]
    keys = {trt_mod.engine_cache_key(**{**base, **v}) for v in variants}
    assert len(keys) == len(variants) and key not in keys
    with pytest.raises(BackendError, match="precision"):
        trt_mod.engine_cache_key(**{**base, "precision": "int8"})


def test_engine_cache_path_and_file_hash(tmp_path, monkeypatch, onnx_fixed):
    key = "0123456789abcdef" + "0" * 48
    path = trt_mod.engine_cache_path(str(tmp_path), key, "tiny")
    assert path == tmp_path / "tiny_0123456789abcdef.engine"
    monkeypatch.setenv("DTP_STEREO_CACHE", str(tmp_path / "cache"))
    assert trt_mod.engine_cache_path(None, key).parent == tmp_path / "cache"
    a = trt_mod.file_sha256(onnx_fixed)
    other = tmp_path / "other.bin"
    other.write_bytes(b"x")
    assert a == trt_mod.file_sha256(onnx_fixed) and a != trt_mod.file_sha256(str(other))


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise


def test_missing_tensorrt_is_a_clear_error(no_tensorrt, onnx_fixed):
    with pytest.raises(BackendError, match="needs the tensorrt Python package.*onnxruntime/torch"):
        trt_mod.import_tensorrt()
    assert trt_mod.tensorrt_available() is False
    with pytest.raises(BackendError, match="tensorrt Python package"):
        create_backend("tensorrt", None, onnx=onnx_fixed)


def test_auto_falls_back_with_warning(no_tensorrt, onnx_fixed, checkpoint, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="dtp_stereo.backends"):
        b = create_backend("auto", None, onnx=onnx_fixed)
    assert b.name == "onnxruntime"
    assert "TensorRT" in caplog.text and "using onnxruntime" in caplog.text
    import dtp_stereo.backends as backends

    real = backends._has_module
    monkeypatch.setattr(backends, "_has_module", lambda n: n != "onnxruntime" and real(n))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dtp_stereo.backends"):
        b = create_backend("auto", checkpoint)
    assert b.name == "torch" and "using torch" in caplog.text
    with pytest.raises(BackendError, match="onnxruntime is not installed"):
        create_backend("auto", None, onnx=onnx_fixed)


def test_auto_skips_tensorrt_without_fixed_size_or_when_it_fails(no_tensorrt, model, onnx_fixed,
                                                                 monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(trt_mod, "tensorrt_available", lambda: True)  # "a GPU with TensorRT"
    dynamic = export_onnx(model, str(tmp_path / "dyn.onnx"), H, W, dynamic=True)
    with caplog.at_level(logging.WARNING, logger="dtp_stereo.backends"):
        b = create_backend("auto", None, onnx=dynamic)
    assert b.name == "onnxruntime" and "fixed network input size" in caplog.text
    caplog.clear()
    # fixed-size graph: TensorRT is tried; its failure (no tensorrt module here) falls back
    with caplog.at_level(logging.WARNING, logger="dtp_stereo.backends"):
        b = create_backend("auto", None, onnx=onnx_fixed)
    assert b.name == "onnxruntime" and b.input_size == (H, W)
    assert "tensorrt Python package" in caplog.text and "using onnxruntime" in caplog.text
    with pytest.raises(BackendError, match="tensorrt Python package"):
        create_backend("tensorrt", None, onnx=onnx_fixed)  # explicit choice: no fallback


def test_torch_options_channels_last_and_cpu_fp16(model, pair, caplog):
    ref = TorchBackend(model).infer(*pair).disparity
    cl = TorchBackend(model, channels_last=True)
    assert float(np.abs(cl.infer(*pair).disparity - ref).max()) < 1e-3
    unfused = TorchBackend(model, fuse_bn=False)
    assert float(np.abs(unfused.infer(*pair).disparity - ref).max()) < 1e-3
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in unfused.model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in cl.model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # caller's kept
    with caplog.at_level(logging.WARNING, logger="dtp_stereo.backends.torch_backend"):
        half = TorchBackend(model, fp16=True)
    assert half.fp16 is False and "fp16 needs CUDA" in caplog.text
    with pytest.raises(BackendError, match="unknown device 'tpu'"):
        TorchBackend(model, device="tpu")


def test_torch_backend_channels_last_skips_3d_models_and_keeps_2d_output(torch_one_thread):
    from dtp_stereo.models import build_model
    from dtp_test_utils import tiny_dtpnet_config

    teacher = build_model("psmnet", base_width=4, layer1_blocks=1, layer2_blocks=1,
                          layer3_blocks=1, layer4_blocks=1, max_disparity=32)
    backend = TorchBackend(teacher, channels_last=True)
    assert backend.channels_last is False  # 5-D Conv3d weights: not applicable
    x = np.random.default_rng(0).random((32, 64, 3), dtype=np.float32)
    assert backend.infer(x, x).disparity.shape == (32, 64)

    torch.manual_seed(0)
    student = build_model("dtpnet", **tiny_dtpnet_config(32))
    plain = TorchBackend(student).infer(x, x).disparity
    fast = TorchBackend(student, channels_last=True)
    assert fast.channels_last is True
    assert np.allclose(fast.infer(x, x).disparity, plain, atol=1e-4)


def test_head_override_without_a_head_is_named(tmp_path, caplog, onnx_fixed):
    from dtp_stereo.checkpoint import CheckpointError

    teacher = build_model("psmnet", base_width=4, layer1_blocks=1, layer2_blocks=1,
                          layer3_blocks=1, layer4_blocks=1, max_disparity=16)
    ckpt = str(save_checkpoint(tmp_path / "teacher.pt", teacher))
    with pytest.raises(CheckpointError, match="overrides: head"):
        create_backend("torch", ckpt, head="fast")
    with caplog.at_level(logging.WARNING, logger="dtp_stereo.backends"):
        backend = create_backend("onnxruntime", onnx=onnx_fixed, head="fast", threads=1)
    assert backend.name == "onnxruntime" and "head 'fast' ignored" in caplog.text


def test_backend_options_travel_as_one_object_and_name_bad_values():
    from dtp_stereo.backends import BackendError, BackendOptions, create_backend

    opts = BackendOptions(threads=1, input_size=[64, 128], head="fast")
    assert opts.input_size == (64, 128)
    for bad, word in (({"threads": 0}, "threads"), ({"device": "tpu"}, "device"),
                      ({"input_size": (0, 64)}, "input_size"), ({"head": "slow"}, "head")):
        with pytest.raises(BackendError, match=word):
            BackendOptions(**bad)
    with pytest.raises(BackendError, match="unexpected keyword"):
        create_backend("torch", "x.pt", options=opts, colour="red")


def test_export_cache_reexports_planted_or_garbage_files_and_refuses_shared_folders(
        checkpoint, pair, tmp_path):
    """issue 12: a garbage file, a graph of another model, or a file others can write, found
    under the cache name, is exported again; a cache folder others can write is refused."""
    import os

    from dtp_stereo.backends import BackendError, create_backend
    from dtp_stereo.export import ensure_onnx, export_onnx
    from dtp_stereo.models import build_model

    cache = tmp_path / "cache"
    path = ensure_onnx(str(checkpoint), str(cache))
    good = create_backend("onnxruntime", str(checkpoint), engine_cache_dir=str(cache), threads=1)
    ref = good.infer(*pair).disparity
    for plant in ("garbage", "other_model", "group_writable"):
        if plant == "garbage":
            with open(path, "wb") as f:
                f.write(b"not an onnx graph")
        elif plant == "other_model":
            other = build_model("dtpnet", **tiny_dtpnet_config(32)).eval()  # D = 32
            export_onnx(other, path, 64, 128, dynamic=True)
        else:
            os.chmod(path, 0o666)
        be = create_backend("onnxruntime", str(checkpoint), engine_cache_dir=str(cache),
                            threads=1)
        assert be.max_disparity == good.max_disparity, plant
        np.testing.assert_allclose(be.infer(*pair).disparity, ref, atol=1e-4, err_msg=plant)
        assert os.stat(path).st_mode & 0o077 == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(BackendError, match="writable by other users"):
        create_backend("onnxruntime", str(checkpoint), engine_cache_dir=str(shared))


def test_tensorrt_engine_cache_trusts_only_private_loadable_files(tmp_path, caplog):
    """The engine-cache logic of the TensorRT backend (TensorRT itself cannot run here): a
    trusted engine is loaded, not rebuilt; a planted (group-writable) or garbage one is rebuilt
    and replaced by a 0600 file; a shared cache folder is refused."""
    import os
    import stat

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    path = cache / "m.engine"
    builds = []

    def build():
        builds.append(1)
        return b"ENGINE-good"

    def deserialize(data):
        return ("engine", data) if data.startswith(b"ENGINE") else None

    assert trt_mod.cached_engine(path, deserialize, build) == ("engine", b"ENGINE-good")
    assert len(builds) == 1 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert trt_mod.cached_engine(path, deserialize, build) == ("engine", b"ENGINE-good")
    assert len(builds) == 1  # reused
    path.write_bytes(b"ENGINE-planted")
    os.chmod(path, 0o666)
    with caplog.at_level("WARNING"):
        assert trt_mod.cached_engine(path, deserialize, build) == ("engine", b"ENGINE-good")
    assert len(builds) == 2 and "writable by other users" in caplog.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"garbage")
    assert trt_mod.cached_engine(path, deserialize, build) == ("engine", b"ENGINE-good")
    assert len(builds) == 3 and "failed to load; rebuilding" in caplog.text
    with pytest.raises(BackendError, match="cannot deserialize the engine built from"):
        trt_mod.cached_engine(tmp_path / "cache" / "x.engine", deserialize, lambda: b"bad")
    os.chmod(cache, 0o777)
    try:
        with pytest.raises(BackendError, match="writable by other users"):
            trt_mod.cached_engine(path, deserialize, build)
    finally:
        os.chmod(cache, 0o700)
