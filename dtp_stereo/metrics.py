"""Stereo accuracy metrics: EPE, D1 and bad-τ over valid pixels.

Definitions (docs/design.md, "Metrics contract"):

* valid pixels: finite ground truth, ``0 < gt < max_disparity``, and the dataset's own mask;
* ``epe``: mean absolute disparity error, pixels;
* ``d1``: percent of valid pixels with ``|e| > 3`` px **and** ``|e| > 5 %`` of ``gt`` (KITTI D1);
* ``bad_1``, ``bad_2``, ``bad_3``: percent of valid pixels with ``|e| > τ`` px.

Inputs may be numpy arrays or torch tensors of any matching shape (one image: H×W).
"""

import math
from typing import Any, Dict, List, Optional

import numpy as np

BAD_THRESHOLDS_PX = (1.0, 2.0, 3.0)
D1_ABS_PX = 3.0
D1_REL = 0.05
METRIC_NAMES = ("epe", "d1", "bad_1", "bad_2", "bad_3")
MODES = ("per_image", "pooled")


def _numpy(x: Any, name: str) -> np.ndarray:
    """A numpy view of ``x`` (numpy array, torch tensor or array-like)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to an array") from exc


def valid_mask(gt: Any, max_disparity: Optional[float], mask: Any = None) -> np.ndarray:
    """Pixels that count: finite GT with ``0 < gt < max_disparity``, and ``mask`` when given.

    Args:
        gt: H×W ground-truth disparity, pixels (numpy or torch).
        max_disparity: exclusive upper bound, pixels; ``None`` for no bound.
        mask: optional H×W boolean mask of the dataset (e.g. KITTI valid, non-occluded).

    Returns:
        H×W bool numpy array.
    """
    gt = _numpy(gt, "gt").astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > 0)
        if max_disparity is not None:
            valid &= gt < float(max_disparity)
    if mask is not None:
        mask = _numpy(mask, "mask")
        if mask.shape != gt.shape:
            raise ValueError(f"mask shape {mask.shape} does not match gt shape {gt.shape}")
        valid &= mask.astype(bool)
    return valid


def _errors(pred: Any, gt: Any, valid: Any):
    """Absolute errors and GT at valid pixels (float64, 1-D), after shape/finiteness checks."""
    pred_np = _numpy(pred, "pred")
    gt_np = _numpy(gt, "gt")
    valid_np = _numpy(valid, "valid").astype(bool)
    if not (pred_np.shape == gt_np.shape == valid_np.shape):
        raise ValueError(f"shape mismatch: pred {pred_np.shape}, gt {gt_np.shape}, "
                         f"valid {valid_np.shape}")
    pred_v = pred_np[valid_np].astype(np.float64)
    gt_v = gt_np[valid_np].astype(np.float64)
    if not np.all(np.isfinite(gt_v)):
        raise ValueError("gt is not finite at some valid pixels; build valid with valid_mask()")
    bad = int(np.count_nonzero(~np.isfinite(pred_v)))
    if bad:
        raise ValueError(f"prediction has {bad} non-finite values at valid pixels")
    return np.abs(pred_v - gt_v), gt_v


def _counts(err: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """Sums over pixels: error sum and outlier counts."""
    out = {"epe": float(err.sum()),
           "d1": float(np.count_nonzero((err > D1_ABS_PX) & (err > D1_REL * gt)))}
    for tau in BAD_THRESHOLDS_PX:
        out[f"bad_{int(tau)}"] = float(np.count_nonzero(err > tau))
    return out


def _normalise(sums: Dict[str, float], n: int) -> Dict[str, float]:
    """Sums -> means: EPE in pixels, the outlier rates in percent."""
    if n == 0:
        return {k: math.nan for k in METRIC_NAMES}
    out = {"epe": sums["epe"] / n}
    for k in METRIC_NAMES[1:]:
        out[k] = 100.0 * sums[k] / n
    return out


def stereo_metrics(pred: Any, gt: Any, valid: Any) -> Dict[str, float]:
    """Metrics of one image.

    Args:
        pred: predicted disparity, pixels (H×W, numpy or torch).
        gt: ground-truth disparity, pixels, same shape.
        valid: boolean mask of pixels to score, same shape (see :func:`valid_mask`).

    Returns:
        ``{"epe": px, "d1": %, "bad_1": %, "bad_2": %, "bad_3": %, "valid_pixels": int}``;
        the rates are NaN when no pixel is valid.

    Raises:
        ValueError: shapes differ, or pred/gt are not finite at valid pixels.
    """
    err, gt_v = _errors(pred, gt, valid)
    result: Dict[str, float] = _normalise(_counts(err, gt_v), err.size)
    result["valid_pixels"] = int(err.size)
    return result


class MetricAccumulator:
    """Averages :func:`stereo_metrics` over images.

    ``per_image`` (default, as GwcNet/OpenStereo) averages the per-image values; ``pooled``
    averages over all valid pixels of all images. Images with no valid pixel are skipped and
    counted (``n_skipped``).
    """

    def __init__(self, mode: str = "per_image") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown averaging mode {mode!r}; choose from {', '.join(MODES)}")
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        """Forget all images."""
        self._per_image: List[Dict[str, float]] = []
        self._sums = {k: 0.0 for k in METRIC_NAMES}
        self._pixels = 0
        self.n_skipped = 0

    @property
    def n_images(self) -> int:
        """Number of images that contributed (had valid pixels)."""
        return len(self._per_image)

    def update(self, pred: Any, gt: Any, valid: Any) -> Dict[str, float]:
        """Add one image; returns its own metrics (NaN rates if it had no valid pixel)."""
        err, gt_v = _errors(pred, gt, valid)
        counts = _counts(err, gt_v)
        result: Dict[str, float] = _normalise(counts, err.size)
        result["valid_pixels"] = int(err.size)
        if err.size == 0:
            self.n_skipped += 1
            return result
        self._per_image.append(result)
        for k in METRIC_NAMES:
            self._sums[k] += counts[k]
        self._pixels += err.size
        return result

    def compute(self) -> Dict[str, Any]:
        """Averaged metrics plus ``n_images``, ``n_skipped``, ``valid_pixels`` and ``mode``.

        Rates are NaN when no image contributed.
        """
        if self.mode == "pooled":
            result: Dict[str, Any] = _normalise(self._sums, self._pixels)
        elif self._per_image:
            result = {k: float(np.mean([m[k] for m in self._per_image])) for k in METRIC_NAMES}
        else:
            result = {k: math.nan for k in METRIC_NAMES}
        result.update(n_images=self.n_images, n_skipped=self.n_skipped,
                      valid_pixels=int(self._pixels), mode=self.mode)
        return result
