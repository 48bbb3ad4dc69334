"""The transferring recipe's data path: full augmentation set, fresh scene streams, real pairs."""

import json
import math

import cv2
import numpy as np
import pytest
import torch

from dtp_stereo.cli.main import main
from dtp_stereo.data.formats import read_pfm, write_image_rgb
from dtp_stereo.data.readers import list_dataset
from dtp_stereo.data.real_pairs import load_motorcycle, prepare_real_pairs, scale_pair
from dtp_stereo.data.synthetic import SyntheticStereo
from dtp_stereo.models import build_model
from dtp_stereo.checkpoint import save_checkpoint
from dtp_test_utils import tiny_dtpnet_config
from training.data.augment import (AugmentConfig, StereoAugment, blur_noise, erase_right,
                                   scale_stretch, swap_flip, vertical_flip, warp_right)
from training.data.datasets import build_dataset
from training.trainer import batch_indices, make_loader

torch.set_num_threads(1)


def _warp_error(sample):
    """Mean |left − right(x − d)| over non-occluded pixels (grey levels)."""
    d = sample["disparity"]
    h, w = d.shape
    xs = (np.arange(w, dtype=np.float32)[None, :] - d).astype(np.float32)
    ys = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, 1)
    warped = cv2.remap(sample["right"], xs, ys, cv2.INTER_LINEAR)
    mask = sample["valid_noc"] if "valid_noc" in sample else sample["valid"]
    mask = mask & (xs >= 0)
    return float(np.abs(warped.astype(np.float32) - sample["left"]).mean(axis=2)[mask].mean())


@pytest.fixture(scope="module")
def scene():
    return SyntheticStereo(64, 128, 64, seed=1).sample(0)


def test_synthetic_right_disparity_maps_right_pixels_to_left(scene):
    dr = scene["disparity_right"]
    h, w = dr.shape
    xs = (np.arange(w, dtype=np.float32)[None, :] + dr).astype(np.float32)
    ys = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, 1)
    back = cv2.remap(scene["left"], xs, ys, cv2.INTER_LINEAR)
    ok = xs <= w - 1
    err = np.abs(back.astype(np.float32) - scene["right"]).mean(axis=2)[ok]
    assert np.median(err) < 8.0  # noise and gain only, except at occlusions


def test_swap_flip_is_an_exact_stereo_pair(scene):
    base = _warp_error(scene)
    flipped = swap_flip(scene)
    assert "valid_noc" not in flipped and flipped["valid"].mean() > 0.99
    np.testing.assert_array_equal(flipped["left"], scene["right"][:, ::-1])
    # occlusions are not masked after the swap, so allow for them; a wrong disparity is far worse
    assert _warp_error(flipped) < base + 6.0
    wrong = dict(flipped, disparity=scene["disparity"][:, ::-1])
    assert _warp_error(wrong) > _warp_error(flipped) + 3.0
    with pytest.raises(KeyError, match="disparity_right"):
        swap_flip({k: v for k, v in scene.items() if k != "disparity_right"})


def test_scale_stretch_scales_disparity_and_covers_the_crop(scene):
    cfg = AugmentConfig(crop_size=(48, 96), scale=(-0.5, -0.5), stretch_prob=0.0)
    out = scale_stretch(scene, cfg, np.random.default_rng(0))
    h, w = out["left"].shape[:2]
    assert h >= 48 + 8 and w >= 96 + 8  # raised to cover the crop
    sx = w / 128
    assert out["disparity"].max() == pytest.approx(scene["disparity"].max() * sx, rel=0.05)
    assert _warp_error(out) < _warp_error(scene) + 6.0
    up = scale_stretch(scene, AugmentConfig(scale=(0.4, 0.4), stretch_prob=0.0),
                       np.random.default_rng(0))
    assert up["left"].shape[:2] == (84, 169) and up["valid"].dtype == bool


def test_right_warp_blur_noise_eraser_and_vflip(scene):
    g = np.random.default_rng(0)
    cfg = AugmentConfig(right_rotation_deg=0.1, right_vertical_shift=2.0, blur_prob=1.0,
                        noise_prob=1.0, noise_std=10.0, eraser_size=(10, 20))
    warped = warp_right(scene, cfg, g)
    assert not np.array_equal(warped["right"], scene["right"])
    np.testing.assert_array_equal(warped["left"], scene["left"])
    np.testing.assert_array_equal(warped["disparity"], scene["disparity"])
    noisy = blur_noise(scene, cfg, g)
    assert noisy["left"].dtype == np.uint8 and not np.array_equal(noisy["left"], scene["left"])
    erased = erase_right(scene, cfg, g)
    changed = np.any(erased["right"] != scene["right"], axis=2)
    assert 0 < changed.mean() < 0.2 and np.array_equal(erased["left"], scene["left"])
    flipped = vertical_flip(scene)
    np.testing.assert_array_equal(flipped["disparity"], scene["disparity"][::-1])
    assert _warp_error(flipped) == pytest.approx(_warp_error(scene), rel=1e-6)


def test_full_augmentation_keeps_pairs_consistent_and_deterministic(scene):
    aug = StereoAugment({"crop_size": [32, 64], "swap_flip_prob": 0.5, "scale_prob": 0.8,
                         "right_warp_prob": 0.5, "hue": 0.16, "saturation": [0.0, 1.4],
                         "blur_prob": 0.5, "noise_prob": 0.5, "eraser_prob": 0.5,
                         "eraser_size": [8, 16], "vflip_prob": 0.1})
    a = aug(scene, np.random.default_rng(7))
    b = aug(scene, np.random.default_rng(7))
    for key in ("left", "right", "disparity", "valid"):
        np.testing.assert_array_equal(a[key], b[key])
    for i in range(8):
        out = aug(scene, np.random.default_rng(i))
        assert out["left"].shape == (32, 64, 3) and out["disparity"].shape == (32, 64)
        assert out["disparity"].min() >= 0 and out["valid"].any()
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(blur_prob=1.5)
    with pytest.raises(ValueError, match="low"):
        AugmentConfig(scale=(0.4, -0.2))


def test_fresh_stream_never_repeats_and_resumes_in_place():
    spec = {"name": "synthetic", "split": "train", "fresh": True, "height": 32, "width": 64,
            "max_disparity": 32}
    ds = build_dataset(spec)
    assert ds.fresh and len(ds) > 10 ** 15
    seen = [i for s in range(5) for i in batch_indices(s, len(ds), 4, 0, fresh=True)]
    assert seen == list(range(20))
    # two ranks of one step never share a scene
    r0 = batch_indices(3, len(ds), 2, 0, 0, 2, fresh=True)
    r1 = batch_indices(3, len(ds), 2, 0, 1, 2, fresh=True)
    assert not set(r0) & set(r1)
    whole = [b["left"] for b in make_loader(ds, 0, 3, 2, seed=5)]
    resumed = [b["left"] for b in make_loader(ds, 2, 3, 2, seed=5)]
    assert torch.equal(whole[2], resumed[0]) and not torch.equal(whole[0], whole[1])
    with pytest.raises(ValueError, match="fresh"):
        build_dataset({"name": "kitti2015", "root": "/nonexistent", "fresh": True})


def test_scale_pair_keeps_unknown_unknown():
    left = np.zeros((40, 60, 3), np.uint8)
    gt = np.full((40, 60), 10.0, np.float32)
    gt[:, :5] = np.inf
    _, _, g = scale_pair(left, left, gt, 0.5)
    assert g.shape == (20, 30)
    assert np.isinf(g[:, 0]).all() and np.allclose(g[:, 10:], 5.0)
    with pytest.raises(ValueError):
        scale_pair(left, left, gt, 1.5)


def _fake_sources(tmp_path):
    """A fake opencv-doc folder (Aloe) and a fake scikit-image install (Motorcycle)."""
    sample = SyntheticStereo(48, 96, 32, seed=4).sample(0)
    doc = tmp_path / "doc"
    doc.mkdir()
    write_image_rgb(doc / "aloeL.jpg", sample["left"])
    write_image_rgb(doc / "aloeR.jpg", sample["right"])
    gt8 = np.clip(np.rint(sample["disparity"]), 0, 255).astype(np.uint8)
    gt8[:, :3] = 0
    cv2.imwrite(str(doc / "aloeGT.png"), gt8)
    sk = tmp_path / "site" / "skimage" / "data"
    sk.mkdir(parents=True)
    write_image_rgb(sk / "motorcycle_left.png", sample["left"])
    write_image_rgb(sk / "motorcycle_right.png", sample["right"])
    disp = sample["disparity"].copy()
    disp[:2] = np.inf
    np.savez(sk / "motorcycle_disp.npz", disp)
    return sample, doc, tmp_path / "site"


def test_prepare_real_pairs_writes_middlebury_layout(tmp_path):
    sample, doc, site = _fake_sources(tmp_path)
    out = tmp_path / "real"
    out.mkdir()
    manifest = prepare_real_pairs(str(out), str(doc), str(site))
    assert [p["name"] for p in manifest["pairs"]] == ["aloe", "motorcycle"]
    assert len(manifest["pairs"][0]["files"]["im0.png"]) == 64  # sha256 hex
    gt = read_pfm(out / "aloe" / "disp0GT.pfm")
    assert np.isinf(gt[:, :3]).all() and np.isfinite(gt[:, 3:]).all()
    left, _, disp = load_motorcycle(str(site))
    assert np.isinf(disp[:2]).all() and left.shape == (48, 96, 3)
    refs = list_dataset("middlebury2014", str(out), "all")
    assert [r.name for r in refs] == ["aloe", "motorcycle"]
    assert json.loads((out / "manifest.json").read_text())["missing"] == {}
    with pytest.raises(FileNotFoundError, match="no real stereo pair"):
        prepare_real_pairs(str(tmp_path / "real2"), str(tmp_path / "none"),
                           str(tmp_path / "none"))


def test_eval_compares_with_sgbm_raw_and_filled_and_draws_a_figure(tmp_path, capsys):
    _, doc, site = _fake_sources(tmp_path)
    out = tmp_path / "real"
    assert main(["real-pairs", "--out", str(out), "--opencv-doc", str(doc),
                 "--skimage", str(site)]) == 0
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, build_model("dtpnet", **tiny_dtpnet_config(32, c2d=(8, 8))))
    report_path, fig = tmp_path / "r.json", tmp_path / "fig.png"
    rc = main(["eval", "--dataset", "middlebury2014", "--root", str(out), "--split", "all",
               "--checkpoint", str(ckpt), "--also", f"other={ckpt}", "--with-sgbm",
               "--scale", "0.5", "--figure", str(fig), "--output", str(report_path),
               "--threads", "1", "--warmup", "0"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert set(report["comparison"]) == {"other", "sgbm_raw", "sgbm_filled"}
    assert report["per_image"][0]["size"] == [48, 24]
    assert report["comparison"]["other"]["metrics"]["epe"] == pytest.approx(
        report["metrics"]["epe"])
    raw, filled = (report["comparison"][k]["metrics"] for k in ("sgbm_raw", "sgbm_filled"))
    assert math.isfinite(raw["epe"]) and raw["bad_2"] >= filled["bad_2"] - 1e-9
    img = cv2.imread(str(fig))
    assert img.shape == (2 * 24, 5 * 48, 3)  # 2 pairs x (left, GT, model, other, SGBM)
    assert main(["eval", "--dataset", "middlebury2014", "--root", str(out), "--split", "all",
                 "--checkpoint", str(ckpt), "--also", "broken"]) != 0
    assert "LABEL=CHECKPOINT" in capsys.readouterr().err


def test_edge_refine_starts_as_identity_and_exports(tmp_path):
    from dtp_stereo.export import check_onnx_against_torch, export_onnx
    from dtp_stereo.models.dtpnet import config_from_module

    torch.manual_seed(0)
    plain = build_model("dtpnet", **tiny_dtpnet_config(32, head="fast")).eval()
    grown = build_model("dtpnet", **tiny_dtpnet_config(32, head="fast", refine=(8, 8))).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("refine.") for k in missing)
    left, right = torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        a, b = plain(left, right), grown(left, right)
    assert b.disparity.shape == a.disparity.shape == (1, 32, 64)
    # x2 then x2 bilinear instead of one x4: equal to within a tiny interpolation difference
    assert float((a.disparity - b.disparity).abs().max()) < 1e-3
    assert config_from_module(grown).refine == (8, 8)
    with pytest.raises(ValueError, match="refine"):
        build_model("dtpnet", **tiny_dtpnet_config(32, head="full", refine=(8,)))
    onnx = export_onnx(grown, str(tmp_path / "m.onnx"), 32, 64)
    assert check_onnx_against_torch(grown, onnx, 32, 64) < 1e-3


def test_convex_upsample_starts_as_bilinear_and_exports(tmp_path):
    import torch.nn.functional as F

    from dtp_stereo.export import check_onnx_against_torch, export_onnx
    from dtp_stereo.models.dtpnet import ConvexUpsample, bilinear_mask_logits, config_from_module

    # the initial mask is bilinear x4 (align_corners=False) to within the floor: the softmax
    # weights are (w + floor) / (1 + 9 floor), so the gap is at most 9 floor x the 3x3 spread
    weights = torch.softmax(bilinear_mask_logits(4, floor=1e-3).view(9, 16), dim=0)
    assert torch.allclose(weights.sum(0), torch.ones(16))
    up = ConvexUpsample(8, (4,)).eval()
    disp_q = torch.rand(2, 6, 10) * 50.0
    with torch.no_grad():
        out = up(disp_q, torch.rand(2, 8, 6, 10))
    ref = F.interpolate(disp_q[:, None], scale_factor=4.0, mode="bilinear",
                        align_corners=False)[:, 0]
    assert out.shape == (2, 24, 40)
    assert float((out - ref).abs().max()) < 9e-3 * 50.0
    flat = torch.full((1, 6, 10), 7.0)  # a convex mix of equal values is that value
    with torch.no_grad():
        up.mask.weight.normal_(0.0, 1.0)
        assert torch.allclose(up(flat, torch.rand(1, 8, 6, 10)), torch.full((1, 24, 40), 7.0))
        wild = up(disp_q, torch.rand(2, 8, 6, 10))  # never outside its neighbours' range
    assert float(wild.min()) >= float(disp_q.min()) - 1e-4
    assert float(wild.max()) <= float(disp_q.max()) + 1e-4

    torch.manual_seed(0)
    plain = build_model("dtpnet", **tiny_dtpnet_config(32, head="fast")).eval()
    grown = build_model("dtpnet", **tiny_dtpnet_config(32, head="fast", upsample=(8,))).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("upsample.") for k in missing)
    left, right = torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        a, b = plain(left, right), grown(left, right)
    assert b.disparity.shape == a.disparity.shape == (1, 32, 64)
    spread = float(a.disparity.max() - a.disparity.min())
    assert float((a.disparity - b.disparity).abs().max()) <= 9e-3 * spread + 1e-4
    assert config_from_module(grown).upsample == (8,)
    for bad in ({"head": "full"}, {"head": "fast", "refine": (8,)}):
        with pytest.raises(ValueError, match="upsample"):
            build_model("dtpnet", **tiny_dtpnet_config(32, upsample=(8,), **bad))
    onnx = export_onnx(grown, str(tmp_path / "m.onnx"), 32, 64)
    assert check_onnx_against_torch(grown, onnx, 32, 64) < 1e-3


def test_convex_upsample_offset_starts_at_zero_corrects_per_pixel_and_exports(tmp_path):
    """``upsample_offset``: a zero-initialised 1×1 conv adds a correction (pixels) to each
    full-resolution pixel's convex mix; grown onto a trained model it changes nothing, it can
    leave the neighbours' range (which the plain convex mix never does), the sum is clipped at
    0, and the config round-trips and exports."""
    from dtp_stereo.export import check_onnx_against_torch, export_onnx
    from dtp_stereo.models.dtpnet import ConvexUpsample, config_from_module

    torch.manual_seed(0)
    up = ConvexUpsample(8, (4,), offset=True).eval()
    assert up.offset.out_channels == 16
    flat = torch.full((1, 6, 10), 7.0)
    context = torch.rand(1, 8, 6, 10)
    with torch.no_grad():
        assert torch.allclose(up(flat, context), torch.full((1, 24, 40), 7.0))
        up.offset.bias.copy_(torch.arange(16, dtype=torch.float32) - 8.0)  # -8..7 px
        out = up(flat, context)
    # sub-pixel (sy, sx) of each quarter-resolution pixel gets bias[4 sy + sx]
    expect = (7.0 + torch.arange(16, dtype=torch.float32) - 8.0).clamp(min=0.0).view(4, 4)
    assert torch.allclose(out[0, :4, :4], expect) and torch.allclose(out[0, 4:8, 36:40], expect)
    assert float(out.min()) == 0.0 and abs(float(out.max()) - 14.0) < 1e-4

    plain = build_model("dtpnet", **tiny_dtpnet_config(32, head="fast", upsample=(8,))).eval()
    grown = build_model("dtpnet", **tiny_dtpnet_config(32, head="fast", upsample=(8,),
                                                       upsample_offset=True)).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["upsample.offset.bias", "upsample.offset.weight"]
    left, right = torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(plain(left, right).disparity, grown(left, right).disparity)
        grown.upsample.offset.weight.normal_(0.0, 0.5)
    assert config_from_module(grown).upsample_offset is True
    assert grown.upsample.offset in grown.prune_ignored_layers()
    for bad in ({"upsample": ()}, {"upsample_offset": 1}):
        with pytest.raises(ValueError, match="upsample_offset"):
            build_model("dtpnet", **{**tiny_dtpnet_config(32, head="fast", upsample=(8,),
                                                          upsample_offset=True), **bad})
    onnx = export_onnx(grown, str(tmp_path / "m.onnx"), 32, 64)
    assert check_onnx_against_torch(grown, onnx, 32, 64) < 1e-3


def test_distill_stage_grows_a_checkpoint_with_extend(tmp_path):
    from training.config import load_config
    from training.stages import load_extended, stage_distill

    torch.manual_seed(0)
    cfg_model = tiny_dtpnet_config(16, head="fast", correlation=4)
    ckpt = tmp_path / "s1.pt"
    save_checkpoint(ckpt, build_model("dtpnet", **cfg_model))
    grown, name = load_extended(ckpt, {}, {"refine": [8]})
    assert name == "dtpnet" and grown.refine is not None
    with pytest.raises(Exception, match="only add"):
        load_extended(ckpt, {}, {"stem": [4, 4, 4]})
    # fewer logit planes: the two logit convs keep the checkpoint's rows nearest each new
    # plane's disparity (16 planes of 1 px -> 4 planes of 5 px: rows 0, 5, 10, 15)
    coarse, _ = load_extended(ckpt, {}, {"disparity_planes": 4})
    fine = torch.load(ckpt, weights_only=True)["state_dict"]
    for key in ("classifier.2.weight", "corr_logits.weight"):
        assert torch.equal(coarse.state_dict()[key], fine[key][[0, 5, 10, 15]])
    assert torch.equal(coarse.state_dict()["c2d.0.0.weight"], fine["c2d.0.0.weight"])
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"""
run_dir: {tmp_path / 'run'}
progress: false
tensorboard: false
data:
  train: {{name: synthetic, split: train, fresh: true, height: 32, width: 64, max_disparity: 16,
          augment: {{crop_size: [32, 64], swap_flip_prob: 0.5, noise_prob: 0.5}}}}
student_model:
  name: dtpnet
  checkpoint: {ckpt}
  extend: {{refine: [8]}}
distill:
  optim: {{batch_size: 2, steps: 2}}
  loss: {{supervision: gt, points: []}}
""")
    summary = stage_distill(load_config(cfg_file))
    assert summary["finished"]
    from dtp_stereo.checkpoint import load_model
    model, meta = load_model(tmp_path / "run" / "distill" / "last.pt")
    assert tuple(meta.model_config["refine"]) == (8,) and model.refine is not None


def test_student_config_ignored_by_a_checkpoint_start_is_warned_about(tmp_path, caplog):
    """A student that starts from a checkpoint is built from the checkpoint's config: entries of
    student_model.config that differ are ignored, and the run says so (a claims row once
    trained the checkpoint silently instead of a fresh student with its config)."""
    import logging

    from dtp_stereo.checkpoint import save_checkpoint
    from dtp_stereo.models import build_model
    from dtp_test_utils import tiny_dtpnet_config
    from training.stages import warn_ignored_config

    cfg = tiny_dtpnet_config(16, head="fast", correlation=4)
    ckpt = save_checkpoint(tmp_path / "s.pt", build_model("dtpnet", **cfg))
    same = {**cfg, "stem": list(cfg["stem"])}  # YAML lists equal checkpoint tuples
    with caplog.at_level(logging.WARNING, logger="training.stages"):
        assert warn_ignored_config(ckpt, same, {}, {}) == []
        assert not caplog.records
        assert warn_ignored_config(ckpt, {**cfg, "correlation_norm": True, "correlation": 8},
                                   {"correlation": 8}, {}) == ["correlation_norm"]
    assert "correlation_norm" in caplog.text and "null" in caplog.text
