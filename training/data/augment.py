"""Stereo augmentation on numpy sample dicts (before conversion to tensors).

Geometric changes keep the pair rectified: one crop window is shared by left, right, disparity
and masks (disparity values are unchanged by a crop). An optional small vertical shift of the
right window simulates imperfect rectification (off by default). Photometric jitter
(brightness, contrast, saturation, gamma) is drawn once for both views or, with probability
``asymmetric_prob``, independently per view.

Every random draw comes from the ``numpy.random.Generator`` (or ``torch.Generator``) passed in,
so a sample's augmentation is a pure function of that generator's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["AugmentConfig", "StereoAugment", "random_crop", "color_jitter", "as_numpy_rng"]

Rng = Union[np.random.Generator, torch.Generator]
_MASK_KEYS = ("valid", "valid_noc")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (ranges are inclusive ``(low, high)`` multipliers)."""

    crop_size: Optional[Tuple[int, int]] = None  # (H, W) random crop in pixels; None: no crop
    max_vertical_shift: int = 0  # right crop window moved by up to ± this many rows (0: none)
    color_prob: float = 1.0  # probability of applying photometric jitter to a sample
    asymmetric_prob: float = 0.2  # probability that left and right get independent jitter
    brightness: Tuple[float, float] = (0.8, 1.2)  # multiplicative brightness
    contrast: Tuple[float, float] = (0.8, 1.2)  # contrast around the image mean grey
    saturation: Tuple[float, float] = (0.8, 1.2)  # colour saturation (1 = unchanged)
    gamma: Tuple[float, float] = (0.8, 1.2)  # gamma exponent on [0, 1] intensities

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AugmentConfig":
        """Build from a plain dict (e.g. YAML), rejecting unknown keys."""
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"augment: unknown keys {unknown}; valid keys: {sorted(names)}")
        kwargs = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in data.items()}
        return cls(**kwargs)


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
    for key in ("left", "right", "disparity") + _MASK_KEYS:
        if key not in sample:
            continue
        arr = _pad_to(np.asarray(sample[key]), H, W)
        top = ry0 if key == "right" else y0
        out[key] = np.ascontiguousarray(arr[top:top + ch, x0:x0 + cw])
    out["meta"] = dict(sample.get("meta", {}), crop=(y0, x0, ch, cw))
    return out


def _jitter_params(g: np.random.Generator, cfg: AugmentConfig) -> Tuple[float, ...]:
    return tuple(float(g.uniform(lo, hi))
                 for lo, hi in (cfg.brightness, cfg.contrast, cfg.saturation, cfg.gamma))


def _apply_jitter(img: np.ndarray, params: Tuple[float, ...]) -> np.ndarray:
    brightness, contrast, saturation, gamma = params
    x = img.astype(np.float32) * np.float32(brightness / 255.0)
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - grey.mean()) * np.float32(contrast) + grey.mean()
    grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
    x = grey + (x - grey) * np.float32(saturation)
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


class StereoAugment:
    """Callable ``(sample, rng) -> sample``: random crop, then photometric jitter.

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
        if self.cfg.crop_size is not None:
            sample = random_crop(sample, self.cfg.crop_size, g, self.cfg.max_vertical_shift)
        return color_jitter(sample, self.cfg, g)

    def __repr__(self) -> str:
        return f"StereoAugment({self.cfg})"
