"""Procedural synthetic stereo pairs with exact ground truth (the default data everywhere).

Each scene is a textured slanted background plane plus a few textured occluding objects
(ellipses, rotated rectangles, convex polygons), each a plane in disparity space
``d(x, y) = a + b·x + c·y`` (left-image pixel coordinates). Textures are attached to the
surfaces, so both views are rendered exactly:

* left view: every surface is evaluated at integer pixels and a z-buffer keeps the largest
  disparity (the nearest surface);
* right view: for every right pixel ``xr`` and surface, the left coordinate that maps onto it is
  solved in closed form, ``x = (xr + a + c·y) / (1 − b)``, the surface's texture is sampled
  there (linear interpolation) and again the largest disparity wins.

Hence ``right(y, x − d(y, x)) = left(y, x)`` holds for every left pixel that is visible in the
right image, up to photometric noise, an asymmetric gain/bias and sub-pixel interpolation.
Occluded pixels (and pixels whose match leaves the right image) are ``False`` in ``valid_noc``.
Disparity ranges scale with the image width (``max_disparity_fraction``) so that small images
stay learnable. Textures are procedural unless a ``texture_fn`` is given (e.g. photo patches,
``training.data.photo_stereo.PhotoLayeredStereo``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import cv2
import numpy as np

__all__ = ["SyntheticStereo", "CameraResponse", "split_seed", "procedural_texture", "TextureFn"]

# (rng, height, width, weak) -> height×width×3 float32 texture in about [0, 255]
TextureFn = Callable[[np.random.Generator, int, int, bool], np.ndarray]

_NOISE_PAD = 32  # margin of the photometric noise bank, pixels
_SPLIT_OFFSETS = {None: 0, "train": 0, "val": 1_000_003, "test": 2_000_003}


def split_seed(seed: int, split: Optional[str]) -> int:
    """Seed used for a split, so train/val/test synthetic data never share scenes.

    Args:
        seed: base seed (>= 0).
        split: ``None``/``"train"`` (the base seed), ``"val"`` or ``"test"``.
    """
    if split not in _SPLIT_OFFSETS:
        raise ValueError(f"unknown synthetic split {split!r}; expected train, val or test")
    return int(seed) + _SPLIT_OFFSETS[split]


# --------------------------------------------------------------------------------- shapes
class _Shape:
    """A 2D region in left-image pixel coordinates, evaluated analytically (vectorized)."""

    def __init__(self, rng: np.random.Generator, cx: float, cy: float, radius: float,
                 thin: bool = False) -> None:
        """``radius``: half size (pixels). ``thin``: a long, narrow ellipse, rectangle or wedge
        (a leaf, pole or branch; the wedge tapers from its base at ``u = −rx`` to a point at
        ``u = rx``): half length ``radius · U(1, 2)``, half width 3–15 % of that and at least
        1 pixel."""
        kinds = ("ellipse", "rectangle", "wedge") if thin else ("ellipse", "rectangle", "polygon")
        self.kind = kinds[int(rng.integers(0, len(kinds)))]
        self.cx, self.cy = cx, cy
        theta = rng.uniform(0.0, math.pi)
        self.cos, self.sin = math.cos(theta), math.sin(theta)
        if thin:
            self.rx = radius * rng.uniform(1.0, 2.0)
            self.ry = max(1.0, self.rx * rng.uniform(0.03, 0.15))
        else:
            self.rx = radius
            self.ry = radius * rng.uniform(0.45, 1.0)
        if self.kind == "polygon":
            n = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0.0, 2 * math.pi, n))
            radii = radius * rng.uniform(0.6, 1.0, n)
            self.vx = cx + radii * np.cos(angles)
            self.vy = cy + radii * np.sin(angles)
            self.extent = (radius, radius)
        else:
            # Axis-aligned half extents of the rotated ellipse/rectangle (safe upper bound).
            ex = abs(self.rx * self.cos) + abs(self.ry * self.sin)
            ey = abs(self.rx * self.sin) + abs(self.ry * self.cos)
            self.extent = (ex, ey)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean mask for points (x, y) (broadcastable float arrays, pixels)."""
        if self.kind == "polygon":
            inside = np.ones(np.broadcast(x, y).shape, dtype=bool)
            n = len(self.vx)
            for i in range(n):  # counter-clockwise vertices: inside = left of every edge
                x0, y0 = self.vx[i], self.vy[i]
                x1, y1 = self.vx[(i + 1) % n], self.vy[(i + 1) % n]
                inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
            return inside
        dx, dy = x - self.cx, y - self.cy
        u = dx * self.cos + dy * self.sin
        v = dy * self.cos - dx * self.sin
        if self.kind == "ellipse":
            return (u / self.rx) ** 2 + (v / self.ry) ** 2 <= 1.0
        if self.kind == "wedge":
            return (np.abs(u) <= self.rx) & (np.abs(v) <= self.ry * (self.rx - u) / self.rx)
        return (np.abs(u) <= self.rx) & (np.abs(v) <= self.ry)


# ------------------------------------------------------------------------------- textures
def _upsample_noise(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize a coarse noise grid to h×w (keeps a trailing channel axis)."""
    up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
    return up[:, :, None] if up.ndim == 2 else up


def _multiscale_noise(rng: np.random.Generator, h: int, w: int, levels: int) -> np.ndarray:
    """Sum of noise octaves with cells 2, 4, ..., 2**levels pixels, h×w×1 float32, std ~1.

    Built coarse to fine (upsample ×2, add the next octave), so the cost is about one
    full-resolution resize.
    """
    weights = rng.uniform(0.3, 1.0, levels).astype(np.float32)
    weights[0] = max(weights[0], 0.6)  # keep fine (2 px) detail for pixel-accurate matching
    weights /= np.float32(np.sqrt(np.sum(weights ** 2)))
    acc: Optional[np.ndarray] = None
    for lvl in range(levels, 0, -1):
        cell = 2 ** lvl
        gh, gw = h // cell + 2, w // cell + 2
        octave = rng.standard_normal((gh, gw), dtype=np.float32) * weights[lvl - 1]
        if acc is not None:
            octave += cv2.resize(acc, (gw, gh), interpolation=cv2.INTER_LINEAR)
        acc = octave
    assert acc is not None
    return _upsample_noise(acc * np.float32(1.2), h, w)


def _texture(rng: np.random.Generator, h: int, w: int, weak: bool) -> np.ndarray:
    """A random colour texture, h×w×3 float32 in about [0, 255]."""
    base = rng.uniform(50.0, 205.0, 3).astype(np.float32)
    amp = rng.uniform(3.0, 8.0) if weak else rng.uniform(35.0, 70.0)
    lum = _multiscale_noise(rng, h, w, 5)
    kind = int(rng.integers(0, 4)) if not weak else 0
    if kind == 1:  # stripes plus noise
        period = rng.uniform(4.0, 24.0)
        theta = rng.uniform(0.0, math.pi)
        yy = np.arange(h, dtype=np.float32)[:, None] * np.float32(math.sin(theta))
        xx = np.arange(w, dtype=np.float32)[None, :] * np.float32(math.cos(theta))
        phase = (xx + yy) * np.float32(2 * math.pi / period) + np.float32(rng.uniform(0, 7))
        lum = 0.6 * lum + 1.1 * np.sin(phase)[:, :, None]
    tint = rng.uniform(0.6, 1.3, 3).astype(np.float32)
    cell = int(rng.choice([8, 16]))
    chroma = rng.standard_normal((h // cell + 2, w // cell + 2, 3), dtype=np.float32)
    tex = lum * (np.float32(amp) * tint)
    tex += _upsample_noise(chroma, (h // cell + 2) * cell, (w // cell + 2) * cell)[:h, :w] * (
        np.float32(0.35 * amp))
    tex += base
    if kind == 2:  # random blobs of random colour
        n_blobs = min(400, max(1, int(h * w / 600)))
        xs = rng.integers(0, w, n_blobs)
        ys = rng.integers(0, h, n_blobs)
        rs = rng.integers(2, 11, n_blobs)
        cols = rng.uniform(20.0, 235.0, (n_blobs, 3))
        for x, y, r, col in zip(xs, ys, rs, cols):
            cv2.circle(tex, (int(x), int(y)), int(r), tuple(float(c) for c in col), -1)
    return tex


procedural_texture: TextureFn = _texture  # public name of the default surface texture


class CameraResponse:
    """Mixin: per-view camera response (gain, bias, noise) for generators that have ``seed``,
    ``height``, ``width``, ``gain_jitter``, ``bias_jitter``, ``noise_std`` and ``_noise_bank``."""

    seed: int
    height: int
    width: int
    gain_jitter: float
    bias_jitter: float
    noise_std: float
    _noise_bank: Optional[np.ndarray]

    def _noise_tile(self) -> np.ndarray:
        """A fixed bank of unit Gaussian noise (from ``seed``), cropped at random per view."""
        if self._noise_bank is None:
            self._noise_bank = noise_bank(self.seed, self.height, self.width)
        return self._noise_bank

    def _photometric(self, rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
        """Per-view gain/bias (slightly per channel) and Gaussian noise; returns uint8."""
        return photometric_view(rng, img, self._noise_tile, self.gain_jitter, self.bias_jitter,
                                self.noise_std)


# ------------------------------------------------------------------------------ generator
class SyntheticStereo(CameraResponse):
    """Deterministic procedural stereo pairs with exact disparity.

    Args:
        height: image height H (pixels).
        width: image width W (pixels).
        max_disparity: the network's disparity range (pixels); all GT is below it.
        seed: base seed; ``sample(i)`` depends only on ``(seed, i)`` and the settings.
        length: ``len(self)`` (number of samples, any index >= 0 works with ``sample``).
        max_disparity_fraction: GT is at most ``min(max_disparity − 1, fraction · W)`` pixels.
        min_disparity_fraction: if given, each scene draws its own fraction uniformly from
            ``[min_disparity_fraction, max_disparity_fraction]`` (near and far scenes at one
            image size); ``None`` (default): every scene uses the maximum (bit-identical to
            earlier versions).
        num_objects: inclusive (min, max) number of foreground objects.
        noise_std: photometric noise, grey levels (0..255 scale).
        gain_jitter: relative gain difference range between views (e.g. 0.06 = ±6 %).
        bias_jitter: additive bias range per view, grey levels.
        weak_texture_prob: probability that a surface gets a low-contrast texture.
        thin_object_prob: probability that a foreground object is thin and elongated (leaves,
            poles, branches: see ``_Shape``); 0 (default) draws none and keeps the output
            bit-identical to earlier versions.
        texture_fn: optional ``(rng, h, w, weak) -> h×w×3 float32`` (about [0, 255]) called
            instead of the procedural texture for every surface; ``None`` (default) keeps the
            procedural textures (bit-identical output).
    """

    def __init__(
        self,
        height: int = 256,
        width: int = 512,
        max_disparity: int = 192,
        seed: int = 0,
        length: int = 1000,
        *,
        max_disparity_fraction: float = 0.25,
        min_disparity_fraction: Optional[float] = None,
        num_objects: Tuple[int, int] = (2, 6),
        noise_std: float = 1.5,
        gain_jitter: float = 0.06,
        bias_jitter: float = 6.0,
        weak_texture_prob: float = 0.1,
        thin_object_prob: float = 0.0,
        texture_fn: Optional[TextureFn] = None,
    ) -> None:
        if height < 16 or width < 16:
            raise ValueError(
                f"SyntheticStereo: image must be at least 16x16, got {height}x{width}")
        if seed < 0 or length < 0:
            raise ValueError(f"SyntheticStereo: seed and length must be >= 0 ({seed}, {length})")
        if not 0 <= num_objects[0] <= num_objects[1]:
            raise ValueError(f"SyntheticStereo: bad num_objects {num_objects}")
        self.height, self.width = int(height), int(width)
        self.max_disparity = int(max_disparity)
        self.seed, self.length = int(seed), int(length)
        self.max_disparity_fraction = float(max_disparity_fraction)
        if min_disparity_fraction is not None and not \
                0 < float(min_disparity_fraction) <= self.max_disparity_fraction:
            raise ValueError(f"SyntheticStereo: min_disparity_fraction must be in (0, "
                             f"max_disparity_fraction = {max_disparity_fraction}], got "
                             f"{min_disparity_fraction}")
        self.min_disparity_fraction = None if min_disparity_fraction is None else \
            float(min_disparity_fraction)
        self.num_objects = (int(num_objects[0]), int(num_objects[1]))
        self.noise_std = float(noise_std)
        self.gain_jitter = float(gain_jitter)
        self.bias_jitter = float(bias_jitter)
        self.weak_texture_prob = float(weak_texture_prob)
        if not 0.0 <= float(thin_object_prob) <= 1.0:
            raise ValueError(f"SyntheticStereo: thin_object_prob must be in [0, 1], got "
                             f"{thin_object_prob}")
        self.thin_object_prob = float(thin_object_prob)
        self.texture_fn = texture_fn
        self._noise_bank: Optional[np.ndarray] = None
        self.disparity_cap = min(self.max_disparity - 1.0, self.max_disparity_fraction * width)
        low = self.disparity_cap if self.min_disparity_fraction is None else min(
            self.disparity_cap, self.min_disparity_fraction * width)
        if low < 4.0:
            raise ValueError(
                f"SyntheticStereo: disparity cap {low:.1f} px is too small "
                f"(max_disparity={max_disparity}, width={width})"
            )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(f"SyntheticStereo index {index} out of range 0..{self.length - 1}")
        return self.sample(index % self.length)

    def __repr__(self) -> str:
        return (f"SyntheticStereo(height={self.height}, width={self.width}, max_disparity="
                f"{self.max_disparity}, seed={self.seed}, length={self.length})")

    # ------------------------------------------------------------------------------ render
    def sample(self, index: int) -> Dict[str, Any]:
        """Generate sample ``index`` (deterministic in ``(seed, index)``).

        Returns:
            Dict with ``left``, ``right`` (H×W×3 uint8 RGB), ``disparity`` (H×W float32,
            left view, pixels, defined everywhere), ``disparity_right`` (H×W float32, the right
            view's disparity: right pixel ``x`` shows the left pixel ``x + d``; it makes
            swap-and-flip augmentation exact), ``valid`` (H×W bool, all True),
            ``valid_noc`` (H×W bool, False where occluded in / outside the right image) and
            ``meta`` (dataset, name, index, seed, num_objects).
        """
        if index < 0:
            raise ValueError(f"SyntheticStereo: index must be >= 0, got {index}")
        rng = np.random.default_rng([self.seed, int(index)])
        h, w, cap = self.height, self.width, self.disparity_cap
        if self.min_disparity_fraction is not None:  # this scene's own range
            cap = min(cap, float(rng.uniform(self.min_disparity_fraction,
                                             self.max_disparity_fraction)) * w)
        ys = np.arange(h, dtype=np.float32)[:, None]
        xs = np.arange(w, dtype=np.float32)[None, :]

        # Background: slanted plane with disparity lo..hi over the left image.
        lo = rng.uniform(0.03, 0.15) * cap
        hi = lo + rng.uniform(0.05, 0.35) * cap
        phi = rng.uniform(0.0, 2 * math.pi)
        gx, gy = math.cos(phi), math.sin(phi)
        corners = [gx * cx + gy * cy for cx in (0, w - 1) for cy in (0, h - 1)]
        gmin, gspan = min(corners), max(max(corners) - min(corners), 1e-6)
        b, c = (hi - lo) * gx / gspan, (hi - lo) * gy / gspan
        a = lo - (hi - lo) * gmin / gspan
        tex_w = int(math.ceil((w - 1 + a + max(0.0, c * (h - 1))) / (1.0 - b))) + 4
        tex = self._surface_texture(rng, h, max(tex_w, w), rng.random() < self.weak_texture_prob)
        disp_l = (a + b * xs + c * ys).astype(np.float32) + np.zeros((h, w), np.float32)
        img_l = tex[:, :w].copy()
        id_l = np.zeros((h, w), np.int16)
        x_src = ((xs + a + c * ys) / (1.0 - b)).astype(np.float32)
        y_map = np.broadcast_to(ys, (h, w)).astype(np.float32)
        disp_r = (a + b * x_src + c * ys).astype(np.float32)
        img_r = cv2.remap(tex, x_src, y_map, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        id_r = np.zeros((h, w), np.int16)

        n_obj = int(rng.integers(self.num_objects[0], self.num_objects[1] + 1))
        obj_lo = min(hi + 0.05 * cap, cap)
        for k in range(1, n_obj + 1):
            thin = self.thin_object_prob > 0.0 and rng.random() < self.thin_object_prob
            shape = _Shape(rng, rng.uniform(0, w), rng.uniform(0, h),
                           rng.uniform(0.08, 0.3) * min(h, w), thin=thin)
            d0 = rng.uniform(obj_lo, cap)
            ex, ey = shape.extent
            if thin:  # leaves and poles recede along their length: a slope along the axis
                slope = rng.uniform(-0.15, 0.15)  # px of disparity per px of image
                ob, oc = slope * shape.cos, slope * shape.sin
            else:
                ob, oc = (0.0, 0.0) if rng.random() < 0.5 else rng.uniform(-0.03, 0.03, 2)
            spread = abs(ob) * ex + abs(oc) * ey
            allowed = min(d0 - obj_lo, cap - d0)
            if spread > allowed:
                scale = allowed / spread
                ob, oc = ob * scale, oc * scale
            oa = d0 - ob * shape.cx - oc * shape.cy
            x0 = max(0, int(math.floor(shape.cx - ex)) - 2)
            x1 = int(math.ceil(shape.cx + ex)) + 3
            y0 = max(0, int(math.floor(shape.cy - ey)) - 2)
            y1 = min(h, int(math.ceil(shape.cy + ey)) + 3)
            if x1 <= x0 or y1 <= y0:
                continue
            otex = self._surface_texture(rng, y1 - y0, x1 - x0,
                                         rng.random() < self.weak_texture_prob)
            oys = ys[y0:y1]
            # Left view (only the part inside the image).
            lx1 = min(x1, w)
            if lx1 > x0:
                oxs = xs[:, x0:lx1]
                d = (oa + ob * oxs + oc * oys).astype(np.float32)
                win = shape.contains(oxs, oys) & (d > disp_l[y0:y1, x0:lx1])
                disp_l[y0:y1, x0:lx1][win] = d[win]
                img_l[y0:y1, x0:lx1][win] = otex[:, :lx1 - x0][win]
                id_l[y0:y1, x0:lx1][win] = k
            # Right view: right pixels the surface can reach.
            dmin, dmax = d0 - spread - 1.0, d0 + spread + 1.0
            rx0 = max(0, int(math.floor(x0 - dmax)))
            rx1 = min(w, int(math.ceil(x1 - dmin)) + 1)
            if rx1 <= rx0:
                continue
            xr = xs[:, rx0:rx1]
            xsrc = ((xr + oa + oc * oys) / (1.0 - ob)).astype(np.float32)
            d = (oa + ob * xsrc + oc * oys).astype(np.float32)
            win = (shape.contains(xsrc, oys) & (xsrc >= x0) & (xsrc <= x1 - 1)
                   & (d > disp_r[y0:y1, rx0:rx1]))
            col = cv2.remap(otex, xsrc - np.float32(x0),
                            np.broadcast_to(oys - np.float32(y0), xsrc.shape).astype(np.float32),
                            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            disp_r[y0:y1, rx0:rx1][win] = d[win]
            img_r[y0:y1, rx0:rx1][win] = col[win]
            id_r[y0:y1, rx0:rx1][win] = k

        valid_noc = self._non_occluded(disp_l, id_l, id_r)
        left = self._photometric(rng, img_l)
        right = self._photometric(rng, img_r)
        return {
            "left": left,
            "right": right,
            "disparity": disp_l,
            "disparity_right": disp_r,
            "valid": np.ones((h, w), dtype=bool),
            "valid_noc": valid_noc,
            "meta": {
                "dataset": "synthetic",
                "name": f"synthetic_s{self.seed}_{index:06d}",
                "index": int(index),
                "seed": self.seed,
                "num_objects": n_obj,
            },
        }

    def _surface_texture(self, rng: np.random.Generator, h: int, w: int,
                         weak: bool) -> np.ndarray:
        """One surface's texture, h×w×3 float32 (``texture_fn`` or the procedural one)."""
        if self.texture_fn is None:
            return _texture(rng, h, w, weak)
        tex = self.texture_fn(rng, h, w, weak)
        if tex.shape != (h, w, 3) or tex.dtype != np.float32:
            raise ValueError(f"SyntheticStereo texture_fn: expected a {h}x{w}x3 float32 "
                             f"texture, got {tex.shape} {tex.dtype}")
        return tex

    @staticmethod
    def _non_occluded(disp_l: np.ndarray, id_l: np.ndarray, id_r: np.ndarray) -> np.ndarray:
        """True where the left pixel's surface is what the right image shows at x − d.

        Both right pixels around the (sub-pixel) match must show the same surface.
        """
        h, w = disp_l.shape
        f0 = np.floor(np.arange(w, dtype=np.float32)[None, :] - disp_l)
        f1 = np.minimum(f0 + 1.0, np.float32(w - 1))
        rows = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))
        rows = np.ascontiguousarray(rows)
        ids = id_r.astype(np.float32)
        near = cv2.INTER_NEAREST
        at0 = cv2.remap(ids, f0, rows, near, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
        at1 = cv2.remap(ids, f1, rows, near, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
        own = id_l.astype(np.float32)
        return (f0 >= 0) & (at0 == own) & (at1 == own)


def noise_bank(seed: int, height: int, width: int) -> np.ndarray:
    """2×(H+pad)×(W+pad)×3 float32 unit Gaussian noise drawn from ``seed`` (pad = 32 pixels)."""
    bank_rng = np.random.default_rng([int(seed), 0x5EED])
    shape = (2, height + _NOISE_PAD, width + _NOISE_PAD, 3)
    return bank_rng.standard_normal(shape, dtype=np.float32)


def photometric_view(rng: np.random.Generator, img: np.ndarray, bank: Callable[[], np.ndarray],
                     gain_jitter: float, bias_jitter: float, noise_std: float) -> np.ndarray:
    """One view's camera response: gain ``1 ± gain_jitter`` (±2 % per channel), bias
    ``± bias_jitter`` grey levels and Gaussian noise of ``noise_std`` grey levels cropped at random
    from ``bank()`` (:func:`noise_bank`); H×W×3 float32 in, saturated and rounded uint8 out."""
    gain = rng.uniform(1 - gain_jitter, 1 + gain_jitter)
    gain = gain * rng.uniform(0.98, 1.02, 3)
    bias = float(rng.uniform(-bias_jitter, bias_jitter))
    idx, oy, ox = (int(v) for v in rng.integers((0, 0, 0), (2, _NOISE_PAD, _NOISE_PAD)))
    scaled = cv2.multiply(img, (float(gain[0]), float(gain[1]), float(gain[2]), 0.0))
    if noise_std > 0:
        h, w = img.shape[:2]
        noise = bank()[idx, oy:oy + h, ox:ox + w]
    else:
        noise = np.zeros_like(img)
    # Saturating, rounding conversion to uint8 in one pass.
    return cv2.addWeighted(scaled, 1.0, noise, noise_std, bias, dtype=cv2.CV_8U)
