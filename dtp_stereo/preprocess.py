"""Input preparation for stereo networks: padding, aspect-preserving resizing, image -> tensor.

Conventions:
    * Images are RGB, H×W×3 (numpy) or B×3×H×W (torch), values in [0, 1] after conversion.
    * Padding is added on the right and bottom only, so pixel (0, 0) and the disparity
      definition (left-referenced, x_left - x_right) are unchanged by padding.
    * Disparities are in pixels of the image they refer to; resizing the width by a factor
      ``s`` scales disparity values by ``s``.
"""

import argparse
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Frame", "InputPadder", "SizeError", "StereoPreprocessor", "image_to_tensor",
           "parse_size", "to_float_rgb"]

_PAD_MODES = ("replicate", "reflect", "constant")


class SizeError(argparse.ArgumentTypeError, ValueError):
    """A size that is not ``HxW`` with positive integers (a ValueError; argparse shows it)."""


def parse_size(text: str) -> Tuple[int, int]:
    """Parse ``"HxW"`` (pixels, e.g. ``"256x512"``) into ``(H, W)``.

    Raises:
        SizeError: not two positive integers separated by ``x``.
    """
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise SizeError(f"size {text!r} must look like HxW in pixels, e.g. 256x512")
    h, w = int(parts[0]), int(parts[1])
    if h <= 0 or w <= 0:
        raise SizeError(f"size {text!r} must be positive")
    return h, w


class InputPadder:
    """Pad B×C×H×W tensors on the right and bottom to multiples of ``divisor``.

    Args:
        height: unpadded height in pixels.
        width: unpadded width in pixels.
        divisor: the padded height and width are the smallest multiples of it that are
            at least ``height`` / ``width``.
        mode: ``"replicate"`` (default), ``"reflect"`` or ``"constant"`` (zeros).

    ``unpad`` is the exact inverse of ``pad``: it crops the first ``height`` rows and
    ``width`` columns of a B×H×W or B×C×H×W tensor.
    """

    def __init__(self, height: int, width: int, divisor: int, mode: str = "replicate") -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"InputPadder: image size must be positive, got {height}x{width}")
        if divisor <= 0:
            raise ValueError(f"InputPadder: divisor must be positive, got {divisor}")
        if mode not in _PAD_MODES:
            raise ValueError(f"InputPadder: mode must be one of {_PAD_MODES}, got {mode!r}")
        self.height = int(height)
        self.width = int(width)
        self.divisor = int(divisor)
        self.mode = mode
        self.padded_height = -(-self.height // self.divisor) * self.divisor
        self.padded_width = -(-self.width // self.divisor) * self.divisor
        self.pad_bottom = self.padded_height - self.height
        self.pad_right = self.padded_width - self.width

    def pad(self, *tensors: Tensor) -> Tuple[Tensor, ...]:
        """Pad each B×C×H×W tensor (H, W equal to the padder's size); returns a tuple."""
        out = []
        for i, x in enumerate(tensors):
            if x.dim() != 4:
                raise ValueError(f"InputPadder.pad: tensor {i} must be B×C×H×W, got shape "
                                 f"{tuple(x.shape)}")
            if x.shape[-2:] != (self.height, self.width):
                raise ValueError(f"InputPadder.pad: tensor {i} is {x.shape[-2]}x{x.shape[-1]}, "
                                 f"padder expects {self.height}x{self.width}")
            if self.pad_bottom == 0 and self.pad_right == 0:
                out.append(x)
                continue
            mode = self.mode
            too_small = self.pad_bottom >= self.height or self.pad_right >= self.width
            if mode == "reflect" and too_small:
                mode = "replicate"  # reflect needs pad < size; fall back for tiny inputs
            out.append(F.pad(x, (0, self.pad_right, 0, self.pad_bottom), mode=mode))
        return tuple(out)

    def unpad(self, x: Tensor) -> Tensor:
        """Crop a padded B×H×W or B×C×H×W tensor back to ``height`` × ``width``."""
        if x.dim() not in (3, 4):
            raise ValueError(f"InputPadder.unpad: expected B×H×W or B×C×H×W, got shape "
                             f"{tuple(x.shape)}")
        if x.shape[-2:] != (self.padded_height, self.padded_width):
            raise ValueError(f"InputPadder.unpad: tensor is {x.shape[-2]}x{x.shape[-1]}, expected "
                             f"padded size {self.padded_height}x{self.padded_width}")
        return x[..., : self.height, : self.width]


def to_float_rgb(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert an image to H×W×3 float32 RGB in [0, 1].

    Accepts H×W, H×W×1 or H×W×3 arrays of dtype uint8 (/255), uint16 (/65535) or float
    (assumed already in [0, 1]; clipped). Grayscale is replicated to 3 channels.

    Raises:
        ValueError: empty image, unsupported number of dimensions/channels or dtype.
    """
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(img).__name__}")
    if img.size == 0:
        raise ValueError(f"{name}: image is empty (shape {img.shape})")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"{name}: expected H×W, H×W×1 or H×W×3, got shape {img.shape}")
    if img.dtype == np.uint8:
        out = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        out = img.astype(np.float32) / 65535.0
    elif np.issubdtype(img.dtype, np.floating):
        out = np.clip(img.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"{name}: unsupported dtype {img.dtype} (use uint8, uint16 or float)")
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def image_to_tensor(img: np.ndarray) -> Tensor:
    """Convert an H×W[×1|×3] uint8/uint16/float RGB image to a 1×3×H×W float32 tensor in [0, 1]."""
    arr = to_float_rgb(img)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


@dataclass(frozen=True)
class Frame:
    """How one image pair was mapped to the network input, to map the disparity back.

    Attributes:
        orig_height, orig_width: original image size in pixels.
        resized_height, resized_width: size after the aspect-preserving resize, before padding.
        net_height, net_width: network input size (resized + right/bottom padding).
    """

    orig_height: int
    orig_width: int
    resized_height: int
    resized_width: int
    net_height: int
    net_width: int

    @property
    def scale(self) -> float:
        """Disparity scale, network -> original pixels: original_width / resized_width."""
        return self.orig_width / self.resized_width

    def restore(self, disp_net: np.ndarray, scale_values: bool = True) -> np.ndarray:
        """Map a network-resolution map back to the original image.

        Args:
            disp_net: net_height × net_width map; a disparity in network pixels, or any
                per-pixel quantity (e.g. confidence) with ``scale_values=False``.
            scale_values: multiply the values by :attr:`scale` (original_width /
                resized_width), as disparities need; False only crops and resamples.

        Returns:
            orig_height × orig_width float32 map (bilinear resampling); disparities in
            original pixels when ``scale_values``.
        """
        disp_net = np.asarray(disp_net)
        if disp_net.ndim != 2 or disp_net.shape != (self.net_height, self.net_width):
            raise ValueError(f"Frame.restore: expected a {self.net_height}x{self.net_width} map, "
                             f"got shape {disp_net.shape}")
        disp = disp_net[: self.resized_height, : self.resized_width].astype(np.float32)
        if (self.resized_height, self.resized_width) != (self.orig_height, self.orig_width):
            disp = cv2.resize(disp, (self.orig_width, self.orig_height),
                              interpolation=cv2.INTER_LINEAR)
            if scale_values:
                disp = disp * np.float32(self.scale)
        return np.ascontiguousarray(disp, dtype=np.float32)


class StereoPreprocessor:
    """Resize keeping aspect ratio, pad to the divisor, and remember how to map back.

    Args:
        size_divisor: network size divisor (``model.size_divisor``); the padded size is a
            multiple of it.
        input_size: fixed network input (H, W) (both multiples of ``size_divisor``), e.g. for
            a static ONNX/TensorRT engine: the image is scaled to fit inside it (aspect kept,
            never larger than (H, W)) and padded on the right/bottom to exactly (H, W).
        max_width: if given (and no ``input_size``), images wider than this are scaled down to
            this width (aspect kept); then padded up to multiples of ``size_divisor``.

    Padding replicates the border pixels (right and bottom).
    """

    def __init__(self, size_divisor: int, input_size: Optional[Tuple[int, int]] = None,
                 max_width: Optional[int] = None) -> None:
        if size_divisor <= 0:
            raise ValueError(f"StereoPreprocessor: size_divisor must be positive, "
                             f"got {size_divisor}")
        if input_size is not None:
            h, w = (int(v) for v in input_size)
            if h <= 0 or w <= 0 or h % size_divisor or w % size_divisor:
                raise ValueError(f"StereoPreprocessor: input_size {input_size} must be positive "
                                 f"multiples of size_divisor {size_divisor}")
            input_size = (h, w)
        if max_width is not None and max_width <= 0:
            raise ValueError(f"StereoPreprocessor: max_width must be positive, got {max_width}")
        self.size_divisor = int(size_divisor)
        self.input_size = input_size
        self.max_width = None if max_width is None else int(max_width)

    def _resized_size(self, h: int, w: int) -> Tuple[int, int]:
        if self.input_size is not None:
            nh, nw = self.input_size
            s = min(nh / h, nw / w)
            return min(nh, max(1, round(h * s))), min(nw, max(1, round(w * s)))
        if self.max_width is not None and w > self.max_width:
            s = self.max_width / w
            return max(1, round(h * s)), self.max_width
        return h, w

    def prepare(self, left: np.ndarray, right: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Frame]:
        """Prepare a stereo pair for the network.

        Args:
            left, right: H×W, H×W×1 or H×W×3 images (uint8, uint16 or float in [0, 1]), same size.

        Returns:
            ``(left, right, frame)``: net_H×net_W×3 float32 RGB arrays in [0, 1] and the
            :class:`Frame` that maps a network disparity back to the original image.

        Raises:
            ValueError: empty images, unsupported dtype/channels, or left/right size mismatch.
        """
        left_f = to_float_rgb(left, "left image")
        right_f = to_float_rgb(right, "right image")
        if left_f.shape != right_f.shape:
            raise ValueError(f"left/right size mismatch: left is "
                             f"{left_f.shape[0]}x{left_f.shape[1]}, right is "
                             f"{right_f.shape[0]}x{right_f.shape[1]}")
        h, w = left_f.shape[:2]
        rh, rw = self._resized_size(h, w)
        if (rh, rw) != (h, w):
            interp = cv2.INTER_AREA if rw < w else cv2.INTER_LINEAR
            left_f = cv2.resize(left_f, (rw, rh), interpolation=interp)
            right_f = cv2.resize(right_f, (rw, rh), interpolation=interp)
        if self.input_size is not None:
            nh, nw = self.input_size
        else:
            d = self.size_divisor
            nh, nw = -(-rh // d) * d, -(-rw // d) * d
        pad = ((0, nh - rh), (0, nw - rw), (0, 0))
        left_f = np.ascontiguousarray(np.pad(left_f, pad, mode="edge"), dtype=np.float32)
        right_f = np.ascontiguousarray(np.pad(right_f, pad, mode="edge"), dtype=np.float32)
        frame = Frame(orig_height=h, orig_width=w, resized_height=rh, resized_width=rw,
                      net_height=nh, net_width=nw)
        return left_f, right_f, frame
