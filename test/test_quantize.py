"""Tests of post-training INT8 quantization and FP16 conversion (training/quantize.py)."""

import collections
import json

import numpy as np
import onnx
import pytest
import torch

import dtp_stereo.models  # noqa: F401  (registers the architectures)
from dtp_stereo.backends.onnx_backend import OnnxRuntimeBackend
from dtp_stereo.export import export_onnx
from dtp_stereo.models._registry import build_model
from dtp_test_utils import tiny_dtpnet_config
from training.quantize import (SyntheticCalibrationReader, compare_onnx_models, convert_fp16,
                               onnx_input_size, quantize_int8)

TINY = tiny_dtpnet_config(32, c2d=(8, 8))


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("dtpnet", **TINY).eval()
    path = tmp_path_factory.mktemp("quant") / "fp32.onnx"
    return export_onnx(model, str(path), 64, 128)


def test_calibration_reader_yields_then_rewinds():
    reader = SyntheticCalibrationReader(64, 128, 2, max_disparity=32)
    feeds = [reader.get_next(), reader.get_next()]
    assert reader.get_next() is None
    for feed in feeds:
        assert set(feed) == {"left", "right"}
        assert feed["left"].shape == (1, 3, 64, 128) and feed["left"].dtype == np.float32
        assert 0.0 <= feed["left"].min() and feed["left"].max() <= 1.0
    reader.rewind()
    assert np.array_equal(reader.get_next()["left"], feeds[0]["left"])
    with pytest.raises(ValueError, match="at least one"):
        SyntheticCalibrationReader(64, 128, 0)


def test_int8_model_has_qdq_runs_and_stays_close(fp32_onnx, tmp_path):
    int8 = quantize_int8(fp32_onnx, str(tmp_path / "int8.onnx"), calib_samples=4)
    graph = onnx.load(int8)
    ops = collections.Counter(n.op_type for n in graph.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    # the soft-argmax MatMul stays float32: none of its inputs comes out of a DequantizeLinear
    dequantized = {o for n in graph.graph.node if n.op_type == "DequantizeLinear"
                   for o in n.output}
    matmuls = [n for n in graph.graph.node if n.op_type == "MatMul"]
    assert matmuls and not any(i in dequantized for n in matmuls for i in n.input)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["dtp_stereo.precision"] == "int8" and meta["dtp_stereo.max_disparity"] == "32"
    assert onnx_input_size(int8) == (64, 128)

    backend = OnnxRuntimeBackend(int8, threads=1)
    assert backend.max_disparity == 32 and backend.input_size == (64, 128)
    report = compare_onnx_models({"fp32": fp32_onnx, "int8": int8}, num_samples=2, threads=1,
                                 repeats=1, warmup=0)
    fp32, q = report["models"]["fp32"], report["models"]["int8"]
    assert fp32["max_abs_diff_px"] == 0.0
    assert q["finite"] and np.isfinite(q["epe"])
    # loose: int8 disparities stay within a quarter of the 32 px range of the fp32 ones
    assert q["mean_abs_diff_px"] < 8.0
    assert abs(q["epe"] - fp32["epe"]) < 8.0
    assert q["latency_ms"]["median"] > 0


def test_fp16_conversion_runs(fp32_onnx, tmp_path):
    fp16 = convert_fp16(fp32_onnx, str(tmp_path / "fp16.onnx"))
    graph = onnx.load(fp16)
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.graph.initializer)
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    left = np.random.default_rng(0).random((64, 128, 3), dtype=np.float32)
    out = OnnxRuntimeBackend(fp16, threads=1).infer(left, np.roll(left, -4, axis=1))
    assert out.disparity.shape == (64, 128) and np.isfinite(out.disparity).all()


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        quantize_int8(str(tmp_path / "none.onnx"), str(tmp_path / "out.onnx"), 1)


def test_dtp_train_quantize_cli_writes_int8_and_json(fp32_onnx, tmp_path, capsys):
    from training.cli import main

    out, report = tmp_path / "q" / "int8.onnx", tmp_path / "q" / "quant.json"
    rc = main(["quantize", "--onnx", fp32_onnx, "--output", str(out), "--calib-samples", "2",
               "--compare", "1", "--repeats", "1", "--threads", "1", "--json", str(report)])
    assert rc == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["dtp_stereo.precision"] == "int8"
    summary = json.loads(report.read_text())
    assert summary["int8"] == str(out) and summary["input_size"] == "64x128"
    assert summary["calib_samples"] == 2
    models = summary["comparison"]["models"]
    assert set(models) == {"fp32", "int8"}
    assert models["fp32"]["max_abs_diff_px"] == 0.0
    for entry in models.values():
        assert np.isfinite(entry["epe"]) and entry["latency_ms"]["count"] == 1
        assert entry["latency_ms"]["median"] > 0
    assert "int8: EPE" in capsys.readouterr().out


def test_dtp_train_quantize_cli_without_compare_and_bad_input(fp32_onnx, tmp_path, capsys):
    from training.cli import main

    report = tmp_path / "quant.json"
    assert main(["quantize", "--onnx", fp32_onnx, "--output", str(tmp_path / "i8.onnx"),
                 "--calib-samples", "1", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["comparison"] is None
    assert main(["quantize", "--onnx", str(tmp_path / "missing.onnx"),
                 "--output", str(tmp_path / "x.onnx")]) == 1
    assert "missing.onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["quantize", "--onnx", fp32_onnx, "--output", "x.onnx", "--size", "64by128"])
