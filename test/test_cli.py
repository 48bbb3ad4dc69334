"""End-to-end tests of ``dtp-stereo infer|eval|info|import-psmnet`` on tiny models and data."""

import json
import math

import cv2
import numpy as np
import pytest
import torch

from dtp_stereo.baselines import fill_invalid_background, sgbm_disparity
from dtp_stereo.checkpoint import FORMAT, load_checkpoint, load_model, save_checkpoint
from dtp_stereo.cli.main import main
from dtp_stereo.complexity import count_parameters
from dtp_stereo.data.formats import read_kitti_disparity, read_pfm, write_image_rgb
from dtp_stereo.data.synthetic import SyntheticStereo
from dtp_stereo.metrics import stereo_metrics, valid_mask
from dtp_stereo.models import build_model
from dtp_test_utils import tiny_dtpnet_config

TINY = tiny_dtpnet_config(32, c2d=(8, 8))
H, W = 50, 90  # not multiples of the size divisor: exercises padding and cropping


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model("dtpnet", **TINY), provenance={"data": "none (test)"})
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    sample = SyntheticStereo(H, W, 32, seed=3).sample(0)
    left, right = folder / "scene_left.png", folder / "scene_right.png"
    write_image_rgb(left, sample["left"])
    write_image_rgb(right, sample["right"])
    return left, right


def test_infer_writes_pfm_png16_and_colour(tiny_ckpt, pair, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["infer", str(pair[0]), str(pair[1]), "--checkpoint", str(tiny_ckpt),
               "--output-dir", str(out), "--threads", "1"])
    assert rc == 0
    pfm = read_pfm(out / "scene_left_disp.pfm")
    png, valid = read_kitti_disparity(out / "scene_left_disp.png")
    colour = cv2.imread(str(out / "scene_left_disp_color.png"), cv2.IMREAD_UNCHANGED)
    assert pfm.shape == png.shape == (H, W) and colour.shape == (H, W, 3)
    assert colour.dtype == np.uint8
    assert np.all(np.isfinite(pfm)) and pfm.min() >= 0 and pfm.max() <= 32
    assert np.abs(png[valid] - pfm[valid]).max() <= 0.5 / 256 + 1e-6
    # the same numbers as running the model directly on the padded pair, cropped back
    model, _ = load_model(tiny_ckpt)
    sample = SyntheticStereo(H, W, 32, seed=3).sample(0)
    lt = torch.from_numpy(sample["left"]).permute(2, 0, 1)[None].float() / 255
    rt = torch.from_numpy(sample["right"]).permute(2, 0, 1)[None].float() / 255
    pad = (0, 96 - W, 0, 64 - H)
    with torch.no_grad():
        ref = model(torch.nn.functional.pad(lt, pad, mode="replicate"),
                    torch.nn.functional.pad(rt, pad, mode="replicate")).disparity[0, :H, :W]
    np.testing.assert_allclose(pfm, ref.numpy(), atol=1e-4)
    assert " ms" in capsys.readouterr().out


def test_infer_max_width_maps_back_to_input_size(tiny_ckpt, pair, tmp_path):
    rc = main(["infer", str(pair[0]), str(pair[1]), "--checkpoint", str(tiny_ckpt),
               "--output-dir", str(tmp_path), "--max-width", "48", "--threads", "1"])
    assert rc == 0
    assert read_pfm(tmp_path / "scene_left_disp.pfm").shape == (H, W)


def test_infer_missing_file_names_it(tiny_ckpt, pair, tmp_path, capsys):
    missing = tmp_path / "nope.png"
    rc = main(["infer", str(pair[0]), str(missing), "--checkpoint", str(tiny_ckpt)])
    assert rc != 0
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err


def test_infer_size_mismatch_names_both_files(tiny_ckpt, pair, tmp_path, capsys):
    small = tmp_path / "small.png"
    write_image_rgb(small, np.zeros((H, W - 10, 3), np.uint8))
    rc = main(["infer", str(pair[0]), str(small), "--checkpoint", str(tiny_ckpt),
               "--output-dir", str(tmp_path)])
    assert rc != 0
    err = capsys.readouterr().err
    assert str(pair[0]) in err and str(small) in err and f"{W}x{H}" in err
    assert not list(tmp_path.glob("*_disp*"))


def test_infer_bad_checkpoint_names_it(pair, tmp_path, capsys):
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a checkpoint")
    rc = main(["infer", str(pair[0]), str(pair[1]), "--checkpoint", str(bogus)])
    assert rc != 0 and str(bogus) in capsys.readouterr().err


def _assert_report(report, n):
    assert report["n_images"] == n and report["metrics"]["n_images"] == n
    for key in ("epe", "d1", "bad_1", "bad_2", "bad_3"):
        assert math.isfinite(report["metrics"][key])
    assert 0 <= report["metrics"]["d1"] <= report["metrics"]["bad_3"] <= 100
    assert report["metrics"]["bad_3"] <= report["metrics"]["bad_2"] <= report["metrics"]["bad_1"]
    assert report["metrics"]["mode"] == "per_image"
    assert report["latency_ms"]["count"] == n
    assert all(math.isfinite(report["latency_ms"][k]) for k in ("p50", "p90", "mean"))
    assert report["command"] and report["host"]["torch"] == torch.__version__


def test_eval_checkpoint_on_synthetic_writes_json(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = main(["eval", "--dataset", "synthetic:3:64x96:0:32", "--checkpoint", str(tiny_ckpt),
               "--output", str(out), "--threads", "1", "--warmup", "0"])
    assert rc == 0
    report = json.loads(out.read_text())
    _assert_report(report, 3)
    assert report["checkpoint"] == str(tiny_ckpt) and report["dataset"]["split"] == "val"
    assert report["max_disparity"] == 32
    assert "--dataset synthetic:3:64x96:0:32" in report["command"]
    # the reported EPE equals the mean of the per-image EPEs
    per = [p["epe"] for p in report["per_image"]]
    assert report["metrics"]["epe"] == pytest.approx(np.mean(per))
    assert "EPE px" in capsys.readouterr().out


def test_eval_sgbm_baseline_beats_a_constant(tmp_path):
    out = tmp_path / "sgbm.json"
    rc = main(["eval", "--dataset", "synthetic:2:128x256:0:64", "--sgbm", "--output", str(out),
               "--max-disparity", "64"])
    assert rc == 0
    report = json.loads(out.read_text())
    _assert_report(report, 2)
    assert report["checkpoint"] is None and report["method"] == "opencv_sgbm"
    # a real matcher must beat predicting the mean GT disparity everywhere
    sample = SyntheticStereo(128, 256, 64, seed=0).sample(0)
    valid = valid_mask(sample["disparity"], 64)
    const = np.full_like(sample["disparity"], sample["disparity"][valid].mean())
    sgbm = sgbm_disparity(sample["left"], sample["right"], 64)
    assert stereo_metrics(sgbm, sample["disparity"], valid)["epe"] < \
        stereo_metrics(const, sample["disparity"], valid)["epe"]


def test_eval_unknown_dataset_fails_cleanly(tiny_ckpt, capsys):
    rc = main(["eval", "--dataset", "nosuchset", "--checkpoint", str(tiny_ckpt)])
    assert rc != 0 and "nosuchset" in capsys.readouterr().err


def test_fill_invalid_background_takes_the_farther_neighbour():
    disp = np.array([[0, 5, 0, 0, 2, 0]], np.float32)
    invalid = np.array([[1, 0, 1, 1, 0, 1]], bool)
    assert fill_invalid_background(disp, invalid).tolist() == [[5, 5, 2, 2, 2, 2]]


def test_info_json(tiny_ckpt, capsys):
    rc = main(["info", str(tiny_ckpt), "--size", "64x96", "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    model = build_model("dtpnet", **TINY)
    assert info["model_name"] == "dtpnet" and info["max_disparity"] == 32
    assert info["parameters"] == count_parameters(model)
    assert info["model_config"]["hourglass"] == [8, 8, 8, 8]
    assert info["macs"] > 0 and info["macs_size"] == [64, 96]
    assert info["mac_counter"].startswith("conv-only")
    assert info["provenance"]["data"] == "none (test)"
    rc = main(["info", str(tiny_ckpt), "--size", "32x32"])
    out = capsys.readouterr().out
    assert rc == 0 and "dtpnet" in out and "MACs" in out and "MAC counter    conv-only" in out


def test_info_missing_checkpoint(tmp_path, capsys):
    rc = main(["info", str(tmp_path / "absent.pt")])
    assert rc != 0 and "absent.pt: file not found" in capsys.readouterr().err


def test_import_psmnet_converts_public_layout(tmp_path):
    torch.manual_seed(0)
    model = build_model("psmnet", max_disparity=192)
    public_sd = {f"module.{k}": v for k, v in model.state_dict().items()
                 if not k.endswith("num_batches_tracked")}  # as saved by PyTorch 0.4
    public = tmp_path / "pretrained_sceneflow.tar"
    torch.save({"epoch": 10, "train_loss": 0.9, "state_dict": public_sd}, public)
    out = tmp_path / "psmnet.pt"
    assert main(["import-psmnet", str(public), str(out)]) == 0
    ckpt = load_checkpoint(out, expected_model="psmnet")
    raw = torch.load(out, weights_only=True)
    assert raw["format"] == FORMAT and ckpt.max_disparity == 192
    assert ckpt.provenance["parent"] == str(public)
    key = "feature_extraction.firstconv.0.0.weight"
    assert key in ckpt.state_dict and torch.equal(ckpt.state_dict[key], model.state_dict()[key])


class Payload:
    """A module-level class: pickling it stores a code reference (refused by weights_only)."""


def test_import_psmnet_refuses_code_and_foreign_files(tmp_path, capsys):
    evil = tmp_path / "evil.tar"
    torch.save({"state_dict": {}, "x": Payload()}, evil)
    assert main(["import-psmnet", str(evil), str(tmp_path / "o.pt")]) != 0
    assert "refusing to load" in capsys.readouterr().err
    foreign = tmp_path / "foreign.tar"
    torch.save({"state_dict": {"module.conv.weight": torch.zeros(2)}}, foreign)
    assert main(["import-psmnet", str(foreign), str(tmp_path / "o.pt")]) != 0
    assert str(foreign) in capsys.readouterr().err
    assert not (tmp_path / "o.pt").exists()


def test_infer_checks_its_output_folder_before_inference(tiny_ckpt, pair, tmp_path, capsys,
                                                         monkeypatch):
    import dtp_stereo.cli.infer as infer_cli

    loaded = []
    real = infer_cli.load_pipeline
    monkeypatch.setattr(infer_cli, "load_pipeline",
                        lambda *a, **k: loaded.append(1) or real(*a, **k))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc = main(["infer", str(pair[0]), str(pair[1]), "--checkpoint", str(tiny_ckpt),
               "--output-dir", str(blocker / "out")])
    assert rc != 0 and loaded == []  # no model loaded, no inference run
    err = capsys.readouterr().err
    assert f"output folder {blocker / 'out'}" in err


def test_infer_refuses_a_tiny_image(tiny_ckpt, tmp_path, capsys):
    one = tmp_path / "one.png"
    write_image_rgb(one, np.zeros((1, 1, 3), np.uint8))
    rc = main(["infer", str(one), str(one), "--checkpoint", str(tiny_ckpt),
               "--output-dir", str(tmp_path)])
    assert rc != 0
    err = capsys.readouterr().err
    assert str(one) in err and "1x1" in err and "too small" in err
