"""Classical stereo baseline: OpenCV semi-global block matching (StereoSGBM), densified."""

import cv2
import numpy as np

SGBM_BLOCK_SIZE = 5


def fill_invalid_background(disparity: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Fill invalid pixels row by row with the smaller of the nearest valid left/right values.

    This is the KITTI devkit's background interpolation: holes (occlusions, the left border)
    take the farther (smaller-disparity) neighbour. Rows with no valid pixel become 0.

    Args:
        disparity: H×W float32, pixels.
        invalid: H×W bool, True where ``disparity`` is unknown.

    Returns:
        H×W float32 with every pixel finite.
    """
    h, w = disparity.shape
    cols = np.arange(w)[None, :].repeat(h, 0)
    valid = ~invalid
    left_idx = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    right_idx = np.minimum.accumulate(np.where(valid, cols, w)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None]
    big = np.float32(np.inf)
    left_val = np.where(left_idx >= 0, disparity[rows, np.clip(left_idx, 0, w - 1)], big)
    right_val = np.where(right_idx < w, disparity[rows, np.clip(right_idx, 0, w - 1)], big)
    filled = np.where(valid, disparity, np.minimum(left_val, right_val))
    return np.where(np.isfinite(filled), filled, 0.0).astype(np.float32)


def sgbm_disparity(left: np.ndarray, right: np.ndarray, max_disparity: int = 192,
                   *, fill: bool = True, block_size: int = SGBM_BLOCK_SIZE,
                   pad_left: bool = False) -> np.ndarray:
    """Disparity of a rectified pair with OpenCV StereoSGBM (3-way mode).

    Args:
        left, right: H×W×3 uint8 RGB (or H×W grey) rectified images, same size.
        max_disparity: disparity search range, pixels (rounded up to a multiple of 16; capped
            at the largest multiple of 16 below the image width, which no disparity can reach).
        fill: densify holes with :func:`fill_invalid_background`; otherwise they are NaN.
        block_size: matched block size, pixels (odd, >= 1); the penalties P1 / P2 scale with
            its square.
        pad_left: pad both images on the left by the search range (edge pixels repeated)
            before matching and crop the result back. OpenCV leaves the left ``numDisparities``
            columns invalid whatever their disparity; padded, it matches them too (a pixel at
            column x can still only find disparities up to x inside the right image; larger
            ones meet the repeated edge, which the uniqueness test mostly rejects). Off by
            default: the baseline is SGBM as OpenCV returns it.

    Returns:
        H×W float32 disparity, pixels.
    """
    if left.shape != right.shape:
        raise ValueError(f"sgbm_disparity: left {left.shape} and right {right.shape} differ")
    num_disp = max(16, -(-int(max_disparity) // 16) * 16)
    width = left.shape[1]
    if width <= 16:
        raise ValueError(f"sgbm_disparity: image width {width} px is too small for SGBM")
    num_disp = min(num_disp, (width - 1) // 16 * 16)  # OpenCV needs numDisparities < width
    if block_size < 1 or block_size % 2 == 0:
        raise ValueError(f"sgbm_disparity: block_size must be odd and >= 1, got {block_size}")
    channels = 1 if left.ndim == 2 else left.shape[2]
    bs = int(block_size)
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=num_disp, blockSize=bs,
        P1=8 * channels * bs * bs, P2=32 * channels * bs * bs, disp12MaxDiff=1,
        uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    if pad_left:
        left, right = (cv2.copyMakeBorder(np.ascontiguousarray(im), 0, 0, num_disp, 0,
                                          cv2.BORDER_REPLICATE) for im in (left, right))
    raw = matcher.compute(np.ascontiguousarray(left), np.ascontiguousarray(right))
    if pad_left:
        raw = raw[:, num_disp:]
    disp = raw.astype(np.float32) / 16.0  # fixed point, 4 fractional bits
    invalid = raw < 0
    if fill:
        return fill_invalid_background(disp, invalid)
    disp[invalid] = np.nan
    return disp
