"""Stereo pairs with exact ground truth built from photographs (a :class:`TextureBank`).

Two generators with :class:`~dtp_stereo.data.synthetic.SyntheticStereo`'s interface (same
constructor arguments, ``sample(index)`` deterministic in ``(seed, index)``, same dict keys):

* :class:`PhotoLayeredStereo`: SyntheticStereo's scenes (a slanted background plane and
  occluding planar objects, in the manner of FlyingThings3D) with photo patches as surface
  textures (each surface a photo with probability ``photo_prob``, procedural otherwise).
* :class:`SingleImageStereo`: stereo from one photo (after Watson et al., ECCV 2020, "Learning
  Stereo from Single Images", re-implemented from the paper's description). An upright photo
  crop (random scale, maybe mirrored; nearly flat crops are redrawn) is the left view; no
  monocular depth network is available, so its disparity is procedural, with depth edges on
  the photo's segment borders
  (:mod:`training.data.segments`: each region a slanted plane, front-to-back order random but
  biased so that lower regions are nearer, plus a smooth global bend), scaled to a random
  maximum in ``(min_disparity_scale .. 1) · cap``, blurred and then "sharpened" (pixels on steep
  disparity ramps are refilled from the nearest flat pixel, so no flying pixels remain). The
  right view is the left photo forward-warped to ``x − d`` with a z-buffer
  (:mod:`training.data.forward_warp`); disocclusions are filled from a different photo,
  colour-matched to the left view. The left view is cut from a patch wider than the output, so
  the right view has no empty border.

``cap = min(max_disparity − 1, max_disparity_fraction · width)`` pixels, as for SyntheticStereo.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Optional, Tuple, Union

import cv2
import numpy as np

from dtp_stereo.data.synthetic import CameraResponse, SyntheticStereo, procedural_texture
from training.data.forward_warp import fill_background, non_occluded, splat_disparity
from training.data.segments import segment_photo
from training.data.textures import DEFAULT_OUT, TextureBank

__all__ = ["PhotoLayeredStereo", "SingleImageStereo"]

TextureSource = Union[str, "os.PathLike[str]", TextureBank]
_MIN_PHOTO_STD = 10.0  # grey levels; flatter crops are redrawn (up to 4 tries)


def _bank(textures: TextureSource) -> TextureBank:
    return textures if isinstance(textures, TextureBank) else TextureBank(textures)


# ------------------------------------------------------------------------- layered scenes
class PhotoLayeredStereo(SyntheticStereo):
    """SyntheticStereo scenes with photo textures.

    Args:
        height, width, max_disparity, seed, length: as :class:`SyntheticStereo` (pixels).
        textures: a texture-bank folder (``dtp-train textures``) or a :class:`TextureBank`.
        photo_prob: probability that a surface gets a photo patch (else a procedural texture).
        **kwargs: further :class:`SyntheticStereo` keyword arguments (``noise_std``, ...).

    Weak-texture surfaces (``weak_texture_prob``) get a photo patch at 8–20 % contrast.
    """

    def __init__(self, height: int = 256, width: int = 512, max_disparity: int = 192,
                 seed: int = 0, length: int = 1000, *, textures: TextureSource = DEFAULT_OUT,
                 photo_prob: float = 1.0, **kwargs: Any) -> None:
        if not 0.0 <= photo_prob <= 1.0:
            raise ValueError(f"PhotoLayeredStereo: photo_prob must be in [0, 1], got {photo_prob}")
        self.bank = _bank(textures)
        self.photo_prob = float(photo_prob)
        super().__init__(height, width, max_disparity, seed, length,
                         texture_fn=self._photo_texture, **kwargs)

    def __repr__(self) -> str:
        return (f"PhotoLayeredStereo(height={self.height}, width={self.width}, max_disparity="
                f"{self.max_disparity}, seed={self.seed}, length={self.length}, "
                f"textures={self.bank!r}, photo_prob={self.photo_prob})")

    def _photo_texture(self, rng: np.random.Generator, h: int, w: int,
                       weak: bool) -> np.ndarray:
        """A surface texture, h×w×3 float32 in [0, 255]: a photo patch or a procedural one."""
        if rng.random() >= self.photo_prob:
            return procedural_texture(rng, h, w, weak)
        tex = self.bank.random_patch(rng, h, w)
        if weak:
            mean = tex.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
            tex = (tex - mean) * np.float32(rng.uniform(0.08, 0.2)) + mean
        return tex

    def sample(self, index: int) -> Dict[str, Any]:
        """As :meth:`SyntheticStereo.sample`; ``meta["dataset"]`` is ``"photo_layers"``."""
        out = super().sample(index)
        out["meta"]["dataset"] = "photo_layers"
        out["meta"]["name"] = f"photo_layers_s{self.seed}_{int(index):06d}"
        return out


# ---------------------------------------------------------------------- single-image stereo
class SingleImageStereo(CameraResponse):
    """Stereo pairs from single photographs with procedural, edge-aligned disparity.

    Args:
        height: image height H (pixels).
        width: image width W (pixels).
        max_disparity: the network's disparity range (pixels); all GT is below it.
        seed: base seed; ``sample(i)`` depends only on ``(seed, i)``, the settings and the bank.
        length: ``len(self)``.
        textures: a texture-bank folder or a :class:`TextureBank`.
        max_disparity_fraction: ``cap = min(max_disparity − 1, fraction · W)`` pixels.
        min_disparity_scale: a sample's largest disparity is ``U(min_disparity_scale, 1) · cap``.
        regions: inclusive (min, max) number of depth regions per scene.
        num_superpixels: superpixels of the segmentation, per 192×384 pixels.
        max_slope: largest plane slope (disparity pixels per pixel).
        sharpen_threshold: disparity gradient (pixels per pixel) above which pixels are removed
            and refilled from their neighbours.
        noise_std: photometric noise, grey levels (0..255 scale).
        gain_jitter: relative gain range between views (e.g. 0.06 = ±6 %).
        bias_jitter: additive bias range per view, grey levels.
        right_blur_prob: probability of a Gaussian blur (sigma 0.2–1 px) of the right view.
    """

    def __init__(
        self,
        height: int = 256,
        width: int = 512,
        max_disparity: int = 192,
        seed: int = 0,
        length: int = 1000,
        *,
        textures: TextureSource = DEFAULT_OUT,
        max_disparity_fraction: float = 0.25,
        min_disparity_scale: float = 0.2,
        regions: Tuple[int, int] = (4, 24),
        num_superpixels: int = 150,
        max_slope: float = 0.15,
        sharpen_threshold: float = 0.5,
        noise_std: float = 1.5,
        gain_jitter: float = 0.06,
        bias_jitter: float = 6.0,
        right_blur_prob: float = 0.5,
    ) -> None:
        if height < 16 or width < 16:
            raise ValueError(
                f"SingleImageStereo: image must be at least 16x16, got {height}x{width}")
        if seed < 0 or length < 0:
            raise ValueError(
                f"SingleImageStereo: seed and length must be >= 0 ({seed}, {length})")
        if not 1 <= regions[0] <= regions[1]:
            raise ValueError(f"SingleImageStereo: bad regions {regions}")
        if not 0.0 < min_disparity_scale <= 1.0:
            raise ValueError(
                f"SingleImageStereo: min_disparity_scale must be in (0, 1], got "
                f"{min_disparity_scale}")
        if not 0.0 <= max_slope < 0.5 or sharpen_threshold <= max_slope:
            raise ValueError(f"SingleImageStereo: need 0 <= max_slope ({max_slope}) < 0.5 and "
                             f"sharpen_threshold ({sharpen_threshold}) > max_slope")
        self.height, self.width = int(height), int(width)
        self.max_disparity = int(max_disparity)
        self.seed, self.length = int(seed), int(length)
        self.bank = _bank(textures)
        self.max_disparity_fraction = float(max_disparity_fraction)
        self.min_disparity_scale = float(min_disparity_scale)
        self.regions = (int(regions[0]), int(regions[1]))
        self.num_superpixels = int(num_superpixels)
        self.max_slope = float(max_slope)
        self.sharpen_threshold = float(sharpen_threshold)
        self.noise_std = float(noise_std)
        self.gain_jitter = float(gain_jitter)
        self.bias_jitter = float(bias_jitter)
        self.right_blur_prob = float(right_blur_prob)
        self._noise_bank: Optional[np.ndarray] = None
        self.disparity_cap = min(self.max_disparity - 1.0, self.max_disparity_fraction * width)
        if self.disparity_cap < 4.0:
            raise ValueError(
                f"SingleImageStereo: disparity cap {self.disparity_cap:.1f} px is too small "
                f"(max_disparity={max_disparity}, width={width})")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(
                f"SingleImageStereo index {index} out of range 0..{self.length - 1}")
        return self.sample(index % self.length)

    def __repr__(self) -> str:
        return (f"SingleImageStereo(height={self.height}, width={self.width}, max_disparity="
                f"{self.max_disparity}, seed={self.seed}, length={self.length}, "
                f"textures={self.bank!r})")

    # ------------------------------------------------------------------------------ render
    def sample(self, index: int) -> Dict[str, Any]:
        """Generate sample ``index`` (deterministic in ``(seed, index)``).

        Returns:
            Dict with ``left``, ``right`` (H×W×3 uint8 RGB), ``disparity`` (H×W float32, left
            view, pixels, defined everywhere), ``disparity_right`` (H×W float32, right view:
            right pixel ``x`` shows left pixel ``x + d``; disocclusions take the farther
            neighbouring disparity), ``valid`` (H×W bool, all True), ``valid_noc`` (H×W bool,
            False where occluded in / outside the right image) and ``meta`` (dataset, name,
            index, seed, photo and fill_photo (bank indices), num_regions, max_disparity (the
            drawn scale, pixels)).
        """
        if index < 0:
            raise ValueError(f"SingleImageStereo: index must be >= 0, got {index}")
        rng = np.random.default_rng([self.seed, int(index)])
        h, w = self.height, self.width
        d_max = float(rng.uniform(self.min_disparity_scale, 1.0)) * self.disparity_cap
        d_min = max(0.5, d_max * float(rng.uniform(0.0, 0.25)))
        wide = w + int(math.ceil(d_max)) + 2  # the right view's right border stays covered

        for _ in range(4):  # avoid nearly flat crops (a sky, a plain backdrop)
            photo_idx = self.bank.random_index(rng)
            photo = self.bank.random_patch(rng, h, wide, index=photo_idx, rotate=False)
            if float(photo.std()) >= _MIN_PHOTO_STD:
                break
        photo8 = np.rint(photo).astype(np.uint8)
        max_regions = int(rng.integers(self.regions[0], self.regions[1] + 1))
        n_sp = max(max_regions, int(round(self.num_superpixels * h * wide / (192.0 * 384.0))))
        labels, n_regions = segment_photo(photo8, rng, n_sp, max_regions)
        disp = self._region_disparity(rng, labels, n_regions, d_min, d_max)
        disp = self._sharpen(rng, disp)

        disp_r, hole = splat_disparity(disp, w)
        ys = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))
        xs = np.arange(w, dtype=np.float32)[None, :] + disp_r
        right = cv2.remap(photo, xs, np.ascontiguousarray(ys), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        left = np.ascontiguousarray(photo[:, :w])
        fill_idx = self.bank.random_index(rng, exclude=photo_idx)
        fill = self.bank.random_patch(rng, h, w, index=fill_idx)
        right[hole] = _match_colours(fill, left, hole)
        disparity = np.ascontiguousarray(disp[:, :w])
        valid_noc = non_occluded(disparity, disp_r, hole)
        disparity_right = fill_background(disp_r, hole)

        if rng.random() < self.right_blur_prob:
            right = cv2.GaussianBlur(right, (0, 0), float(rng.uniform(0.2, 1.0)))
        return {
            "left": self._photometric(rng, left),
            "right": self._photometric(rng, right),
            "disparity": disparity,
            "disparity_right": disparity_right,
            "valid": np.ones((h, w), dtype=bool),
            "valid_noc": valid_noc,
            "meta": {
                "dataset": "single_image",
                "name": f"single_image_s{self.seed}_{int(index):06d}",
                "index": int(index),
                "seed": self.seed,
                "photo": photo_idx,
                "fill_photo": fill_idx,
                "num_regions": n_regions,
                "max_disparity": d_max,
            },
        }

    def _region_disparity(self, rng: np.random.Generator, labels: np.ndarray, n: int,
                          d_min: float, d_max: float) -> np.ndarray:
        """H×W float32 disparity in [d_min, d_max]: a slanted plane per region plus a bend.

        Regions are ordered front to back at random, biased (by a random amount) so that lower
        regions are nearer, as on a ground plane. A plane's slope is limited so that it spans
        at most 30 % of the disparity range over its region (and ``max_slope`` px/px).
        """
        h, w = labels.shape
        flat = labels.ravel()
        sizes = np.maximum(np.bincount(flat, minlength=n), 1).astype(np.float64)
        cols = np.arange(w, dtype=np.float32)[None, :]
        rows = np.arange(h, dtype=np.float32)[:, None]
        cx = np.bincount(flat, np.broadcast_to(cols, (h, w)).ravel(), n) / sizes
        cy = np.bincount(flat, np.broadcast_to(rows, (h, w)).ravel(), n) / sizes
        span = d_max - d_min
        ground = rng.uniform(0.0, 0.8)  # how strongly lower regions are nearer
        order = ground * cy / max(1.0, h - 1.0) + (1.0 - ground) * rng.random(n)
        base = d_min + span * order
        limit = np.minimum(self.max_slope, 0.3 * span / np.sqrt(sizes))
        slopes = rng.uniform(-1.0, 1.0, (2, n)) * limit
        slopes[:, rng.random(n) < 0.4] = 0.0  # some fronto-parallel regions
        offset = (base - slopes[0] * cx - slopes[1] * cy).astype(np.float32)
        sx, sy = slopes.astype(np.float32)
        disp = offset[labels]
        disp += sx[labels] * cols
        disp += sy[labels] * rows
        bend = cv2.resize(rng.standard_normal((3, 5)).astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC)
        disp += bend * np.float32(rng.uniform(0.0, 0.06) * span)
        return np.clip(disp, d_min, d_max, out=disp)

    def _sharpen(self, rng: np.random.Generator, disp: np.ndarray) -> np.ndarray:
        """Blur, then refill pixels on steep ramps from the nearest flat pixel (H×W float32)."""
        soft = cv2.GaussianBlur(disp, (0, 0), float(rng.uniform(0.5, 2.0)))
        steep = np.zeros(soft.shape, dtype=bool)
        gx = np.abs(np.diff(soft, axis=1)) > self.sharpen_threshold
        gy = np.abs(np.diff(soft, axis=0)) > self.sharpen_threshold
        steep[:, 1:] |= gx
        steep[:, :-1] |= gx
        steep[1:, :] |= gy
        steep[:-1, :] |= gy
        steep = cv2.dilate(steep.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if not steep.any() or steep.all():
            return soft
        _, nearest = cv2.distanceTransformWithLabels(
            steep.astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
        flat_px = ~steep
        lut = np.zeros(int(nearest.max()) + 1, np.float32)
        lut[nearest[flat_px]] = soft[flat_px]
        return np.where(steep, lut[nearest], soft).astype(np.float32)


def _match_colours(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image``'s pixels under ``mask`` (N×3 float32), each channel shifted and scaled so the
    whole image has ``reference``'s mean and std (H×W×3 float32 images, H×W bool mask)."""
    mean_i, std_i = cv2.meanStdDev(image)
    mean_r, std_r = cv2.meanStdDev(reference)
    scale = (std_r / np.maximum(std_i, 1e-3)).ravel().astype(np.float32)
    shift = (mean_r.ravel() - mean_i.ravel() * scale).astype(np.float32)
    return np.clip(image[mask] * scale + shift, 0.0, 255.0).astype(np.float32)
