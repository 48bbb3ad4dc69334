"""Stereo geometry: camera_info parsing, Z = f*T/d, round trips, Q matrix, PLY output."""

from types import SimpleNamespace

import numpy as np
import pytest

from dtp_stereo.ros.geometry import (StereoCamera, depth_to_disparity, depth_to_points,
                                     disparity_to_depth, disparity_to_points, points_to_pixels,
                                     reprojection_matrix, write_ply)

FX, FY, CX, CY, BASELINE = 200.0, 210.0, 63.5, 31.5, 0.12


def _info(side, width=128, height=64, fx=FX, fy=FY, cx=CX, cy=CY, baseline=BASELINE,
          frame="left_optical"):
    tx = -fx * baseline if side == "right" else 0.0
    return SimpleNamespace(
        width=width, height=height, header=SimpleNamespace(frame_id=frame),
        k=[fx, 0, cx, 0, fy, cy, 0, 0, 1], p=[fx, 0, cx, tx, 0, fy, cy, 0, 0, 0, 1, 0])


def _camera(**kw):
    return StereoCamera.from_camera_info(_info("left", **kw), _info("right", **kw))


def test_from_camera_info_reads_intrinsics_and_baseline():
    cam = _camera()
    assert (cam.width, cam.height) == (128, 64)
    assert cam.fx == FX and cam.fy == FY and cam.cx == CX and cam.cy == CY
    assert cam.baseline == pytest.approx(BASELINE)
    assert cam.doffs == 0.0
    assert cam.frame_id == "left_optical"


def test_depth_is_f_times_t_over_d_at_known_pixels():
    cam = _camera()
    disp = np.full((64, 128), 8.0, dtype=np.float32)
    disp[10, 20] = 24.0
    depth = disparity_to_depth(disp, cam)
    assert depth[0, 0] == pytest.approx(FX * BASELINE / 8.0, rel=1e-6)
    assert depth[10, 20] == pytest.approx(FX * BASELINE / 24.0, rel=1e-6)
    assert depth.dtype == np.float32


def test_doffs_shifts_the_disparity():
    left = _info("left")
    right = _info("right", cx=CX + 5.0)
    cam = StereoCamera.from_camera_info(left, right)
    assert cam.doffs == pytest.approx(5.0)
    depth = disparity_to_depth(np.full((64, 128), 3.0, np.float32), cam)
    assert depth[5, 5] == pytest.approx(FX * BASELINE / 8.0, rel=1e-6)


def test_invalid_disparities_give_nan_never_inf():
    cam = _camera()
    disp = np.array([[0.0, -1.0, np.nan, np.inf, 2.0, 1.0]], dtype=np.float32)
    disp = np.tile(disp, (64, 1))[:, :6]
    cam6 = cam.scaled(6, 64)
    depth = disparity_to_depth(disp, cam6, min_disparity=1.5)
    assert np.isnan(depth[0, :4]).all()
    assert np.isnan(depth[0, 5])  # below min_disparity
    assert np.isfinite(depth[0, 4])
    assert not np.isinf(depth).any()
    limited = disparity_to_depth(disp, cam6, max_depth=0.5 * cam6.focal_baseline / 2.0)
    assert np.isnan(limited[0, 4])


def test_pixel_to_3d_to_pixel_round_trip():
    cam = _camera()
    rng = np.random.default_rng(0)
    disp = rng.uniform(1.0, 40.0, size=(64, 128)).astype(np.float32)
    points = disparity_to_points(disp, cam)
    assert points.shape == (64, 128, 3) and points.dtype == np.float32
    u, v = points_to_pixels(points, cam)
    uu, vv = np.meshgrid(np.arange(128), np.arange(64))
    np.testing.assert_allclose(u, uu, atol=1e-3)
    np.testing.assert_allclose(v, vv, atol=1e-3)
    back = depth_to_disparity(points[..., 2], cam)
    np.testing.assert_allclose(back, disp, rtol=1e-5)


def test_points_follow_pinhole_model():
    cam = _camera()
    depth = np.full((64, 128), 2.0, dtype=np.float32)
    depth[3, 4] = np.nan
    pts = depth_to_points(depth, cam)
    assert pts[10, 100, 0] == pytest.approx((100 - CX) * 2.0 / FX, rel=1e-5)
    assert pts[10, 100, 1] == pytest.approx((10 - CY) * 2.0 / FY, rel=1e-5)
    assert np.isnan(pts[3, 4]).all()
    with pytest.raises(ValueError, match="camera_info says"):
        depth_to_points(np.ones((32, 64), np.float32), cam)


def test_q_matrix_matches_disparity_to_points():
    cam = StereoCamera.from_camera_info(_info("left"), _info("right", cx=CX + 2.0))
    q = reprojection_matrix(cam)
    disp = np.full((64, 128), 10.0, dtype=np.float32)
    pts = disparity_to_points(disp, cam)
    for (v, u) in [(0, 0), (20, 77), (63, 127)]:
        x, y, z, w = q @ np.array([u, v, disp[v, u], 1.0])
        np.testing.assert_allclose([x / w, y / w, z / w], pts[v, u], rtol=1e-5)


def test_scaling_keeps_depth():
    cam = _camera()
    half = cam.scaled(64, 32)
    assert half.fx == pytest.approx(FX / 2) and half.fy == pytest.approx(FY / 2)
    assert half.cx == pytest.approx((CX + 0.5) / 2 - 0.5)  # pixel-centre convention
    assert half.cy == pytest.approx((CY + 0.5) / 2 - 0.5)
    assert half.doffs == pytest.approx(0.0)
    back = half.scaled(128, 64)
    assert (back.cx, back.cy, back.fx) == pytest.approx((CX, CY, FX))
    assert half.baseline == cam.baseline
    d_full = disparity_to_depth(np.full((64, 128), 20.0, np.float32), cam)
    d_half = disparity_to_depth(np.full((32, 64), 10.0, np.float32), half)
    assert d_half[0, 0] == pytest.approx(d_full[0, 0], rel=1e-6)


@pytest.mark.parametrize("right_kw, left_kw, match", [
    ({"baseline": 0.0}, {}, "no baseline"),
    ({"baseline": -0.1}, {}, "negative baseline"),
    ({"fx": 0.0}, {}, "zero focal length"),
    ({"width": 64}, {}, "size mismatch"),
    ({}, {"width": 0}, "empty image size"),
    ({}, {"cx": float("nan")}, r"left camera_info field 'p' has non-finite values"),
    ({"cy": float("inf")}, {}, r"right camera_info field 'p' has non-finite values"),
])
def test_bad_camera_info_raises_clear_error(right_kw, left_kw, match):
    with pytest.raises(ValueError, match=match):
        StereoCamera.from_camera_info(_info("left", **left_kw), _info("right", **right_kw))


def test_camera_with_a_nan_principal_point_is_refused():
    with pytest.raises(ValueError, match=r"principal point must be finite, got cx=nan"):
        StereoCamera(width=4, height=2, fx=1.0, fy=1.0, cx=float("nan"), cy=0.5, cx_right=1.5,
                     baseline=0.1)


def test_write_ply_skips_invalid_points(tmp_path):
    pts = np.zeros((2, 3, 3), dtype=np.float32)
    pts[..., 2] = 1.0
    pts[0, 0] = np.nan
    colors = np.full((2, 3, 3), 200, dtype=np.uint8)
    n = write_ply(tmp_path / "c.ply", pts, colors)
    assert n == 5
    data = (tmp_path / "c.ply").read_bytes()
    header, body = data.split(b"end_header\n")
    assert b"element vertex 5" in header and b"property uchar red" in header
    assert len(body) == 5 * (12 + 3)
