"""Training data: augmentation (crop, colour jitter) and torch datasets / build_dataset."""

import numpy as np
import pytest
import torch

from dtp_stereo.data import formats
from dtp_stereo.data.synthetic import SyntheticStereo
from training.data.augment import AugmentConfig, StereoAugment, color_jitter, random_crop
from training.data.datasets import StereoDataset, build_dataset, holdout_split

torch.set_num_threads(1)


def _sample(h=20, w=30):
    """Images that encode their own coordinates, so a crop's window can be read back."""
    yy, xx = np.mgrid[0:h, 0:w]
    left = np.stack([yy, xx, np.full_like(yy, 7)], axis=2).astype(np.uint8)
    right = np.stack([yy, xx, np.full_like(yy, 9)], axis=2).astype(np.uint8)
    disp = (xx * 0.5 + yy).astype(np.float32)
    valid = (xx + yy) % 3 != 0
    return {"left": left, "right": right, "disparity": disp, "valid": valid,
            "valid_noc": valid & (xx > 2), "meta": {"name": "t"}}


def test_random_crop_same_window():
    s = _sample()
    out = random_crop(s, (8, 12), np.random.default_rng(0))
    y0, x0, ch, cw = out["meta"]["crop"]
    assert (ch, cw) == (8, 12)
    for key in ("left", "right", "disparity", "valid", "valid_noc"):
        assert out[key].shape[:2] == (8, 12)
        np.testing.assert_array_equal(out[key], s[key][y0:y0 + 8, x0:x0 + 12])
    # left and right come from the same rows/columns (no vertical shift by default)
    np.testing.assert_array_equal(out["left"][:, :, :2], out["right"][:, :, :2])


def test_random_crop_deterministic_and_varied():
    s = _sample()
    a = random_crop(s, (8, 12), np.random.default_rng(5))["meta"]["crop"]
    b = random_crop(s, (8, 12), np.random.default_rng(5))["meta"]["crop"]
    g = torch.Generator().manual_seed(3)
    c = random_crop(s, (8, 12), g)["meta"]["crop"]
    d = random_crop(s, (8, 12), torch.Generator().manual_seed(3))["meta"]["crop"]
    assert a == b and c == d
    windows = {random_crop(s, (8, 12), np.random.default_rng(i))["meta"]["crop"]
               for i in range(20)}
    assert len(windows) > 5


def test_random_crop_pads_small_images_as_invalid():
    s = _sample(6, 10)
    out = random_crop(s, (8, 12), np.random.default_rng(0))
    assert out["left"].shape == (8, 12, 3)
    assert not out["valid"][6:].any() and not out["valid"][:, 10:].any()
    np.testing.assert_array_equal(out["valid"][:6, :10], s["valid"])


def test_vertical_shift_moves_right_rows_only():
    s = _sample(30, 30)
    shifts = set()
    for i in range(30):
        out = random_crop(s, (10, 10), np.random.default_rng(i), max_vertical_shift=2)
        dy = int(out["right"][0, 0, 0]) - int(out["left"][0, 0, 0])
        assert abs(dy) <= 2
        np.testing.assert_array_equal(out["left"][:, :, 1], out["right"][:, :, 1])  # same cols
        shifts.add(dy)
    assert len(shifts) > 1


def test_color_jitter_symmetric_and_asymmetric():
    rng = np.random.default_rng(0)
    img = rng.integers(30, 220, (16, 16, 3)).astype(np.uint8)
    s = {"left": img, "right": img.copy(), "disparity": np.zeros((16, 16), np.float32),
         "valid": np.ones((16, 16), bool)}
    sym = color_jitter(s, AugmentConfig(asymmetric_prob=0.0), np.random.default_rng(1))
    np.testing.assert_array_equal(sym["left"], sym["right"])
    assert not np.array_equal(sym["left"], img)
    asym = color_jitter(s, AugmentConfig(asymmetric_prob=1.0), np.random.default_rng(1))
    assert not np.array_equal(asym["left"], asym["right"])
    assert asym["left"].dtype == np.uint8
    off = color_jitter(s, AugmentConfig(color_prob=0.0), np.random.default_rng(1))
    np.testing.assert_array_equal(off["left"], img)
    np.testing.assert_array_equal(sym["disparity"], s["disparity"])


def test_stereo_augment_from_dict():
    aug = StereoAugment({"crop_size": [8, 12], "asymmetric_prob": 0.5})
    out1 = aug(_sample(), np.random.default_rng(4))
    out2 = aug(_sample(), np.random.default_rng(4))
    assert out1["left"].shape == (8, 12, 3)
    np.testing.assert_array_equal(out1["left"], out2["left"])
    with pytest.raises(ValueError, match="crop"):
        StereoAugment({"crop": [8, 8]})


def test_stereo_dataset_synthetic_tensors():
    ds = StereoDataset(SyntheticStereo(32, 64, seed=0, length=3))
    item = ds[1]
    assert len(ds) == 3
    assert item["left"].shape == (3, 32, 64) and item["left"].dtype == torch.float32
    assert 0.0 <= float(item["left"].min()) and float(item["right"].max()) <= 1.0
    assert item["disparity"].shape == (32, 64) and item["valid"].dtype == torch.bool
    assert item["valid_noc"].dtype == torch.bool and not item["valid_noc"].all()
    raw = ds.raw_sample(1)
    np.testing.assert_allclose(item["left"].permute(1, 2, 0).numpy() * 255.0, raw["left"],
                               atol=1e-3)
    batch = torch.utils.data.default_collate([ds[0], ds[2]])
    assert batch["left"].shape == (2, 3, 32, 64)


def test_dataset_augmentation_seeding():
    gen = SyntheticStereo(32, 64, seed=0, length=2)
    aug = StereoAugment({"crop_size": [16, 32]})
    fixed = StereoDataset(gen, aug, seed=3)
    np.testing.assert_array_equal(fixed[0]["left"].numpy(), fixed[0]["left"].numpy())
    free = StereoDataset(gen, aug, seed=None)
    torch.manual_seed(9)
    a = free[0]["left"]
    torch.manual_seed(9)
    b = free[0]["left"]
    assert torch.equal(a, b) and a.shape == (3, 16, 32)


def test_build_dataset_synthetic_splits():
    spec = {"name": "synthetic", "size": 2, "height": 32, "width": 64, "max_disparity": 32}
    train = build_dataset(dict(spec, split="train"))
    val = build_dataset(dict(spec, split="val"))
    test = build_dataset(dict(spec, split="test"))
    assert len(train) == len(val) == 2
    lefts = [d[0]["left"] for d in (train, val, test)]
    assert not torch.equal(lefts[0], lefts[1]) and not torch.equal(lefts[1], lefts[2])
    assert torch.equal(build_dataset(dict(spec, split="val"))[0]["left"], lefts[1])
    assert float(train[0]["disparity"].max()) < 32
    assert len(build_dataset({"name": "synthetic", "split": "train"})) == 1000
    crop = build_dataset(dict(spec, augment={"crop_size": [16, 32]}, augment_seed=0))
    assert crop[0]["left"].shape == (3, 16, 32)
    with pytest.raises(ValueError, match="unknown keys"):
        build_dataset(dict(spec, colour=1))


def test_build_dataset_kitti_holdout(tmp_path):
    base = tmp_path / "training"
    for sub in ("image_2", "image_3", "disp_occ_0"):
        (base / sub).mkdir(parents=True)
    for i in range(10):
        img = np.full((8, 16, 3), i, np.uint8)
        formats.write_image_rgb(base / "image_2" / f"{i:06d}_10.png", img)
        formats.write_image_rgb(base / "image_3" / f"{i:06d}_10.png", img)
        formats.write_disparity_png16(base / "disp_occ_0" / f"{i:06d}_10.png",
                                      np.full((8, 16), 2.5 + i))
    spec = {"name": "kitti2015", "root": str(tmp_path), "val_fraction": 0.3}
    train = build_dataset(dict(spec, split="train"))
    val = build_dataset(dict(spec, split="val"))
    names_t = {train[i]["name"] for i in range(len(train))}
    names_v = {val[i]["name"] for i in range(len(val))}
    assert len(names_v) == 3 and len(names_t) == 7 and not names_t & names_v
    assert names_v == {build_dataset(dict(spec, split="val"))[i]["name"] for i in range(3)}
    item = val[0]
    assert float(item["disparity"][0, 0]) == 2.5 + int(item["name"][:6])
    assert bool(item["valid"].all()) and torch.equal(item["valid_noc"], item["valid"])
    assert len(build_dataset({"name": "kitti2015", "root": str(tmp_path), "size": 4})) == 4
    with pytest.raises(ValueError, match="val_fraction"):
        build_dataset({"name": "kitti2015", "root": str(tmp_path), "split": "val"})
    with pytest.raises(ValueError):
        holdout_split([], "val", 1.5)
