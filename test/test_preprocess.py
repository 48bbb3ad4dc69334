"""Tests for dtp_stereo.preprocess: padding, image conversion, resize-and-restore."""

import numpy as np
import pytest
import torch

from dtp_stereo.preprocess import InputPadder, StereoPreprocessor, image_to_tensor


@pytest.mark.parametrize("mode", ["replicate", "reflect", "constant"])
def test_padder_pads_right_bottom_and_unpad_is_inverse(mode):
    x = torch.rand(2, 3, 67, 131)
    padder = InputPadder(67, 131, 32, mode=mode)
    (y,) = padder.pad(x)
    assert y.shape == (2, 3, 96, 160)
    assert torch.equal(y[..., :67, :131], x)  # original content stays at the top-left
    assert torch.equal(padder.unpad(y), x)
    assert padder.unpad(torch.zeros(2, 96, 160)).shape == (2, 67, 131)
    if mode == "replicate":
        assert torch.equal(y[..., 80, :131], x[..., 66, :])


def test_padder_multiple_tensors_and_noop():
    a, b = torch.rand(1, 3, 64, 128), torch.rand(1, 1, 64, 128)
    pa, pb = InputPadder(64, 128, 16).pad(a, b)
    assert pa is a and pb is b


def test_padder_errors():
    with pytest.raises(ValueError, match="divisor"):
        InputPadder(10, 10, 0)
    with pytest.raises(ValueError, match="mode"):
        InputPadder(10, 10, 8, mode="wrap")
    padder = InputPadder(10, 12, 8)
    with pytest.raises(ValueError, match="expects 10x12"):
        padder.pad(torch.zeros(1, 3, 11, 12))
    with pytest.raises(ValueError, match="padded size"):
        padder.unpad(torch.zeros(1, 10, 12))


@pytest.mark.parametrize("img,scale", [
    (np.full((5, 7, 3), 255, np.uint8), 1.0),
    (np.full((5, 7), 65535, np.uint16), 1.0),
    (np.full((5, 7, 1), 0.25, np.float32), 0.25),
    (np.full((5, 7, 3), 0.5, np.float64), 0.5),
])
def test_image_to_tensor(img, scale):
    t = image_to_tensor(img)
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32
    assert torch.allclose(t, torch.full_like(t, scale))


def test_image_to_tensor_keeps_channel_order():
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = 255  # red
    t = image_to_tensor(img)
    assert t[0, 0].min() == 1.0 and t[0, 1:].max() == 0.0


@pytest.mark.parametrize("img,match", [
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.zeros((4, 4, 4), np.uint8), "H×W×3"),
    (np.zeros((4, 4, 3), np.int32), "dtype"),
])
def test_image_to_tensor_errors(img, match):
    with pytest.raises(ValueError, match=match):
        image_to_tensor(img)


def test_preprocessor_pads_only_when_small():
    left = np.random.default_rng(0).integers(0, 255, (67, 131, 3), dtype=np.uint8)
    pre = StereoPreprocessor(16)
    lnet, rnet, frame = pre.prepare(left, left)
    assert lnet.shape == (80, 144, 3) and lnet.dtype == np.float32
    assert (frame.resized_height, frame.resized_width) == (67, 131)
    np.testing.assert_allclose(lnet[:67, :131], left / 255.0, atol=1e-6)
    disp = np.arange(80 * 144, dtype=np.float32).reshape(80, 144)
    np.testing.assert_array_equal(frame.restore(disp), disp[:67, :131])


def test_preprocessor_max_width_scales_disparity_back():
    left = np.zeros((100, 400), np.uint8)
    lnet, _, frame = StereoPreprocessor(32, max_width=200).prepare(left, left)
    assert (frame.resized_height, frame.resized_width) == (50, 200)
    assert lnet.shape == (64, 224, 3)
    disp = np.full((64, 224), 10.0, np.float32)  # 10 px at the network scale
    restored = frame.restore(disp)
    assert restored.shape == (100, 400)
    np.testing.assert_allclose(restored, 20.0, rtol=1e-6)  # x 400/200


def test_preprocessor_fixed_input_size_keeps_aspect():
    left = np.zeros((120, 320, 3), np.float32)
    lnet, rnet, frame = StereoPreprocessor(32, input_size=(128, 256)).prepare(left, left)
    assert lnet.shape == rnet.shape == (128, 256, 3)
    assert frame.resized_width == 256 and frame.resized_height == 96
    restored = frame.restore(np.full((128, 256), 8.0, np.float32))
    assert restored.shape == (120, 320)
    np.testing.assert_allclose(restored, 10.0, rtol=1e-6)
    confidence = frame.restore(np.full((128, 256), 0.75, np.float32), scale_values=False)
    assert confidence.shape == (120, 320) and confidence.dtype == np.float32
    np.testing.assert_allclose(confidence, 0.75, rtol=1e-6)  # resampled, values not scaled


def test_preprocessor_errors():
    pre = StereoPreprocessor(16)
    with pytest.raises(ValueError, match="mismatch"):
        pre.prepare(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        pre.prepare(np.zeros((0, 10, 3), np.uint8), np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="multiples"):
        StereoPreprocessor(16, input_size=(100, 200))
    _, _, frame = pre.prepare(np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="expected a 16x16"):
        frame.restore(np.zeros((8, 8), np.float32))
