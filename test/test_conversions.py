"""Image, DisparityImage and PointCloud2 conversions on plain objects (no rclpy needed)."""

from types import SimpleNamespace

import numpy as np
import pytest

from dtp_stereo.ros import conversions as conv


class _Msg(SimpleNamespace):
    pass


def _header():
    return SimpleNamespace(frame_id="cam", stamp=SimpleNamespace(sec=1, nanosec=2))


def _image(arr, encoding, pad=0, bigendian=False):
    """An Image-like object with ``pad`` extra bytes per row."""
    arr = np.asarray(arr)
    dt = arr.dtype.newbyteorder(">" if bigendian else "<")
    raw = np.ascontiguousarray(arr, dtype=dt).view(np.uint8).reshape(arr.shape[0], -1)
    rows = np.concatenate([raw, np.full((arr.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(height=arr.shape[0], width=arr.shape[1], encoding=encoding,
                           step=rows.shape[1], is_bigendian=int(bigendian), data=rows.tobytes())


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, size=(5, 7, 1), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding, source", [
    ("rgb8", RGB), ("bgr8", RGB[..., ::-1]),
    ("rgba8", np.concatenate([RGB, ALPHA], 2)),
    ("bgra8", np.concatenate([RGB[..., ::-1], ALPHA], 2)),
])
def test_colour_encodings_give_rgb(encoding, source, pad):
    out = conv.image_msg_to_numpy(_image(source, encoding, pad=pad))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 2, 3])
@pytest.mark.parametrize("encoding, arr", [
    ("mono8", RNG.integers(0, 256, (4, 6), dtype=np.uint8)),
    ("mono16", RNG.integers(0, 65536, (4, 6), dtype=np.uint16)),
    ("32FC1", RNG.normal(size=(4, 6)).astype(np.float32)),
])
def test_single_channel_encodings_honour_step_and_endianness(encoding, arr, pad, bigendian):
    out = conv.image_msg_to_numpy(_image(arr, encoding, pad=pad, bigendian=bigendian))
    assert out.shape == arr.shape and out.dtype == arr.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_image_msg_to_rgb_replicates_mono_and_rejects_float():
    mono = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    out = conv.image_msg_to_rgb(_image(mono, "mono8"))
    assert out.shape == (4, 6, 3)
    np.testing.assert_array_equal(out[..., 1], mono)
    with pytest.raises(conv.UnsupportedEncodingError, match="32FC1"):
        conv.image_msg_to_rgb(_image(np.zeros((2, 2), np.float32), "32FC1"))


def test_bad_images_raise_named_errors():
    msg = _image(np.zeros((2, 2, 3), np.uint16), "rgb8")
    msg.encoding = "bgr16"
    with pytest.raises(conv.UnsupportedEncodingError, match="bgr16"):
        conv.image_msg_to_numpy(msg)
    empty = SimpleNamespace(height=0, width=0, encoding="rgb8", step=0, is_bigendian=0, data=b"")
    with pytest.raises(conv.ImageConversionError, match="empty"):
        conv.image_msg_to_numpy(empty)
    short = _image(RGB, "rgb8")
    short.data = short.data[:-10]
    with pytest.raises(conv.ImageConversionError, match="bytes"):
        conv.image_msg_to_numpy(short)
    small_step = _image(RGB, "rgb8")
    small_step.step = 7
    with pytest.raises(conv.ImageConversionError, match="step"):
        conv.image_msg_to_numpy(small_step)


@pytest.mark.parametrize("encoding, arr", [
    ("rgb8", RGB), ("bgr8", RGB), ("mono16", np.arange(12, dtype=np.uint16).reshape(3, 4)),
    ("32FC1", np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)),
])
def test_numpy_to_image_msg_round_trip(encoding, arr):
    msg = conv.numpy_to_image_msg(arr, encoding, _header(), msg_cls=_Msg)
    assert msg.encoding == encoding and msg.header.frame_id == "cam"
    assert msg.step == arr.shape[1] * arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)
    back = conv.image_msg_to_numpy(msg)
    expected = arr[..., ::-1] if encoding == "bgr8" else arr
    np.testing.assert_array_equal(back, expected)


def test_numpy_to_image_msg_rejects_wrong_shape_or_dtype():
    with pytest.raises(ValueError, match="channel"):
        conv.numpy_to_image_msg(np.zeros((2, 2), np.uint8), "rgb8", msg_cls=_Msg)
    with pytest.raises(ValueError, match="dtype"):
        conv.numpy_to_image_msg(np.zeros((2, 2), np.float64), "32FC1", msg_cls=_Msg)


def test_build_disparity_image_fields_and_invalid_pixels():
    disp = np.array([[5.0, np.nan], [0.5, 12.0]], dtype=np.float32)
    msg = conv.build_disparity_image(disp, _header(), f=300.0, t=0.1, min_disparity=1.0,
                                     max_disparity=64.0, delta_d=0.0625, msg_cls=_Msg,
                                     image_cls=_Msg, roi_cls=_Msg)
    assert (msg.f, msg.t, msg.min_disparity, msg.max_disparity, msg.delta_d) == \
        (300.0, pytest.approx(0.1), 1.0, 64.0, 0.0625)
    w = msg.valid_window
    assert (w.x_offset, w.y_offset, w.width, w.height) == (0, 0, 2, 2)
    assert msg.image.encoding == "32FC1" and msg.header.frame_id == "cam"
    values, valid = conv.disparity_image_to_numpy(msg)
    assert values[0, 0] == 5.0 and values[1, 1] == 12.0
    assert values[0, 1] < 1.0 and values[1, 0] < 1.0  # invalid written below min_disparity
    np.testing.assert_array_equal(valid, [[True, False], [False, True]])
    assert np.isnan(disp[0, 1])  # input untouched


def test_pointcloud2_layout_colour_and_nan():
    pts = RNG.normal(size=(3, 4, 3)).astype(np.float32)
    pts[1, 2] = np.nan
    colors = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    msg = conv.build_pointcloud2(pts, _header(), colors, msg_cls=_Msg, field_cls=_Msg)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"]
    assert [f.offset for f in msg.fields] == [0, 4, 8, 12]
    assert all(f.datatype == 7 and f.count == 1 for f in msg.fields)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (3, 4, 16, 64)
    assert msg.is_dense is False and msg.is_bigendian is False
    assert len(msg.data) == 3 * 4 * 16
    back, back_colors = conv.pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(back, pts)
    np.testing.assert_array_equal(back_colors, colors)
    r, g, b = colors[0, 0]
    packed = np.frombuffer(msg.data[12:16], "<u4")[0]
    assert packed == (int(r) << 16) | (int(g) << 8) | int(b)


def test_pointcloud2_without_colour_is_xyz_only():
    pts = np.ones((2, 2, 3), np.float32)
    msg = conv.build_pointcloud2(pts, _header(), msg_cls=_Msg, field_cls=_Msg)
    assert [f.name for f in msg.fields] == ["x", "y", "z"] and msg.point_step == 12
    back, colors = conv.pointcloud2_to_numpy(msg)
    assert colors is None
    np.testing.assert_array_equal(back, pts)


def test_real_messages_when_available():
    msgs = pytest.importorskip("sensor_msgs.msg")
    stereo = pytest.importorskip("stereo_msgs.msg")
    img = conv.numpy_to_image_msg(RGB, "rgb8")
    assert isinstance(img, msgs.Image)
    np.testing.assert_array_equal(conv.image_msg_to_numpy(img), RGB)
    disp = conv.build_disparity_image(np.ones((2, 3), np.float32), img.header, f=1.0, t=1.0,
                                      min_disparity=0.0, max_disparity=4.0, delta_d=0.1)
    assert isinstance(disp, stereo.DisparityImage) and disp.valid_window.width == 3
    cloud = conv.build_pointcloud2(np.ones((2, 3, 3), np.float32), img.header,
                                   np.zeros((2, 3, 3), np.uint8))
    assert isinstance(cloud, msgs.PointCloud2) and cloud.point_step == 16


def test_build_camera_info_round_trips_through_stereo_camera():
    from dtp_stereo.ros.geometry import StereoCamera

    cam = StereoCamera(width=64, height=32, fx=50.0, fy=51.0, cx=31.5, cy=15.5, cx_right=33.0,
                       baseline=0.12, frame_id="left_optical")
    left = conv.build_camera_info(cam, SimpleNamespace(frame_id="left_optical"), msg_cls=_Msg,
                                  roi_cls=_Msg)
    right = conv.build_camera_info(cam, SimpleNamespace(frame_id="right_optical"), right=True,
                                   msg_cls=_Msg, roi_cls=_Msg)
    assert left.distortion_model == "plumb_bob" and not left.d.any() and left.p[3] == 0.0
    assert right.p[3] == pytest.approx(-50.0 * 0.12) and right.k[2] == 33.0
    np.testing.assert_array_equal(left.r, np.eye(3).ravel())
    assert StereoCamera.from_camera_info(left, right) == cam


def test_disparity_output_range_is_d_minus_one_scaled():
    assert conv.disparity_output_range(192) == (191.0, conv.DELTA_D)
    max_d, step = conv.disparity_output_range(64, scale=2.5)  # network at 1/2.5 of the width
    assert max_d == pytest.approx(63 * 2.5) and step == pytest.approx(2.5 * conv.DELTA_D)
    for bad in ((0, 1.0), (16, 0.0), (16, float("nan"))):
        with pytest.raises(ValueError, match="disparity_output_range"):
            conv.disparity_output_range(*bad)


def test_twelve_bit_mono16_is_scaled_to_the_full_range():
    """A 12-bit sensor in mono16 tops out at 4095; with image_bit_depth 12 that is white."""
    img = np.array([[0, 2048, 4095, 5000]], dtype=np.uint16)
    msg = conv.numpy_to_image_msg(img, "mono16")
    full = conv.image_msg_to_rgb(msg)
    np.testing.assert_array_equal(full[..., 0], img)  # 16 bits: as is
    scaled = conv.image_msg_to_rgb(msg, bit_depth=12)
    np.testing.assert_array_equal(scaled[0, :, 0], [0, 2048 * 65535 // 4095, 65535, 65535])
    assert scaled.dtype == np.uint16 and scaled.shape == (1, 4, 3)
    u8 = conv.numpy_to_image_msg(np.full((2, 2), 200, np.uint8), "mono8")
    assert (conv.image_msg_to_rgb(u8, bit_depth=12) == 200).all()  # 8-bit: unchanged
    with pytest.raises(ValueError, match="bit_depth"):
        conv.image_msg_to_rgb(msg, bit_depth=8)
