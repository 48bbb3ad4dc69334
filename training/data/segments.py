"""Segmenting a photograph into regions whose borders follow its edges (numpy + OpenCV core).

Two steps, both fast at a few hundred pixels a side:

1. :func:`superpixels`: marker watershed (``cv2.watershed``) from a jittered grid of seeds, so
   every superpixel border lies on a colour edge of the photo;
2. :func:`merge_regions`: agglomerative merging on the superpixel adjacency graph (borders of
   low colour contrast first, then Ward's criterion on CIE Lab colour) down to at most
   ``max_regions`` regions.

:func:`segment_photo` runs both; ``cv2.ximgproc`` is not needed.
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

__all__ = ["superpixels", "merge_regions", "segment_photo"]


def superpixels(image: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Watershed superpixels of an image.

    Args:
        image: H×W×3 uint8 RGB.
        count: about how many superpixels.
        rng: jitters the seed grid.

    Returns:
        H×W int32 labels ``0 .. n − 1`` (every pixel labelled, each label connected).
    """
    h, w = image.shape[:2]
    cell = max(3.0, math.sqrt(h * w / max(1, count)))
    ny, nx = max(1, int(round(h / cell))), max(1, int(round(w / cell)))
    gy, gx = np.meshgrid((np.arange(ny) + 0.5) * (h / ny), (np.arange(nx) + 0.5) * (w / nx),
                         indexing="ij")
    jitter = rng.uniform(-0.3, 0.3, (2, ny, nx))
    ys = np.clip(np.rint(gy + jitter[0] * (h / ny)), 0, h - 1).astype(np.intp)
    xs = np.clip(np.rint(gx + jitter[1] * (w / nx)), 0, w - 1).astype(np.intp)
    markers = np.zeros((h, w), np.int32)
    markers[ys.ravel(), xs.ravel()] = np.arange(1, ny * nx + 1, dtype=np.int32)
    smooth = cv2.GaussianBlur(image, (3, 3), 0)
    cv2.watershed(smooth, markers)
    _assign_borders(markers, smooth)
    _, labels = np.unique(markers, return_inverse=True)
    return labels.reshape(h, w).astype(np.int32)


def _assign_borders(markers: np.ndarray, image: np.ndarray) -> None:
    """Give watershed border pixels (label < 1) the label of their most similar 4-neighbour.

    Pixels whose neighbours are all borders too (junctions) take any neighbouring label.

    Args:
        markers: H×W int32 watershed output, changed in place.
        image: H×W×3 uint8 image the watershed ran on.
    """
    colours = image.astype(np.int16)
    border = markers < 1
    best = np.full(markers.shape, np.iinfo(np.int16).max, np.int16)
    label = markers.copy()
    ends = (slice(None, -1), slice(1, None))
    for axis in (0, 1):
        for dst, src in (ends, ends[::-1]):
            d_sl = (dst, slice(None)) if axis == 0 else (slice(None), dst)
            s_sl = (src, slice(None)) if axis == 0 else (slice(None), src)
            theirs = markers[s_sl]
            diff = np.abs(colours[d_sl] - colours[s_sl]).sum(axis=2, dtype=np.int16)
            better = border[d_sl] & (theirs >= 1) & (diff < best[d_sl])
            best[d_sl][better] = diff[better]
            label[d_sl][better] = theirs[better]
    markers[:] = label
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(4):
        left = markers < 1
        if not left.any():
            return
        grown = cv2.dilate(markers.astype(np.float32), kernel).astype(np.int32)
        markers[left] = grown[left]
    markers[markers < 1] = 1


def _boundaries(labels: np.ndarray, lab: np.ndarray,
                n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbouring label pairs and the colour contrast along their shared border.

    Args:
        labels: H×W labels ``0 .. n − 1``.
        lab: H×W×3 float32 colours.

    Returns:
        ``(a, b, contrast_sum, length)``: label pairs ``a < b``, the summed colour distance of
        the 4-connected pixel pairs across their border, and the number of those pairs.
    """
    codes, dists = [], []
    for sl_a, sl_b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                       ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        la, lb = labels[sl_a], labels[sl_b]
        differ = la != lb
        a, b = la[differ].astype(np.int64), lb[differ].astype(np.int64)
        codes.append(np.minimum(a, b) * n + np.maximum(a, b))
        dists.append(np.linalg.norm(lab[sl_a][differ] - lab[sl_b][differ], axis=1))
    code = np.concatenate(codes)
    total = np.bincount(code, np.concatenate(dists), n * n)
    length = np.bincount(code, minlength=n * n)
    pairs = np.flatnonzero(length)
    return pairs // n, pairs % n, total[pairs], length[pairs].astype(np.float64)


def _join_low_contrast(n: int, ea: np.ndarray, eb: np.ndarray,
                       join: np.ndarray) -> np.ndarray:
    """Connected components of the graph of the edges ``(ea, eb)`` with ``join`` True.

    Returns:
        ``n`` root labels (one node of each component).
    """
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(ea[join].tolist(), eb[join].tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def merge_regions(labels: np.ndarray, image: np.ndarray, max_regions: int,
                  min_contrast: float = 6.0) -> Tuple[np.ndarray, int]:
    """Merge neighbouring superpixels into at most ``max_regions`` regions along colour edges.

    First, neighbours whose shared border has a mean colour contrast below ``min_contrast``
    always merge, so a photo with few edges (or smooth gradients) gives few regions. Then
    agglomerative merging with Ward's criterion (the increase of colour variance,
    ``n_a·n_b / (n_a + n_b) · |mean_a − mean_b|²`` in CIE Lab), so small regions and similar
    colours merge first and the strongest colour edges survive as region borders: each round
    merges a matching of the cheapest neighbour pairs (every region at most once), then
    recomputes the region colours. All of it runs on the superpixel graph, not on pixels.

    Args:
        labels: H×W int32 superpixel labels ``0 .. n − 1``.
        image: H×W×3 uint8 RGB.
        max_regions: the most regions to return.
        min_contrast: border contrast, CIE Lab distance between neighbouring pixels (OpenCV
            8-bit Lab units), below which neighbours merge.

    Returns:
        ``(labels, count)``: H×W int32 region labels ``0 .. count − 1``, each region connected.
    """
    n = int(labels.max()) + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n).astype(np.float64)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    sums = np.stack([np.bincount(flat, lab[:, :, c].ravel(), n) for c in range(3)], 1)
    ea, eb, e_sum, e_len = _boundaries(labels, lab, n)
    region = _join_low_contrast(n, ea, eb, e_sum / e_len < float(min_contrast))
    count = len(np.unique(region))
    target = max(1, int(max_regions))
    while count > target:
        ra, rb = region[ea], region[eb]
        keep = ra != rb
        if not keep.any():
            break
        pair = np.unique(np.minimum(ra, rb)[keep] * n + np.maximum(ra, rb)[keep])
        pa, pb = pair // n, pair % n
        r_size = np.bincount(region, sizes, n)
        r_mean = np.stack([np.bincount(region, sums[:, c], n) for c in range(3)], 1)
        r_mean /= np.maximum(r_size, 1.0)[:, None]
        cost = (r_size[pa] * r_size[pb] / (r_size[pa] + r_size[pb])
                * np.sum((r_mean[pa] - r_mean[pb]) ** 2, axis=1))
        used = np.zeros(n, dtype=bool)
        remap = np.arange(n)
        for i in np.argsort(cost, kind="stable").tolist():
            a, b = int(pa[i]), int(pb[i])
            if used[a] or used[b]:
                continue
            used[a] = used[b] = True
            remap[b] = a
            count -= 1
            if count <= target:
                break
        region = remap[region]
    _, lut = np.unique(region, return_inverse=True)
    return lut.astype(np.int32)[labels], int(lut.max()) + 1


def segment_photo(image: np.ndarray, rng: np.random.Generator, num_superpixels: int = 200,
                  max_regions: int = 16) -> Tuple[np.ndarray, int]:
    """Segment a photo into at most ``max_regions`` connected regions along its edges.

    Args:
        image: H×W×3 uint8 RGB.
        rng: random generator (jitters the superpixel seeds).
        num_superpixels: superpixels before merging.
        max_regions: upper bound on the number of regions.

    Returns:
        ``(labels, count)``: H×W int32 labels ``0 .. count − 1``.
    """
    return merge_regions(superpixels(image, num_superpixels, rng), image, max_regions)
