"""Tests of benchmarks/aloe_eval.py on a small fake "Aloe" pair (same file formats)."""

import importlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dtp_stereo.models  # noqa: F401  (registers the architectures)
from dtp_stereo.checkpoint import save_checkpoint
from dtp_stereo.data.synthetic import SyntheticStereo
from dtp_stereo.models._registry import build_model
from dtp_test_utils import tiny_dtpnet_config

REPO = Path(__file__).resolve().parents[1]
MAX_DISP = 16
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _load_script():
    return importlib.import_module("benchmarks.aloe_eval")


@pytest.fixture(scope="module")
def aloe():
    return _load_script()


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    """aloeL.jpg/aloeR.jpg (96x128) and an 8-bit aloeGT.png (0 = unknown), full-size pixels."""
    folder = tmp_path_factory.mktemp("aloe")
    sample = SyntheticStereo(96, 128, max_disparity=40, seed=3).sample(0)
    gt = np.clip(np.round(sample["disparity"]), 0, 255).astype(np.uint8)
    gt[:, :8] = 0  # an unknown band, as occlusions in the real GT
    gt[:24, 96:] = 60  # 30 px after scale 0.5: beyond the tiny model's 16 px range
    cv2.imwrite(str(folder / "aloeL.jpg"), sample["left"][..., ::-1])
    cv2.imwrite(str(folder / "aloeR.jpg"), sample["right"][..., ::-1])
    cv2.imwrite(str(folder / "aloeGT.png"), gt)
    return folder, gt


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("dtpnet", **tiny_dtpnet_config(MAX_DISP))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model)
    return path


def test_load_aloe_scales_images_and_gt_values(aloe, fake_data):
    folder, gt_raw = fake_data
    left, right, gt = aloe.load_aloe(str(folder), 0.5)
    assert left.shape == right.shape == (48, 64, 3) and left.dtype == np.uint8
    assert gt.shape == (48, 64) and gt.dtype == np.float32
    expected = cv2.resize(gt_raw, (64, 48), interpolation=cv2.INTER_NEAREST) * 0.5
    np.testing.assert_array_equal(gt, expected)
    assert (gt[:, :4] == 0).all()  # unknown stays unknown


def test_missing_files_name_the_package(aloe, tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install opencv-doc"):
        aloe.load_aloe(str(tmp_path), 0.25)
    with pytest.raises(ValueError, match="scale"):
        aloe.load_aloe(str(tmp_path), 0.0)


def test_main_writes_json_and_figure(aloe, fake_data, tiny_checkpoint, tmp_path, capsys):
    folder, gt_raw = fake_data
    out_json, figure = tmp_path / "aloe.json", tmp_path / "aloe.png"
    rc = aloe.main(["--checkpoints", f"tiny={tiny_checkpoint}", "--data-dir", str(folder),
                    "--scale", "0.5", "--threads", "1", "--repeats", "1", "--warmup", "0",
                    "--output-json", str(out_json), "--figure", str(figure)])
    assert rc == 0
    report = json.loads(out_json.read_text())
    assert report["size"] == "48x64" and report["scale"] == 0.5
    assert set(report["methods"]) == {"sgbm", "tiny"}
    gt = cv2.resize(gt_raw, (64, 48), interpolation=cv2.INTER_NEAREST) * 0.5
    known = gt > 0
    for name, entry in report["methods"].items():
        for key in ("epe", "d1", "bad_1", "bad_2", "bad_3", "gt_above_max_fraction"):
            assert math.isfinite(entry[key]), (name, key)
        assert entry["latency_ms"]["count"] == 1 and entry["latency_ms"]["p50"] > 0
        beyond = (known & (gt >= entry["max_disparity"])).sum() / known.sum()
        assert entry["gt_above_max_fraction"] == pytest.approx(beyond)
        assert entry["valid_pixels"] == int((known & (gt < entry["max_disparity"])).sum())
    tiny = report["methods"]["tiny"]
    assert tiny["max_disparity"] == MAX_DISP and tiny["params"] > 0
    assert 0 < tiny["gt_above_max_fraction"] < 1
    assert report["methods"]["sgbm"]["max_disparity"] == MAX_DISP  # the widest model's range
    img = cv2.imread(str(figure))
    assert img is not None and img.shape[1] > img.shape[0]
    assert "tiny: EPE" in capsys.readouterr().out


def test_bad_checkpoint_argument_is_an_error(aloe, fake_data, tmp_path, capsys):
    folder, _ = fake_data
    rc = aloe.main(["--checkpoints", f"x={tmp_path / 'none.pt'}", "--data-dir", str(folder),
                    "--output-json", str(tmp_path / "a.json")])
    assert rc == 1 and "LABEL=PATH" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()


def test_error_by_disparity_bins_count_every_known_pixel_once():
    """bin_errors: each GT-known pixel below the range falls in exactly one bin; EPE / bad-2
    per bin are those of its pixels; holes (NaN) count as -1 px; bad edges are rejected."""
    bins_mod = importlib.import_module("benchmarks.error_by_disparity")
    gt = np.array([[0.0, 10.0, 60.0, 120.0, 191.0, 192.0]], np.float32)  # 0 unknown, 192 out
    pred = np.array([[5.0, 11.0, 63.0, np.nan, 191.0, 0.0]], np.float32)
    rows = bins_mod.bin_errors(pred, gt, [0.0, 50.0, 100.0, 150.0, 192.0])
    assert [r["pixels"] for r in rows] == [1, 1, 1, 1]
    assert [r["epe"] for r in rows] == pytest.approx([1.0, 3.0, 121.0, 0.0])
    assert [r["bad_2"] for r in rows] == pytest.approx([0.0, 100.0, 100.0, 0.0])
    with pytest.raises(ValueError, match="increasing"):
        bins_mod.bin_errors(pred, gt, [0.0, 0.0])
