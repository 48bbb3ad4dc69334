"""Photo texture bank and the photo stereo generators (photo_layers, single_image).

Everything runs on a tiny bank built from images the tests write, so no Debian photo package is
needed.
"""

import hashlib
import json
import pickle

import cv2
import numpy as np
import pytest
import torch

from dtp_stereo.data.synthetic import SyntheticStereo
from training.data.datasets import FRESH_LENGTH, StereoDataset, build_dataset
from training.data.forward_warp import fill_background, non_occluded, splat_disparity
from training.data.photo_stereo import PhotoLayeredStereo, SingleImageStereo
from training.data.segments import segment_photo
from training.data.textures import (TextureBank, build_texture_bank, hamming, list_candidates,
                                    perceptual_hash)

GENERATORS = (PhotoLayeredStereo, SingleImageStereo)
CLEAN = {"noise_std": 0.0, "gain_jitter": 0.0, "bias_jitter": 0.0}


def _photo(seed: int, h: int = 300, w: int = 400) -> np.ndarray:
    """A textured stand-in photo, H×W×3 uint8 RGB: smooth colour field, shapes, fine detail."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.uniform(30, 220, (4, 5, 3)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    img = coarse + cv2.GaussianBlur(rng.normal(0, 40, (h, w, 3)).astype(np.float32), (0, 0), 1.2)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, (w, h)))
        cv2.circle(img, (x, y), int(rng.integers(15, 60)), tuple(rng.uniform(0, 255, 3).tolist()),
                   -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write(path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory):
    """A bank from 4 photos + a larger duplicate + evaluation/calibration files to exclude."""
    root = tmp_path_factory.mktemp("tex")
    user, ocv = root / "user", root / "opencv"
    photos = [_photo(i) for i in range(4)]
    for i, img in enumerate(photos):
        _write(user / f"photo{i}.jpg", img)
    _write(user / "sub" / "photo0_big.jpg", cv2.resize(photos[0], (600, 450)))
    _write(user / "tiny.jpg", _photo(9, 100, 120))
    _write(user / "aloeL.jpg", _photo(10))
    _write(ocv / "left01.jpg", _photo(11))
    _write(ocv / "right01.jpg", _photo(12))
    _write(ocv / "LinuxLogo.jpg", _photo(13))
    _write(ocv / "fruits.jpg", _photo(14))
    (ocv / "stereo_calib.xml").write_text("<opencv_storage/>")
    out = root / "bank"
    manifest = build_texture_bank(out, [user], default_sources=[(ocv, "opencv-doc")],
                                  max_side=512)
    return {"root": root, "user": user, "ocv": ocv, "out": out, "manifest": manifest}


@pytest.fixture(scope="module")
def bank(bank_dir):
    return TextureBank(bank_dir["out"])


# ------------------------------------------------------------------------------ bank
def test_listing_excludes_evaluation_and_non_photos(bank_dir):
    candidates, excluded = list_candidates([(bank_dir["ocv"], "opencv-doc")])
    assert sorted(p.name for p, _ in candidates) == ["fruits.jpg"]
    reasons = {p.name: why for p, why in excluded}
    for name in ("left01.jpg", "right01.jpg", "stereo_calib.xml"):
        assert name in reasons
    assert "evaluation" in reasons["left01.jpg"] and "photograph" in reasons["LinuxLogo.jpg"]
    # the stereo-name exclusions hold for user folders too; logos only for opencv-doc
    user, _ = list_candidates([(bank_dir["user"], "user")])
    assert "aloeL.jpg" not in {p.name for p, _ in user}


def test_wallpaper_keeps_largest_variant(tmp_path):
    images = tmp_path / "Foo" / "contents" / "images"
    img = _photo(3)
    for size in ("640x480", "1600x1200", "800x600"):
        _write(images / f"{size}.jpg", img)
    _write(tmp_path / "Foo" / "contents" / "screenshot.jpg", img)
    candidates, excluded = list_candidates([(tmp_path, "wallpapers")])
    assert [p.name for p, _ in candidates] == ["1600x1200.jpg"]
    assert sum(why == "smaller resolution variant" for _, why in excluded) == 2


def test_build_bank_dedupes_and_writes_manifest(bank_dir):
    manifest = bank_dir["manifest"]
    on_disk = json.loads((bank_dir["out"] / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    counts = manifest["counts"]
    assert counts["kept"] == 5 and counts["duplicates"] == 1 and counts["too_small"] == 1
    photos = {p["source"].split("/")[-1]: p for p in manifest["photos"]}
    assert sorted(photos) == ["fruits.jpg", "photo0_big.jpg", "photo1.jpg", "photo2.jpg",
                              "photo3.jpg"]  # the larger copy of photo0 won
    assert photos["photo0_big.jpg"]["duplicates"][0].endswith("photo0.jpg")
    for entry in manifest["photos"]:
        src = entry["source"]
        digest = hashlib.sha256(open(src, "rb").read()).hexdigest()
        assert entry["sha256"] == digest and entry["file"] == f"{digest[:16]}.jpg"
        assert entry["package"] is None and entry["licence"] == "unknown"
        assert len(entry["phash"]) == 16 and int(entry["phash"], 16) >= 0
        kept = cv2.imread(str(bank_dir["out"] / entry["file"]))
        assert list(kept.shape[1::-1]) == entry["size"] and max(entry["size"]) <= 512
    assert photos["photo0_big.jpg"]["size"] == [512, 384]
    assert photos["photo0_big.jpg"]["source_size"] == [600, 450]
    skipped = {s["source"].split("/")[-1] for s in manifest["skipped"]}
    assert {"aloeL.jpg", "left01.jpg", "LinuxLogo.jpg", "tiny.jpg"} <= skipped


def test_perceptual_hash_near_duplicates():
    a = _photo(0)
    again = cv2.imdecode(cv2.imencode(".jpg", cv2.resize(a, (533, 400)),
                                      [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)
    assert hamming(perceptual_hash(a), perceptual_hash(again)) <= 6
    assert hamming(perceptual_hash(a), perceptual_hash(_photo(1))) > 6


def test_texture_bank_patches(bank, tmp_path):
    assert len(bank) == 5
    p = bank.random_patch(np.random.default_rng(0), 50, 70)
    assert p.shape == (50, 70, 3) and p.dtype == np.float32
    assert p.min() >= 0 and p.max() <= 255 and p.std() > 5
    np.testing.assert_array_equal(p, bank.random_patch(np.random.default_rng(0), 50, 70))
    assert not np.array_equal(p, bank.random_patch(np.random.default_rng(1), 50, 70))
    big = bank.random_patch(np.random.default_rng(2), 600, 900, index=3)  # larger than photos
    assert big.shape == (600, 900, 3)
    rng = np.random.default_rng(3)
    assert all(bank.random_index(rng, exclude=2) != 2 for _ in range(20))
    clone = pickle.loads(pickle.dumps(bank))
    assert all(img is None for img in clone._images) and len(clone) == 5
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        TextureBank(tmp_path)


def test_cli_textures(bank_dir, tmp_path, capsys):
    from training.cli import main

    out = tmp_path / "cli_bank"
    assert main(["textures", "--from", str(bank_dir["user"]), "--no-defaults",
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["kept"] == 4 and printed["duplicates"] == 1
    assert len(TextureBank(out)) == 4


# ------------------------------------------------------------------------ building blocks
def test_segments_follow_colour_edges():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 128, 3), np.float32)
    img[:, :70] = (200, 40, 40)
    img[:, 70:] = (30, 60, 210)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    labels, count = segment_photo(img, rng, num_superpixels=60, max_regions=6)
    assert labels.shape == (64, 128) and 2 <= count <= 6
    side = np.arange(128)[None, :].repeat(64, 0) >= 70
    for r in range(count):  # every region lies on one side of the edge, up to 1 px
        mine = labels == r
        wrong = mine & (side != (side[mine].mean() > 0.5))
        assert not wrong[:, :69].any() and not wrong[:, 71:].any()


def test_splat_plane_and_step():
    d = np.full((4, 40), 3.5, np.float32)
    right, hole = splat_disparity(d, 32)
    assert not hole.any() and np.allclose(right, 3.5)
    slanted = (10.0 - 0.2 * np.arange(40, dtype=np.float32))[None].repeat(4, 0)
    right, hole = splat_disparity(slanted, 32)  # a stretched plane: no holes, exact disparity
    expected = (10.0 - 0.2 * np.arange(32))[None] / 1.2  # d_r = 10 − 0.2 (x_r + d_r)
    assert not hole.any() and np.allclose(right, expected, atol=1e-4)
    step = np.full((4, 40), 2.0, np.float32)
    step[:, 10:20] = 8.0  # foreground block: 6 px disocclusion right of it
    right, hole = splat_disparity(step, 32)
    assert hole.sum(axis=1).tolist() == [6] * 4 and hole[:, 12:18].all()
    filled = fill_background(right, hole)
    assert np.allclose(filled[hole], 2.0)
    noc = non_occluded(step[:, :32], right, hole)
    assert not noc[:, :2].any() and not noc[:, 4:10].any()  # out of view; behind the block
    assert noc[:, 10:19].all() and noc[:, 20:].all()


# ----------------------------------------------------------------------------- generators
def _warp(img: np.ndarray, disp: np.ndarray, sign: float) -> np.ndarray:
    """Sample ``img`` at (y, x + sign·disp) with linear interpolation (float32)."""
    h, w = disp.shape
    mx = (np.arange(w, dtype=np.float32)[None, :] + np.float32(sign) * disp).astype(np.float32)
    my = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    return cv2.remap(img.astype(np.float32), mx, my, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("cls", GENERATORS)
def test_generator_interface_and_determinism(cls, bank):
    gen = cls(64, 128, 48, seed=3, length=4, textures=bank)
    ref_keys = set(SyntheticStereo(64, 128, 48, seed=0).sample(0))
    assert len(gen) == 4
    for i in range(3):
        s = gen[i]
        assert set(s) == ref_keys
        assert s["left"].shape == s["right"].shape == (64, 128, 3)
        assert s["left"].dtype == s["right"].dtype == np.uint8
        for key in ("disparity", "disparity_right"):
            assert s[key].shape == (64, 128) and s[key].dtype == np.float32
            assert np.isfinite(s[key]).all() and s[key].max() <= gen.disparity_cap <= 32
        assert s["disparity"].min() > 0 and s["disparity_right"].min() >= 0
        assert s["valid"].dtype == bool and s["valid"].all()
        assert s["valid_noc"].dtype == bool and 0.4 < s["valid_noc"].mean() < 1.0
        assert s["meta"]["index"] == i and s["left"].std() > 10
    again = cls(64, 128, 48, seed=3, length=4, textures=bank).sample(1)
    first = gen.sample(1)
    for key in ("left", "right", "disparity", "disparity_right", "valid_noc"):
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["disparity"], gen.sample(2)["disparity"])
    assert not np.array_equal(first["left"], cls(64, 128, 48, seed=4, textures=bank)
                              .sample(1)["left"])
    with pytest.raises(IndexError):
        gen[4]


@pytest.mark.parametrize("cls", GENERATORS)
def test_generator_geometry(cls, bank):
    """right(x − d) == left(x) on valid_noc; right x shows left x + disparity_right."""
    extra = {"right_blur_prob": 0.0} if cls is SingleImageStereo else {}
    gen = cls(64, 128, 48, seed=5, textures=bank, **CLEAN, **extra)
    for i in range(3):
        s = gen.sample(i)
        left, right = s["left"].astype(np.float32), s["right"].astype(np.float32)
        d, d_r, noc = s["disparity"], s["disparity_right"], s["valid_noc"]
        err = np.abs(_warp(right, d, -1.0) - left).mean(axis=2)
        err_off = np.abs(_warp(right, d + 3.0, -1.0) - left).mean(axis=2)
        assert np.median(err[noc]) < 4.0
        assert np.median(err[noc]) < 0.5 * np.median(err_off[noc])
        x = np.arange(128)[None, :]
        assert not noc[x - d < 0].any()
        # right -> left: where the left view agrees on the disparity, colours agree too
        back = _warp(np.repeat(d[:, :, None], 3, axis=2), d_r, 1.0)[:, :, 0]
        seen = (np.abs(back - d_r) < 1.0) & (x + d_r <= 127)
        assert seen.mean() > 0.6
        err_r = np.abs(_warp(left, d_r, 1.0) - right).mean(axis=2)
        assert np.median(err_r[seen]) < 4.0


def test_photo_layers_uses_photos(bank):
    photo = PhotoLayeredStereo(64, 128, 48, seed=1, textures=bank, photo_prob=1.0).sample(0)
    proc = PhotoLayeredStereo(64, 128, 48, seed=1, textures=bank, photo_prob=0.0).sample(0)
    plain = SyntheticStereo(64, 128, 48, seed=1).sample(0)
    assert not np.array_equal(photo["left"], plain["left"])
    assert photo["meta"]["dataset"] == "photo_layers"
    # photo_prob=0: procedural textures, but the extra draw per surface changes the scene
    assert proc["left"].shape == (64, 128, 3) and not np.array_equal(proc["left"], photo["left"])
    with pytest.raises(ValueError, match="photo_prob"):
        PhotoLayeredStereo(64, 128, 48, textures=bank, photo_prob=1.5)


@pytest.mark.parametrize("name", ["photo_layers", "single_image"])
def test_build_dataset_generators(name, bank_dir):
    spec = {"name": name, "textures": str(bank_dir["out"]), "height": 32, "width": 64,
            "max_disparity": 24}
    fresh = build_dataset({**spec, "fresh": True})
    assert fresh.fresh and len(fresh) == FRESH_LENGTH
    item = fresh[5]
    assert item["left"].shape == (3, 32, 64) and item["disparity"].shape == (32, 64)
    assert item["valid_noc"].dtype == torch.bool and item["name"].startswith(name)
    val = build_dataset({**spec, "split": "val", "size": 3})
    assert len(val) == 3 and not val.fresh
    assert not torch.equal(fresh[0]["left"], val[0]["left"])  # split seeds differ
    if name == "single_image":
        with pytest.raises(ValueError, match="photo_prob"):
            build_dataset({**spec, "photo_prob": 0.5})
    with pytest.raises(ValueError, match="textures"):
        build_dataset({"name": "synthetic", "textures": "x"})


def test_mix_draws_each_index_from_one_source_by_weight(bank_dir):
    """A mix keeps the plain stream's scenes where it picks the procedural source."""
    spec = {"name": "mix", "fresh": True, "seed": 3, "height": 32, "width": 64,
            "max_disparity": 24, "synthetic": {"max_disparity_fraction": 0.3},
            "textures": str(bank_dir["out"]),
            "sources": [{"name": "synthetic", "weight": 0.7},
                        {"name": "single_image", "weight": 0.3}]}
    mix = build_dataset(spec)
    assert mix.fresh and len(mix) == FRESH_LENGTH
    gen = mix.generator
    picks = np.array([gen.source_of(i) for i in range(2000)])
    assert 0.26 < picks.mean() < 0.34  # share of single_image
    assert picks.tolist() == [gen.source_of(i) for i in range(2000)]  # deterministic
    plain = build_dataset({k: v for k, v in spec.items() if k not in ("sources", "textures")}
                          | {"name": "synthetic"})
    single = build_dataset({**{k: v for k, v in spec.items() if k != "sources"},
                            "name": "single_image"})
    first = {k: int(np.argmax(picks == k)) for k in (0, 1)}
    assert torch.equal(mix[first[0]]["left"], plain[first[0]]["left"])
    assert torch.equal(mix[first[1]]["left"], single[first[1]]["left"])
    assert gen.sample(first[1])["meta"]["source"] == "SingleImageStereo"
    batch = torch.utils.data.default_collate([mix[i] for i in range(4)])
    assert batch["left"].shape == (4, 3, 32, 64)
    bad = [({"sources": []}, "non-empty"), ({"sources": [{"name": "synthetic"}]}, "weight"),
           ({"sources": [{"name": "kitti2015", "weight": 1}]}, "not one of"),
           ({"sources": [{"name": "synthetic", "weight": 0}]}, "> 0"),
           ({"sources": [{"name": "synthetic", "weight": 1, "root": "x"}]}, "unknown keys")]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            build_dataset({**spec, **change})
    with pytest.raises(ValueError, match="mix only"):
        build_dataset({"name": "synthetic", "sources": spec["sources"]})


def test_stereo_dataset_accepts_any_generator():
    class Gen:
        def __init__(self):
            self.inner = SyntheticStereo(32, 64, 24, seed=0, length=10)

        def __len__(self):
            return 10

        def sample(self, index):
            return self.inner.sample(index)

    ds = StereoDataset(Gen(), fresh=True)
    assert ds.fresh and len(ds) == 10 and ds[3]["left"].shape == (3, 32, 64)
    with pytest.raises(ValueError, match="fresh"):
        StereoDataset([], fresh=True)
