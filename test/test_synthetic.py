"""Synthetic stereo generator: exact geometry, determinism, ranges, speed."""

import time

import cv2
import numpy as np
import pytest

from dtp_stereo.data.synthetic import SyntheticStereo, split_seed


def _warp_right_to_left(right: np.ndarray, disp: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Sample right at (y, x - d + offset) with linear interpolation."""
    h, w = disp.shape
    mx = (np.arange(w, dtype=np.float32)[None, :] - disp + np.float32(offset)).astype(np.float32)
    my = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    return cv2.remap(right.astype(np.float32), mx, my, cv2.INTER_LINEAR)


def test_keys_types_ranges():
    gen = SyntheticStereo(64, 128, max_disparity=48, seed=0, length=5)
    assert len(gen) == 5
    for i in range(5):
        s = gen[i]
        assert s["left"].shape == s["right"].shape == (64, 128, 3)
        assert s["left"].dtype == s["right"].dtype == np.uint8
        assert s["disparity"].shape == (64, 128) and s["disparity"].dtype == np.float32
        assert s["valid"].dtype == bool and s["valid"].all()
        assert s["valid_noc"].dtype == bool and 0.4 < s["valid_noc"].mean() < 1.0
        d = s["disparity"]
        assert np.isfinite(d).all() and d.min() > 0
        assert d.max() <= gen.disparity_cap <= 0.25 * 128  # scales with width
        assert s["meta"]["dataset"] == "synthetic" and s["meta"]["index"] == i
        assert s["left"].std() > 15  # textured, not flat
    with pytest.raises(IndexError):
        gen[5]
    small_cap = SyntheticStereo(64, 128, max_disparity=12, seed=0)
    assert small_cap.sample(0)["disparity"].max() <= 11


def test_warp_property_exact_geometry():
    """right(y, x - d) == left(y, x) on non-occluded pixels, up to interpolation."""
    gen = SyntheticStereo(64, 128, seed=4, noise_std=0.0, gain_jitter=0.0, bias_jitter=0.0)
    for i in range(4):
        s = gen.sample(i)
        left = s["left"].astype(np.float32)
        noc = s["valid_noc"]
        err = np.abs(_warp_right_to_left(s["right"], s["disparity"]) - left)[noc].mean()
        err_off = [np.abs(_warp_right_to_left(s["right"], s["disparity"], o) - left)[noc].mean()
                   for o in (-2.0, 2.0)]
        assert err < 5.0
        assert err < 0.5 * min(err_off)
    # occlusion bookkeeping: matches that leave the right image are never "non-occluded"
    s = gen.sample(0)
    x = np.arange(128)[None, :]
    assert not s["valid_noc"][x - s["disparity"] < 0].any()


def test_photometric_asymmetry_keeps_matching():
    gen = SyntheticStereo(64, 128, seed=5)
    s = gen.sample(0)
    left = s["left"].astype(np.float32)
    noc = s["valid_noc"]
    err = np.abs(_warp_right_to_left(s["right"], s["disparity"]) - left)[noc].mean()
    err_off = np.abs(_warp_right_to_left(s["right"], s["disparity"], 3.0) - left)[noc].mean()
    assert err < err_off
    clean = SyntheticStereo(64, 128, seed=5, noise_std=0.0, gain_jitter=0.0, bias_jitter=0.0)
    assert not np.array_equal(clean.sample(0)["left"], s["left"])  # noise/gain applied
    np.testing.assert_array_equal(clean.sample(0)["disparity"], s["disparity"])


def test_classical_matcher_recovers_gt():
    """Textures are informative: OpenCV SGBM finds the GT disparity on most pixels."""
    gen = SyntheticStereo(64, 128, seed=0)
    sgbm = cv2.StereoSGBM_create(0, 48, 5, P1=600, P2=2400, uniquenessRatio=5)
    for i in range(3):
        s = gen.sample(i)
        grey = [cv2.cvtColor(s[k], cv2.COLOR_RGB2GRAY) for k in ("left", "right")]
        pred = sgbm.compute(*grey).astype(np.float32) / 16.0
        mask = s["valid_noc"] & (pred >= 0)
        assert mask.sum() > 0.5 * s["valid_noc"].sum()
        err = np.abs(pred - s["disparity"])[mask]
        assert np.median(err) < 0.5
        assert (err > 3).mean() < 0.15


def test_determinism_and_seeds():
    a = SyntheticStereo(32, 64, seed=1)
    b = SyntheticStereo(32, 64, seed=1)
    s1, s2 = a.sample(3), b.sample(3)
    b.sample(7)  # order of calls must not matter
    s3 = b.sample(3)
    for key in ("left", "right", "disparity", "valid_noc"):
        np.testing.assert_array_equal(s1[key], s2[key])
        np.testing.assert_array_equal(s1[key], s3[key])
    assert not np.array_equal(a.sample(4)["left"], s1["left"])
    assert not np.array_equal(SyntheticStereo(32, 64, seed=2).sample(3)["left"], s1["left"])
    seeds = {split_seed(0, s) for s in ("train", "val", "test")}
    assert len(seeds) == 3 and split_seed(0, None) == 0
    with pytest.raises(ValueError):
        split_seed(0, "holdout")


def test_bad_settings():
    with pytest.raises(ValueError, match="too small"):
        SyntheticStereo(64, 128, max_disparity=4)
    with pytest.raises(ValueError):
        SyntheticStereo(8, 8)


def test_speed_256x512():
    gen = SyntheticStereo(256, 512, seed=0)
    gen.sample(0)  # warm-up (noise bank)
    times = []
    for i in range(1, 6):
        t0 = time.process_time()
        gen.sample(i)
        times.append(time.process_time() - t0)
    # about 20 ms of CPU time on one core; generous bound for a loaded test machine
    assert float(np.median(times)) < 0.08


def test_per_scene_disparity_fraction_gives_near_and_far_scenes():
    """min_disparity_fraction draws each scene's range in [min, max] x W; without it the
    scenes are exactly those of before (same stream)."""
    from dtp_stereo.data.synthetic import SyntheticStereo

    plain = SyntheticStereo(64, 128, 64, seed=3, max_disparity_fraction=0.3)
    again = SyntheticStereo(64, 128, 64, seed=3, max_disparity_fraction=0.3,
                            min_disparity_fraction=None)
    np.testing.assert_array_equal(plain.sample(2)["left"], again.sample(2)["left"])
    mixed = SyntheticStereo(64, 128, 64, seed=3, max_disparity_fraction=0.3,
                            min_disparity_fraction=0.05)
    peaks = [float(mixed.sample(i)["disparity"].max()) for i in range(40)]
    assert max(peaks) <= 0.3 * 128 + 1e-3 and min(peaks) < 0.12 * 128  # some near-only scenes
    assert max(peaks) > 0.2 * 128  # and some far-reaching ones
    with pytest.raises(ValueError, match="min_disparity_fraction"):
        SyntheticStereo(64, 128, 64, max_disparity_fraction=0.3, min_disparity_fraction=0.5)


def test_thin_objects_are_long_and_narrow_and_keep_the_geometry_exact():
    """thin_object_prob draws leaf- and pole-like shapes (half width 3-15 % of the half length);
    at 0 (default) the scene stream is unchanged; the warp property holds with thin objects."""
    from dtp_stereo.data.synthetic import _Shape

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:400, 0:400].astype(np.float32)
    for _ in range(20):
        shape = _Shape(rng, 200.0, 200.0, 60.0, thin=True)
        assert shape.kind in ("ellipse", "rectangle", "wedge")
        assert 60.0 <= shape.rx <= 120.0 and shape.ry <= max(1.0, 0.15 * shape.rx)
        area = float(shape.contains(xs, ys).sum())
        assert 0 < area <= 4.2 * shape.rx * shape.ry  # a narrow strip, not a blob
    plain = SyntheticStereo(64, 128, seed=3)
    zero = SyntheticStereo(64, 128, seed=3, thin_object_prob=0.0)
    np.testing.assert_array_equal(plain.sample(1)["left"], zero.sample(1)["left"])
    thin = SyntheticStereo(64, 128, seed=3, thin_object_prob=1.0, noise_std=0.0,
                           gain_jitter=0.0, bias_jitter=0.0)
    assert not np.array_equal(plain.sample(1)["disparity"], thin.sample(1)["disparity"])
    for i in range(3):
        s = thin.sample(i)
        noc = s["valid_noc"]
        err = np.abs(_warp_right_to_left(s["right"], s["disparity"])
                     - s["left"].astype(np.float32))[noc].mean()
        assert err < 5.0
    with pytest.raises(ValueError, match="thin_object_prob"):
        SyntheticStereo(64, 128, thin_object_prob=1.5)
