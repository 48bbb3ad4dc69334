"""Forward warping of a left-view disparity map to the right view (vectorised z-buffer splat).

A left pixel ``(y, x)`` with disparity ``d`` appears in the right view at ``x − d``. Neighbouring
left pixels whose disparities differ by less than ``max_step`` pixels belong to one surface: the
right pixels between their two projections get linearly interpolated disparity (exact for
planes, and a stretched surface leaves no holes). Pixels at a depth step are splatted to their
nearest right pixel. Where several left pixels land on one right pixel, the largest disparity
(the nearest surface) wins (``np.maximum.at``). Right pixels that nothing reaches are
disocclusions.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["splat_disparity", "fill_background", "non_occluded"]


def splat_disparity(disparity: np.ndarray, out_width: int,
                    max_step: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Right-view disparity of a left-view disparity map.

    Args:
        disparity: H×Wl float32 left-view disparity (pixels, >= 0); ``Wl`` may exceed
            ``out_width`` (a left view rendered wider than the output, so the right view's
            right border is covered).
        out_width: width W of the right view (pixels).
        max_step: neighbouring disparities closer than this (pixels) are one surface.

    Returns:
        ``(disparity_right, hole)``: H×W float32 (pixels; right pixel ``x`` shows left pixel
        ``x + d``; 0 in holes) and H×W bool, True at disocclusions.
    """
    d = np.asarray(disparity, np.float32)
    h, wl = d.shape
    proj = np.arange(wl, dtype=np.float32)[None, :] - d
    row_base = (np.arange(h, dtype=np.int64) * out_width)[:, None]
    s, e = proj[:, :-1], proj[:, 1:]
    d0, d1 = d[:, :-1], d[:, 1:]
    step = d1 - d0
    joined = np.abs(step) < max_step  # then e − s = 1 − step > 0
    first = np.ceil(s)
    keys, values = [], []
    span = np.where(joined, e - s, np.float32(1.0))
    for k in (0.0, 1.0):  # a span of length < 2 holds at most two integer points
        xr = first + np.float32(k)
        ok = joined & (xr < e) & (xr >= 0) & (xr <= out_width - 1)
        t = (xr - s) / span
        keys.append((row_base + xr.astype(np.int64))[ok])
        values.append((d0 + t * step)[ok])
    lone = np.zeros((h, wl), dtype=bool)  # pixels with a depth step on one side
    lone[:, 0] = lone[:, -1] = True
    lone[:, 1:] |= ~joined
    lone[:, :-1] |= ~joined
    xr = np.rint(proj)
    ok = lone & (xr >= 0) & (xr <= out_width - 1)
    keys.append((row_base + xr.astype(np.int64))[ok])
    values.append(d[ok])
    buf = np.full(h * out_width, -1.0, np.float32)
    np.maximum.at(buf, np.concatenate(keys), np.concatenate(values))
    right = buf.reshape(h, out_width)
    hole = right < 0
    right[hole] = 0.0
    return right, hole


def fill_background(disparity: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill holes along each row with the smaller (farther) of the nearest valid disparities.

    Args:
        disparity: H×W float32 (pixels).
        hole: H×W bool, True where ``disparity`` is unknown.

    Returns:
        H×W float32 copy with the holes filled (0 in rows without any valid pixel).
    """
    h, w = disparity.shape
    cols = np.arange(w)[None, :]
    left = np.maximum.accumulate(np.where(hole, -1, cols), axis=1)
    right = np.minimum.accumulate(np.where(hole, w, cols)[:, ::-1], axis=1)[:, ::-1]
    from_left = np.take_along_axis(disparity, np.clip(left, 0, w - 1), axis=1)
    from_right = np.take_along_axis(disparity, np.clip(right, 0, w - 1), axis=1)
    from_left = np.where(left >= 0, from_left, np.inf)
    from_right = np.where(right < w, from_right, np.inf)
    fill = np.minimum(from_left, from_right)
    fill[~np.isfinite(fill)] = 0.0
    return np.where(hole, fill, disparity).astype(np.float32)


def non_occluded(disparity: np.ndarray, disparity_right: np.ndarray, hole: np.ndarray,
                 tolerance: float = 1.0) -> np.ndarray:
    """Left pixels visible in the right view: both right pixels around ``x − d`` show them.

    Args:
        disparity: H×W float32 left-view disparity (pixels).
        disparity_right: H×W float32 right-view disparity from :func:`splat_disparity`.
        hole: H×W bool disocclusions of the right view.
        tolerance: the right view's disparity must agree within this (pixels).

    Returns:
        H×W bool, False where the left pixel is occluded or its match leaves the right image.
    """
    h, w = disparity.shape
    proj = np.arange(w, dtype=np.float32)[None, :] - disparity
    f0 = np.floor(proj).astype(np.int64)
    ok = (f0 >= 0) & (f0 <= w - 1)
    base = (np.arange(h, dtype=np.int64) * w)[:, None]
    right, holes = disparity_right.ravel(), hole.ravel()
    for col in (np.clip(f0, 0, w - 1), np.clip(f0 + 1, 0, w - 1)):
        idx = base + col
        ok &= ~holes[idx] & (np.abs(right[idx] - disparity) < tolerance)
    return ok
