"""Dataset folder readers on tiny fake layouts written in tmp_path."""

import os

import numpy as np
import pytest

from dtp_stereo.data import formats
from dtp_stereo.data.readers import list_dataset, load_sample, parse_synthetic_spec

H, W = 6, 8


def _img(path, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (H, W, 3)).astype(np.uint8)
    formats.write_image_rgb(path, img)
    return img


def _pfm(path, seed, inf_at=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    d = np.random.default_rng(seed).uniform(0, 50, (H, W)).astype(np.float32)
    if inf_at is not None:
        d[inf_at] = np.inf
    formats.write_pfm(path, d, little_endian=seed % 2 == 0)
    return d


def _stereo_dir(base, rel, stem, seed):
    left = _img(os.path.join(base, "frames_cleanpass", rel, "left", stem + ".png"), seed)
    _img(os.path.join(base, "frames_cleanpass", rel, "right", stem + ".png"), seed + 1)
    disp = _pfm(os.path.join(base, "disparity", rel, "left", stem + ".pfm"), seed + 2)
    return left, disp


def test_flyingthings3d(tmp_path):
    root = str(tmp_path / "flyingthings3d")
    left, disp = _stereo_dir(root, "TRAIN/A/0000", "0006", 10)
    _stereo_dir(root, "TRAIN/B/0001", "0007", 20)
    _stereo_dir(root, "TEST/C/0002", "0008", 30)
    train = list_dataset("flyingthings3d", root, "train")
    test = list_dataset("FlyingThings3D", root, "test")
    assert len(train) == 2 and len(test) == 1
    s = load_sample(train[0])
    np.testing.assert_array_equal(s["left"], left)
    np.testing.assert_array_equal(s["disparity"], disp)
    assert s["valid"].all() and s["left"].dtype == np.uint8
    assert s["meta"]["dataset"] == "flyingthings3d" and "0006" in s["meta"]["name"]
    with pytest.raises(FileNotFoundError, match="frames_finalpass"):
        list_dataset("flyingthings3d", root, "train", render_pass="finalpass")


def test_sceneflow_combined_and_incomplete(tmp_path):
    root = tmp_path / "sf"
    _stereo_dir(str(root / "FlyingThings3D"), "TRAIN/A/0000", "0006", 1)
    _stereo_dir(str(root / "FlyingThings3D"), "TEST/A/0000", "0006", 2)
    _stereo_dir(str(root / "driving"), "15mm_focallength/scene_forwards/fast", "0001", 3)
    _stereo_dir(str(root / "driving"), "35mm_focallength/scene_backwards/slow", "0002", 4)
    _stereo_dir(str(root / "monkaa"), "a_rain_of_stones_x2", "0000", 5)
    train = list_dataset("sceneflow", str(root), "train")
    assert len(train) == 4 and {r.dataset for r in train} == {"sceneflow"}
    assert len({r.name for r in train}) == 4
    assert len(list_dataset("sceneflow", str(root), "test")) == 1
    assert len(list_dataset("driving", str(root / "driving"))) == 2
    assert len(list_dataset("monkaa", str(root / "monkaa"))) == 1
    with pytest.raises(ValueError, match="split"):
        list_dataset("monkaa", str(root / "monkaa"), "test")
    os.remove(root / "monkaa" / "disparity" / "a_rain_of_stones_x2" / "left" / "0000.pfm")
    with pytest.raises(FileNotFoundError, match="a_rain_of_stones_x2.*incomplete"):
        list_dataset("monkaa", str(root / "monkaa"))


def test_sceneflow_negative_and_nan_invalid(tmp_path):
    root = str(tmp_path / "monkaa")
    _stereo_dir(root, "scene", "0000", 7)
    path = os.path.join(root, "disparity", "scene", "left", "0000.pfm")
    d = formats.read_pfm(path)
    d[0, 0], d[1, 1] = -1.0, np.nan
    formats.write_pfm(path, d)
    s = load_sample(list_dataset("monkaa", root)[0])
    assert not s["valid"][0, 0] and not s["valid"][1, 1] and s["valid"].sum() == H * W - 2
    assert np.isfinite(s["disparity"]).all()


@pytest.mark.parametrize("name, dirs", [
    ("kitti2015", ("image_2", "image_3", "disp_occ_0", "disp_noc_0")),
    ("kitti2012", ("colored_0", "colored_1", "disp_occ", "disp_noc")),
])
def test_kitti(tmp_path, name, dirs):
    base = tmp_path / "training"
    raw = np.random.default_rng(0).integers(1, 30000, (H, W)).astype(np.uint16)
    raw[0, 0] = 0
    noc = raw.copy()
    noc[1, :] = 0
    for i in range(2):
        left = _img(str(base / dirs[0] / f"00000{i}_10.png"), i)
        _img(str(base / dirs[0] / f"00000{i}_11.png"), 9)  # no GT: skipped
        _img(str(base / dirs[1] / f"00000{i}_10.png"), i + 5)
        (base / dirs[2]).mkdir(parents=True, exist_ok=True)
        (base / dirs[3]).mkdir(parents=True, exist_ok=True)
        formats.write_disparity_png16(base / dirs[2] / f"00000{i}_10.png", raw / 256.0)
        formats.write_disparity_png16(base / dirs[3] / f"00000{i}_10.png", noc / 256.0)
    refs = list_dataset(name, str(tmp_path), "train")
    assert [r.name for r in refs] == ["000000_10", "000001_10"]
    s = load_sample(refs[1])
    np.testing.assert_array_equal(s["left"], left)
    np.testing.assert_array_equal(s["disparity"], raw / np.float32(256.0))
    np.testing.assert_array_equal(s["valid"], raw > 0)
    np.testing.assert_array_equal(s["valid_noc"], noc > 0)
    # test split without GT
    _img(str(tmp_path / "testing" / dirs[0] / "000000_10.png"), 1)
    _img(str(tmp_path / "testing" / dirs[1] / "000000_10.png"), 2)
    t = load_sample(list_dataset(name, str(tmp_path), "test")[0])
    assert not t["meta"]["has_gt"] and not t["valid"].any()
    os.remove(base / dirs[1] / "000001_10.png")
    with pytest.raises(FileNotFoundError, match=f"{dirs[1]}.*incomplete"):
        list_dataset(name, str(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_dataset(name, str(tmp_path / "nowhere"), "train")


CALIB = ("cam0=[100 0 4; 0 100 3; 0 0 1]\ncam1=[100 0 5; 0 100 3; 0 0 1]\ndoffs=1\n"
         "baseline=50.5\nwidth=8\nheight=6\nndisp=32\nisint=0\nvmin=1\nvmax=30\n"
         "dyavg=0\ndymax=0\n")


def test_middlebury2014(tmp_path):
    for scene in ("Adirondack", "Jadeplant"):
        for suffix in ("-perfect", "-imperfect"):
            d = tmp_path / (scene + suffix)
            _img(str(d / "im0.png"), 1)
            _img(str(d / "im1.png"), 2)
            _pfm(str(d / "disp0.pfm"), 4, inf_at=(2, 3))
            (d / "calib.txt").write_text(CALIB)
    mask = np.full((H, W), 255, np.uint8)
    mask[0, :] = 128
    formats.write_image_rgb(tmp_path / "Adirondack-perfect" / "mask0nocc.png", mask)
    refs = list_dataset("middlebury2014", str(tmp_path))
    assert [r.name for r in refs] == ["Adirondack-perfect", "Jadeplant-perfect"]
    assert len(list_dataset("middlebury2014", str(tmp_path), "all")) == 4
    s = load_sample(refs[0])
    assert not s["valid"][2, 3] and s["disparity"][2, 3] == 0 and s["valid"].sum() == H * W - 1
    assert not s["valid_noc"][0].any() and s["valid_noc"][1:].sum() == (H - 1) * W - 1
    assert s["meta"]["calib"]["baseline"] == pytest.approx(50.5)
    assert s["meta"]["calib"]["ndisp"] == 32
    os.remove(tmp_path / "Jadeplant-perfect" / "im1.png")
    with pytest.raises(FileNotFoundError, match="Jadeplant-perfect.*im1.png"):
        list_dataset("middlebury2014", str(tmp_path))


@pytest.mark.parametrize("gt_mode", ["inline", "gt_root", "sibling"])
def test_eth3d(tmp_path, gt_mode):
    root = tmp_path / "two_view_training"
    gt_base = {"inline": root, "gt_root": tmp_path / "gt",
               "sibling": tmp_path / "two_view_training_gt"}[gt_mode]
    _img(str(root / "delivery_area_1l" / "im0.png"), 1)
    _img(str(root / "delivery_area_1l" / "im1.png"), 2)
    disp = _pfm(str(gt_base / "delivery_area_1l" / "disp0GT.pfm"), 3, inf_at=(0, 0))
    formats.write_image_rgb(gt_base / "delivery_area_1l" / "mask0nocc.png",
                            np.full((H, W), 255, np.uint8))
    gt_root = str(gt_base) if gt_mode == "gt_root" else None
    refs = list_dataset("eth3d", str(root), gt_root=gt_root)
    s = load_sample(refs[0])
    assert s["meta"]["has_gt"] and s["meta"]["name"] == "delivery_area_1l"
    np.testing.assert_array_equal(s["disparity"][1:], disp[1:])
    assert not s["valid"][0, 0] and not s["valid_noc"][0, 0] and s["valid_noc"].sum() == H * W - 1


def test_synthetic_refs_and_errors():
    assert parse_synthetic_spec("synthetic:5:32x64:3") == (5, 32, 64, 3, 192)
    refs = list_dataset("synthetic:3:32x64:7:16", "", "train")
    assert len(refs) == 3
    s = load_sample(refs[2])
    assert s["left"].shape == (32, 64, 3) and s["disparity"].max() < 16
    val = list_dataset("synthetic", "synthetic:3:32x64:7:16", "val")
    assert not np.array_equal(load_sample(val[0])["left"], load_sample(refs[0])["left"])
    with pytest.raises(ValueError, match="unknown dataset"):
        list_dataset("kitti", "/tmp")
    with pytest.raises(ValueError, match="synthetic spec"):
        parse_synthetic_spec("synthetic:abc")
