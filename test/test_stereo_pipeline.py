"""The one stereo pipeline (dtp_stereo.pipeline) and its output messages (dtp_stereo.ros.outputs),
without ROS: camera scaling, output range, disparity offset, what each output holds."""

from types import SimpleNamespace

import numpy as np
import pytest

from dtp_stereo.backends.base import InferenceResult
from dtp_stereo.pipeline import StereoPipeline, camera_for_image
from dtp_stereo.preprocess import StereoPreprocessor
from dtp_stereo.ros.conversions import DELTA_D
from dtp_stereo.ros.geometry import StereoCamera
from dtp_stereo.ros.outputs import (OUTPUT_TOPICS, MessageClasses, OutputOptions,
                                    disparity_message, output_messages)

CAMERA = StereoCamera(width=64, height=32, fx=50.0, fy=50.0, cx=31.5, cy=15.5, cx_right=31.5,
                      baseline=0.1, frame_id="left_optical")


class ConstantBackend:
    """A backend whose disparity is ``value`` network pixels everywhere, confidence 0.5."""

    name, device, model_name = "constant", "cpu", "constant"
    max_disparity, size_divisor, input_size = 32, 8, None

    def __init__(self, value: float = 4.0) -> None:
        self.value = value
        self.shapes = []

    def infer(self, left: np.ndarray, right: np.ndarray) -> InferenceResult:
        self.shapes.append(left.shape)
        h, w = left.shape[:2]
        return InferenceResult(np.full((h, w), self.value, np.float32),
                               np.full((h, w), 0.5, np.float32))


def _pair(h: int = 32, w: int = 64):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
            rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_camera_for_image_scales_same_aspect_and_refuses_another():
    assert camera_for_image(CAMERA, 64, 32) is CAMERA
    half = camera_for_image(CAMERA, 32, 16)
    assert (half.width, half.height, half.fx) == (32, 16, 25.0)
    assert half.focal_baseline == pytest.approx(CAMERA.focal_baseline / 2)
    with pytest.raises(ValueError, match=r"camera_info is 64x32 but the images are 64x48"):
        camera_for_image(CAMERA, 64, 48)


def test_pipeline_restores_size_values_and_range_when_it_downscales():
    backend = ConstantBackend(4.0)
    pipe = StereoPipeline(backend, StereoPreprocessor(8, max_width=32))
    left, right = _pair(36, 64)  # 64 wide -> 32 wide network input (18 rows, padded to 24)
    res = pipe.run(left, right)
    assert backend.shapes == [(24, 32, 3)]
    assert res.disparity.shape == (36, 64) and res.disparity.dtype == np.float32
    np.testing.assert_allclose(res.disparity, 8.0)  # 4 network px x scale 2
    np.testing.assert_allclose(res.confidence, 0.5)  # not scaled
    assert res.frame.scale == 2.0
    assert res.max_disparity == pytest.approx(31 * 2.0) and res.delta_d == DELTA_D * 2
    assert res.camera is None
    assert set(res.timings_ms) == {"prepare", "inference", "restore"}
    assert res.total_ms == pytest.approx(sum(res.timings_ms.values()))
    np.testing.assert_array_equal(pipe(left, right), res.disparity)


def test_pipeline_gives_the_camera_at_the_image_size():
    pipe = StereoPipeline(ConstantBackend())
    res = pipe.run(*_pair(16, 32), CAMERA)  # camera_info at 64x32, images binned 2x
    assert (res.camera.width, res.camera.height, res.camera.fx) == (32, 16, 25.0)
    with pytest.raises(ValueError, match="aspect ratio"):
        pipe.run(*_pair(32, 32), CAMERA)
    with pytest.raises(ValueError, match="size mismatch"):
        pipe.run(_pair(32, 64)[0], _pair(32, 32)[1])


# plain message classes: the builders only construct and assign attributes
PLAIN = MessageClasses(*(SimpleNamespace,) * 5)


def _result(disparity: np.ndarray, camera=CAMERA, confidence=None):
    pipe = StereoPipeline(ConstantBackend())
    res = pipe.run(*_pair(*disparity.shape), camera)
    return type(res)(disparity=disparity.astype(np.float32), confidence=confidence,
                     frame=res.frame, max_disparity=res.max_disparity, delta_d=res.delta_d,
                     camera=res.camera, timings_ms=res.timings_ms)


def _image(msg) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), np.float32).reshape(msg.height, msg.width)


def test_disparity_message_applies_doffs_to_values_and_range():
    """Z = f·T / value with value = d + doffs, and the range shifted alike (docs of outputs)."""
    camera = StereoCamera(width=64, height=32, fx=50.0, fy=50.0, cx=30.0, cy=15.5,
                          cx_right=32.5, baseline=0.1)  # doffs = 2.5 px
    d = np.full((32, 64), 5.0, np.float32)
    d[0, 10] = -1.0  # invalid (below min)
    res = _result(d, camera)
    msg = disparity_message(res, SimpleNamespace(frame_id="f"), OutputOptions(), PLAIN)
    values = _image(msg.image)
    assert values[1, 10] == pytest.approx(7.5)
    assert msg.min_disparity == pytest.approx(2.5)
    assert msg.max_disparity == pytest.approx(res.max_disparity + 2.5)
    assert values[0, 10] < msg.min_disparity and values[0, 0] < msg.min_disparity  # band
    assert msg.f * msg.t / values[1, 10] == pytest.approx(50.0 * 0.1 / 7.5)
    nocam = disparity_message(_result(d, None), SimpleNamespace(), OutputOptions(), PLAIN)
    assert (nocam.f, nocam.t, nocam.min_disparity) == (0.0, 0.0, 0.0)


def test_output_messages_follow_options_and_wanted_topics():
    d = np.full((32, 64), 10.0, np.float32)
    d[:, :4] = 0.5  # below min_disparity 1
    res = _result(d, confidence=np.full((32, 64), 0.25, np.float32))
    left = _pair()[0]
    header = SimpleNamespace(frame_id="left_optical")
    msgs = output_messages(res, header, left, OutputOptions(min_disparity=1.0), classes=PLAIN)
    assert set(msgs) == set(OUTPUT_TOPICS)
    assert all(m.header is header for m in msgs.values())
    shown = _image(msgs["disparity/image"])  # x < 10: left band, no match in the right view
    assert np.isnan(shown[:, :10]).all() and (shown[:, 10:] == 10.0).all()
    depth = _image(msgs["depth"])
    assert np.isnan(depth[:, :4]).all()
    assert depth[0, 10] == pytest.approx(50.0 * 0.1 / 10.0)  # 0.5 m
    near = output_messages(res, header, left, OutputOptions(max_depth=0.4),
                           wanted=lambda t: t == "depth", classes=PLAIN)
    assert np.isnan(_image(near["depth"])).all()  # everything is beyond 0.4 m
    only = output_messages(res, header, left, OutputOptions(max_depth=0.6, publish_depth=False,
                                                            publish_confidence=False),
                           wanted=lambda t: t in ("depth", "points2", "confidence"),
                           classes=PLAIN)
    assert set(only) == {"points2"}
    assert [f.name for f in only["points2"].fields] == ["x", "y", "z", "rgb"]
    nocolor = output_messages(res, header, left, OutputOptions(use_color=False),
                              wanted=lambda t: t == "points2", classes=PLAIN)
    assert [f.name for f in nocolor["points2"].fields] == ["x", "y", "z"]
    without_camera = output_messages(_result(d, None), header, left, classes=PLAIN)
    assert "points2" not in without_camera and "depth" not in without_camera
    assert "disparity" in without_camera


def test_disparities_at_the_range_cap_are_invalid_everywhere():
    """A point nearer than f·T / max_disparity saturates the network: such pixels must not be
    reported as valid far-too-far depth."""
    res0 = _result(np.zeros((32, 64), np.float32))
    d = np.full((32, 64), 10.0, np.float32)
    d[:, 40] = res0.max_disparity  # at the cap (31 px for D = 32)
    d[:, 41] = res0.max_disparity - 0.5  # within one network pixel of it
    d[:, 42] = res0.max_disparity - 1.5  # measurable
    res = _result(d)
    msgs = output_messages(res, SimpleNamespace(), _pair()[0], classes=PLAIN)
    depth = _image(msgs["depth"])
    assert np.isnan(depth[:, 40:42]).all() and np.isfinite(depth[:, 42:]).all()
    values = _image(msgs["disparity"].image)
    assert (values[:, 40:42] < msgs["disparity"].min_disparity).all()
    assert values[0, 42] == pytest.approx(res0.max_disparity - 1.5)


def test_left_band_and_low_confidence_pixels_are_invalid():
    d = np.full((32, 64), 10.0, np.float32)  # columns 0..9 have their match left of the image
    conf = np.full((32, 64), 0.9, np.float32)
    conf[:, 40:] = 0.2
    res = _result(d, confidence=conf)
    depth = _image(output_messages(res, SimpleNamespace(), None,
                                   OutputOptions(confidence_threshold=0.5),
                                   wanted=lambda t: t == "depth", classes=PLAIN)["depth"])
    assert np.isnan(depth[:, :10]).all() and np.isnan(depth[:, 40:]).all()
    assert np.isfinite(depth[:, 10:40]).all()
    kept = _image(output_messages(res, SimpleNamespace(), None,
                                  OutputOptions(keep_left_band=True),
                                  wanted=lambda t: t == "depth", classes=PLAIN)["depth"])
    assert np.isfinite(kept).all()
