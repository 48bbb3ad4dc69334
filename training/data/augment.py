"""Stereo augmentation on numpy sample dicts (before conversion to tensors).

The full recipe follows RAFT-Stereo (``core/utils/augmentor.py``) and CREStereo (``dataset.py``),
written from their descriptions; each step is off unless its probability / range says otherwise,
so ``AugmentConfig()`` is the old crop-plus-colour behaviour. Order of the steps:

1. **swap-and-flip** (``swap_flip_prob``): the right view mirrored becomes the left and vice
   versa; the new left disparity is the mirrored right-view disparity, so it needs a sample with
   ``disparity_right`` (the synthetic generator has one) and is skipped otherwise.
2. **scale and stretch** (``scale_prob``): both views resized by ``2^U(scale)`` with an extra
   ``2^U(stretch)`` per axis; disparity is resized (nearest: no flying pixels at depth edges) and
   multiplied by the horizontal factor. The scale is raised where needed so the image still
   covers ``crop_size``.
3. **crop**: one window for left, right, disparity and masks; the right window may move by up to
   ``max_vertical_shift`` whole rows.
4. **right-image warp** (``right_warp_prob``): a rotation of up to ``right_rotation_deg``
   degrees about the image centre plus a sub-pixel vertical shift of up to
   ``right_vertical_shift`` pixels (imperfect rectification); the disparity is left as it is.
5. **colour**: brightness, contrast, saturation, gamma, hue; the same for both views or, with
   ``asymmetric_prob``, independent per view.
6. **blur** (``blur_prob`` per view, independent): Gaussian with sigma ``U(blur_sigma)`` pixels.
7. **noise** (``noise_prob`` per view): Gaussian with sigma ``U(0, noise_std)`` grey levels.
8. **eraser** (``eraser_prob``): 1..``eraser_max_count`` rectangles of side ``U(eraser_size)``
   pixels in the right image, filled with its mean colour (occlusion without a disparity change).
9. **vertical flip** (``vflip_prob``): both views and the disparity upside down (rectification is
   kept).

Every random draw comes from the ``numpy.random.Generator`` (or ``torch.Generator``) passed in,
so a sample's augmentation is a pure function of that generator's state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import cv2
import numpy as np
import torch

__all__ = ["AugmentConfig", "StereoAugment", "random_crop", "color_jitter", "as_numpy_rng",
           "swap_flip", "scale_stretch", "warp_right", "blur_noise", "erase_right",
           "vertical_flip"]

Rng = Union[np.random.Generator, torch.Generator]
_MASK_KEYS = ("valid", "valid_noc")
_GREY = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (ranges are inclusive ``(low, high)``; probabilities in [0, 1])."""

    crop_size: Optional[Tuple[int, int]] = None  # (H, W) random crop in pixels; None: no crop
    max_vertical_shift: int = 0  # right crop window moved by up to ± this many rows (0: none)
    color_prob: float = 1.0  # probability of applying photometric jitter to a sample
    asymmetric_prob: float = 0.2  # probability that left and right get independent jitter
    brightness: Tuple[float, float] = (0.8, 1.2)  # multiplicative brightness
    contrast: Tuple[float, float] = (0.8, 1.2)  # contrast around the image mean grey
    saturation: Tuple[float, float] = (0.8, 1.2)  # colour saturation (1 = unchanged, 0 = grey)
    gamma: Tuple[float, float] = (0.8, 1.2)  # gamma exponent on [0, 1] intensities
    hue: float = 0.0  # hue rotation up to ± this fraction of the colour circle (RAFT: 0.16)
    swap_flip_prob: float = 0.0  # swap the views and mirror them (needs disparity_right)
    scale_prob: float = 0.0  # probability of a random resize before the crop
    scale: Tuple[float, float] = (-0.2, 0.4)  # log2 range of the resize factor
    stretch_prob: float = 0.8  # probability of an extra per-axis stretch when resizing
    stretch: Tuple[float, float] = (-0.2, 0.2)  # log2 range of the per-axis stretch
    right_warp_prob: float = 0.0  # probability of rotating / shifting the right image
    right_rotation_deg: float = 0.1  # max |rotation| of the right image, degrees
    right_vertical_shift: float = 2.0  # max |sub-pixel vertical shift| of the right image, px
    blur_prob: float = 0.0  # per-view probability of a Gaussian blur
    blur_sigma: Tuple[float, float] = (0.1, 1.0)  # blur sigma range, pixels
    noise_prob: float = 0.0  # per-view probability of additive Gaussian noise
    noise_std: float = 5.0  # max noise sigma, grey levels (0..255)
    eraser_prob: float = 0.0  # probability of erasing rectangles of the right image
    eraser_size: Tuple[int, int] = (50, 100)  # side range of an erased rectangle, pixels
    eraser_max_count: int = 2  # 1..this many rectangles
    vflip_prob: float = 0.0  # probability of flipping both views upside down

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AugmentConfig":
        """Build from a plain dict (e.g. YAML), rejecting unknown keys."""
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"augment: unknown keys {unknown}; valid keys: {sorted(names)}")
        kwargs = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in data.items()}
        return cls(**kwargs)

    def __post_init__(self) -> None:
        for name in ("color_prob", "asymmetric_prob", "swap_flip_prob", "scale_prob",
                     "stretch_prob", "right_warp_prob", "blur_prob", "noise_prob",
                     "eraser_prob", "vflip_prob"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"augment.{name} must be a probability in [0, 1], got {value}")
        for name in ("brightness", "contrast", "saturation", "gamma", "scale", "stretch",
                     "blur_sigma", "eraser_size"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"augment.{name}: low {lo} > high {hi}")


def as_numpy_rng(rng: Rng) -> np.random.Generator:
    """A numpy Generator; a ``torch.Generator`` is turned into one by drawing a seed from it."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=rng).item())
        return np.random.default_rng(seed)
    raise TypeError(f"rng must be a numpy or torch Generator, got {type(rng).__name__}")


def _pad_to(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    ph, pw = max(h - arr.shape[0], 0), max(w - arr.shape[1], 0)
    if ph == 0 and pw == 0:
        return arr
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (arr.ndim - 2)
    return np.pad(arr, pad)  # zeros: black image, disparity 0, masks False


def random_crop(sample: Dict[str, Any], size: Tuple[int, int], rng: Rng,
                max_vertical_shift: int = 0) -> Dict[str, Any]:
    """Crop left/right/disparity/masks with one random window of ``size`` = (H, W) pixels.

    Images smaller than the crop are zero-padded at the bottom/right first (padding is
    invalid). With ``max_vertical_shift`` > 0 the right window moves by a random number of rows
    in ``[-max_vertical_shift, max_vertical_shift]`` (clamped to the image).

    Returns:
        A new dict (``meta`` gets ``crop`` = (y0, x0, H, W)); other keys are kept as they are.
    """
    g = as_numpy_rng(rng)
    ch, cw = int(size[0]), int(size[1])
    if ch <= 0 or cw <= 0:
        raise ValueError(f"random_crop: crop size must be positive, got {size}")
    h, w = sample["left"].shape[:2]
    H, W = max(h, ch), max(w, cw)
    y0 = int(g.integers(0, H - ch + 1))
    x0 = int(g.integers(0, W - cw + 1))
    dy = int(g.integers(-max_vertical_shift, max_vertical_shift + 1)) if max_vertical_shift else 0
    ry0 = min(max(y0 + dy, 0), H - ch)
    out = dict(sample)
    for key in ("left", "right", "disparity", "disparity_right") + _MASK_KEYS:
        if key not in sample:
            continue
        arr = _pad_to(np.asarray(sample[key]), H, W)
        top = ry0 if key in ("right", "disparity_right") else y0
        out[key] = np.ascontiguousarray(arr[top:top + ch, x0:x0 + cw])
    out["meta"] = dict(sample.get("meta", {}), crop=(y0, x0, ch, cw))
    return out


def _jitter_params(g: np.random.Generator, cfg: AugmentConfig) -> Tuple[float, ...]:
    params = tuple(float(g.uniform(lo, hi))
                   for lo, hi in (cfg.brightness, cfg.contrast, cfg.saturation, cfg.gamma))
    return params + (float(g.uniform(-cfg.hue, cfg.hue)) if cfg.hue > 0 else 0.0,)


def _hue_matrix(turn: float) -> np.ndarray:
    """3×3 RGB matrix rotating the chroma plane (YIQ) by ``turn`` of a full circle."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                       [0.211, -0.523, 0.312]], np.float32)
    c, s = math.cos(2 * math.pi * turn), math.sin(2 * math.pi * turn)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)
    return (np.linalg.inv(to_yiq) @ rot @ to_yiq).astype(np.float32)


def _apply_jitter(img: np.ndarray, params: Tuple[float, ...]) -> np.ndarray:
    brightness, contrast, saturation, gamma, hue = params
    x = img.astype(np.float32) * np.float32(brightness / 255.0)
    grey = x @ _GREY
    x = (x - grey.mean()) * np.float32(contrast) + grey.mean()
    grey = (x @ _GREY)[:, :, None]
    x = grey + (x - grey) * np.float32(saturation)
    if hue:
        x = x @ _hue_matrix(hue).T
    x = np.clip(x, 0.0, 1.0) ** np.float32(gamma)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def color_jitter(sample: Dict[str, Any], cfg: AugmentConfig, rng: Rng) -> Dict[str, Any]:
    """Photometric jitter of the uint8 RGB ``left``/``right`` images (same or independent)."""
    g = as_numpy_rng(rng)
    if g.random() >= cfg.color_prob:
        return sample
    p_left = _jitter_params(g, cfg)
    p_right = _jitter_params(g, cfg) if g.random() < cfg.asymmetric_prob else p_left
    out = dict(sample)
    out["left"] = _apply_jitter(sample["left"], p_left)
    out["right"] = _apply_jitter(sample["right"], p_right)
    return out


def swap_flip(sample: Dict[str, Any]) -> Dict[str, Any]:
    """Swap the views and mirror them: the mirrored right view becomes the left one.

    The new left disparity is the mirrored ``disparity_right`` (right pixel ``x`` matches left
    pixel ``x + d``, so after mirroring it matches the new right pixel ``x − d``). Masks of the
    right view are unknown: ``valid`` becomes the finite, positive new disparity and
    ``valid_noc`` is dropped (it would be the old view's occlusion mask).

    Raises:
        KeyError: the sample has no ``disparity_right``.
    """
    if "disparity_right" not in sample:
        raise KeyError("swap_flip needs the right view's disparity ('disparity_right')")
    out = dict(sample)
    out["left"] = np.ascontiguousarray(sample["right"][:, ::-1])
    out["right"] = np.ascontiguousarray(sample["left"][:, ::-1])
    out["disparity"] = np.ascontiguousarray(sample["disparity_right"][:, ::-1])
    out["disparity_right"] = np.ascontiguousarray(sample["disparity"][:, ::-1])
    out["valid"] = np.isfinite(out["disparity"]) & (out["disparity"] > 0)
    out.pop("valid_noc", None)
    return out


def scale_stretch(sample: Dict[str, Any], cfg: AugmentConfig, g: np.random.Generator
                  ) -> Dict[str, Any]:
    """Resize both views by ``2^U(scale)`` (times ``2^U(stretch)`` per axis, p=stretch_prob).

    Disparities are resized with nearest-neighbour sampling and multiplied by the horizontal
    factor; masks are resized nearest. Factors are raised so the result still covers
    ``cfg.crop_size`` (plus 8 pixels) when one is set.
    """
    h, w = sample["left"].shape[:2]
    log_s = g.uniform(*cfg.scale)
    sx = sy = 2.0 ** log_s
    if g.random() < cfg.stretch_prob:
        sx *= 2.0 ** g.uniform(*cfg.stretch)
        sy *= 2.0 ** g.uniform(*cfg.stretch)
    if cfg.crop_size is not None:
        sy = max(sy, (cfg.crop_size[0] + 8) / h)
        sx = max(sx, (cfg.crop_size[1] + 8) / w)
    nh, nw = max(int(round(h * sy)), 1), max(int(round(w * sx)), 1)
    if (nh, nw) == (h, w):
        return sample
    sx = nw / w  # the factor actually applied to x coordinates (and disparities)
    out = dict(sample)
    for key in ("left", "right"):
        out[key] = cv2.resize(sample[key], (nw, nh), interpolation=cv2.INTER_LINEAR)
    for key in ("disparity", "disparity_right"):
        if key in sample:
            out[key] = cv2.resize(np.asarray(sample[key], np.float32), (nw, nh),
                                  interpolation=cv2.INTER_NEAREST) * np.float32(sx)
    for key in _MASK_KEYS:
        if key in sample:
            out[key] = cv2.resize(np.asarray(sample[key], np.uint8), (nw, nh),
                                  interpolation=cv2.INTER_NEAREST).astype(bool)
    return out


def warp_right(sample: Dict[str, Any], cfg: AugmentConfig, g: np.random.Generator
               ) -> Dict[str, Any]:
    """Rotate the right image by ``U(±right_rotation_deg)`` degrees about its centre and shift it
    vertically by ``U(±right_vertical_shift)`` pixels (CREStereo); the disparity is kept."""
    img = sample["right"]
    h, w = img.shape[:2]
    angle = g.uniform(-cfg.right_rotation_deg, cfg.right_rotation_deg)
    dy = g.uniform(-cfg.right_vertical_shift, cfg.right_vertical_shift)
    mat = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    mat[1, 2] += dy
    out = dict(sample)
    out["right"] = cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
    out.pop("disparity_right", None)  # no longer the exact right-view disparity
    return out


def blur_noise(sample: Dict[str, Any], cfg: AugmentConfig, g: np.random.Generator
               ) -> Dict[str, Any]:
    """Independent Gaussian blur and additive Gaussian noise per view (uint8 in, uint8 out)."""
    out = dict(sample)
    for key in ("left", "right"):
        img = out[key]
        blur = g.random() < cfg.blur_prob
        sigma_b = g.uniform(*cfg.blur_sigma)
        noisy = g.random() < cfg.noise_prob
        sigma_n = g.uniform(0.0, cfg.noise_std)
        if blur:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma_b))
        if noisy and sigma_n > 0:
            noise = g.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma_n)
            img = np.clip(np.rint(img.astype(np.float32) + noise), 0, 255).astype(np.uint8)
        out[key] = img
    return out


def erase_right(sample: Dict[str, Any], cfg: AugmentConfig, g: np.random.Generator
                ) -> Dict[str, Any]:
    """Fill 1..``eraser_max_count`` random rectangles of the right image with its mean colour."""
    img = sample["right"].copy()
    h, w = img.shape[:2]
    mean = img.reshape(-1, img.shape[2]).mean(axis=0).astype(img.dtype)
    for _ in range(int(g.integers(1, max(cfg.eraser_max_count, 1) + 1))):
        x0, y0 = int(g.integers(0, w)), int(g.integers(0, h))
        dx = int(g.integers(cfg.eraser_size[0], cfg.eraser_size[1] + 1))
        dy = int(g.integers(cfg.eraser_size[0], cfg.eraser_size[1] + 1))
        img[y0:y0 + dy, x0:x0 + dx] = mean
    out = dict(sample)
    out["right"] = img
    return out


def vertical_flip(sample: Dict[str, Any]) -> Dict[str, Any]:
    """Both views, disparities and masks upside down (rows reversed; epipolar lines kept)."""
    out = dict(sample)
    for key in ("left", "right", "disparity", "disparity_right") + _MASK_KEYS:
        if key in sample:
            out[key] = np.ascontiguousarray(np.asarray(sample[key])[::-1])
    return out


class StereoAugment:
    """Callable ``(sample, rng) -> sample`` applying the steps of the module docstring in order.

    Args:
        cfg: an :class:`AugmentConfig` or a dict of its fields.
    """

    def __init__(self, cfg: Union[AugmentConfig, Mapping[str, Any], None] = None) -> None:
        if cfg is None:
            cfg = AugmentConfig()
        elif not isinstance(cfg, AugmentConfig):
            cfg = AugmentConfig.from_dict(cfg)
        self.cfg = cfg

    def __call__(self, sample: Dict[str, Any], rng: Rng) -> Dict[str, Any]:
        g = as_numpy_rng(rng)
        c = self.cfg
        if c.swap_flip_prob > 0 and g.random() < c.swap_flip_prob and "disparity_right" in sample:
            sample = swap_flip(sample)
        if c.scale_prob > 0 and g.random() < c.scale_prob:
            sample = scale_stretch(sample, c, g)
        if c.crop_size is not None:
            sample = random_crop(sample, c.crop_size, g, c.max_vertical_shift)
        if c.right_warp_prob > 0 and g.random() < c.right_warp_prob:
            sample = warp_right(sample, c, g)
        sample = color_jitter(sample, c, g)
        if c.blur_prob > 0 or c.noise_prob > 0:
            sample = blur_noise(sample, c, g)
        if c.eraser_prob > 0 and g.random() < c.eraser_prob:
            sample = erase_right(sample, c, g)
        if c.vflip_prob > 0 and g.random() < c.vflip_prob:
            sample = vertical_flip(sample)
        return sample

    def __repr__(self) -> str:
        return f"StereoAugment({self.cfg})"
