"""Rectified stereo geometry: disparity <-> depth <-> 3D points (numpy only, no ROS).

Conventions (the ROS ``sensor_msgs/CameraInfo`` and ``image_geometry`` ones):
    * Images are rectified; the left camera is the reference. The right projection matrix
      has ``P_right[3] = -fx * baseline`` so the baseline ``T = -P_right[3] / P_right[0]`` is
      positive, in metres.
    * Disparity ``d = u_left - u_right`` in pixels. With principal points that differ between
      the two rectified cameras, ``doffs = cx_right - cx_left`` and
      ``Z = f * T / (d + doffs)`` (Middlebury convention).
    * Points are in the left optical frame: x right, y down, z forward, metres.

Invalid-value policy (one rule everywhere): a pixel whose disparity is not finite, is below
``min_disparity`` (default 0, so ``d <= 0`` with zero ``doffs``) or gives ``d + doffs <= 0``
has depth NaN and point (NaN, NaN, NaN). Depths beyond ``max_depth`` (when given) are NaN too.
Nothing is ever ``inf``.
"""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np

__all__ = [
    "StereoCamera",
    "disparity_to_depth",
    "depth_to_disparity",
    "depth_to_points",
    "disparity_to_points",
    "points_to_pixels",
    "reprojection_matrix",
    "write_ply",
]


def _frame_id(msg: Any) -> str:
    header = getattr(msg, "header", None)
    return str(getattr(header, "frame_id", "") or "")


def _matrix(msg: Any, field: str, size: int, side: str) -> np.ndarray:
    values = getattr(msg, field, None)
    if values is None:
        raise ValueError(f"{side} camera_info has no field {field!r}")
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size != size:
        raise ValueError(f"{side} camera_info field {field!r} has {arr.size} values, "
                         f"expected {size}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{side} camera_info field {field!r} has non-finite values "
                         f"{arr.tolist()}")
    return arr


@dataclass(frozen=True)
class StereoCamera:
    """A rectified stereo pair at one image resolution.

    Attributes:
        width, height: image size in pixels.
        fx, fy: focal lengths in pixels (fx of the right projection matrix, used in Z = fx*T/d).
        cx, cy: left principal point in pixels.
        cx_right: right principal point x in pixels.
        baseline: T, distance between the optical centres in metres (> 0).
        frame_id: left optical frame.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    cx_right: float
    baseline: float
    frame_id: str = ""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"StereoCamera: image size must be positive, got "
                             f"{self.width}x{self.height}")
        if not (np.isfinite(self.fx) and np.isfinite(self.fy)) or self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"StereoCamera: focal lengths must be positive, got fx={self.fx}, "
                             f"fy={self.fy}")
        bad = [f"{k}={v}" for k, v in (("cx", self.cx), ("cy", self.cy),
                                       ("cx_right", self.cx_right)) if not np.isfinite(v)]
        if bad:
            raise ValueError(f"StereoCamera: principal point must be finite, got "
                             f"{', '.join(bad)}")
        if not np.isfinite(self.baseline) or self.baseline <= 0:
            raise ValueError(f"StereoCamera: baseline must be positive metres, got "
                             f"{self.baseline}")

    @property
    def doffs(self) -> float:
        """Principal-point offset ``cx_right - cx_left``, pixels (0 for standard rectification)."""
        return self.cx_right - self.cx

    @property
    def focal_baseline(self) -> float:
        """``f * T`` in pixel·metres: depth is ``focal_baseline / (d + doffs)``."""
        return self.fx * self.baseline

    @classmethod
    def from_camera_info(cls, left: Any, right: Any) -> "StereoCamera":
        """Build from left/right ``sensor_msgs/CameraInfo``-like objects (duck-typed).

        Uses the rectified projection matrices ``p`` (``k`` for the left camera if its ``p``
        is all zero). Needs ``.k`` (9), ``.p`` (12), ``.width``, ``.height`` and
        ``.header.frame_id``.

        Raises:
            ValueError: zero focal length, no baseline (``right.p[3] == 0``), a negative
                baseline (left/right swapped), zero or mismatched image sizes.
        """
        lw, lh = int(getattr(left, "width", 0)), int(getattr(left, "height", 0))
        rw, rh = int(getattr(right, "width", 0)), int(getattr(right, "height", 0))
        if lw <= 0 or lh <= 0:
            raise ValueError(f"left camera_info has an empty image size {lw}x{lh}")
        if (lw, lh) != (rw, rh):
            raise ValueError(f"camera_info size mismatch: left is {lw}x{lh}, right is {rw}x{rh}")
        p_left = _matrix(left, "p", 12, "left")
        p_right = _matrix(right, "p", 12, "right")
        if p_left[0] != 0.0:
            fx_l, fy_l, cx_l, cy_l = p_left[0], p_left[5], p_left[2], p_left[6]
        else:
            k_left = _matrix(left, "k", 9, "left")
            fx_l, fy_l, cx_l, cy_l = k_left[0], k_left[4], k_left[2], k_left[5]
        fx_r = p_right[0]
        if fx_r == 0.0 or fx_l == 0.0 or fy_l == 0.0:
            raise ValueError(f"camera_info has zero focal length (left fx={fx_l}, fy={fy_l}; "
                             f"right P[0]={fx_r}); is the camera calibrated?")
        if p_right[3] == 0.0:
            raise ValueError("right camera_info has no baseline: P[3] == 0 (expected "
                             "P[3] = -fx * baseline for the right camera of a rectified pair)")
        baseline = -p_right[3] / fx_r
        if baseline < 0:
            raise ValueError(f"right camera_info gives a negative baseline {baseline:.4f} m "
                             f"(P[3] = {p_right[3]}); are left and right swapped?")
        return cls(width=lw, height=lh, fx=float(fx_r), fy=float(fy_l), cx=float(cx_l),
                   cy=float(cy_l), cx_right=float(p_right[2]), baseline=float(baseline),
                   frame_id=_frame_id(left))

    def scaled(self, width: int, height: int) -> "StereoCamera":
        """The same cameras at another resolution (binning/resizing the rectified images).

        Focal lengths scale by ``s = new/old`` per axis; principal points use the pixel-centre
        convention of ``cv2.resize`` (which :class:`~dtp_stereo.preprocess.Frame` uses):
        ``c' = (c + 0.5) * s - 0.5``. (``image_geometry`` binning uses plain ``c * s``; the two
        differ by ``(s - 1) / 2`` px, e.g. 0.25 px at half size.) The baseline is unchanged;
        disparities scale by the width factor, so depth is the same at both resolutions.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"StereoCamera.scaled: size must be positive, got {width}x{height}")
        sx, sy = width / self.width, height / self.height

        def centre(c: float, s: float) -> float:
            return (c + 0.5) * s - 0.5

        return replace(self, width=int(width), height=int(height), fx=self.fx * sx,
                       fy=self.fy * sy, cx=centre(self.cx, sx), cy=centre(self.cy, sy),
                       cx_right=centre(self.cx_right, sx))

    def check_image_size(self, width: int, height: int) -> None:
        """Raise ValueError naming both sizes if an image does not match this camera."""
        if (width, height) != (self.width, self.height):
            raise ValueError(f"image is {width}x{height} but camera_info says "
                             f"{self.width}x{self.height}")


def disparity_to_depth(disparity: np.ndarray, camera: StereoCamera, *,
                       min_disparity: float = 0.0,
                       max_depth: Optional[float] = None) -> np.ndarray:
    """Depth ``Z = f * T / (d + doffs)`` in metres.

    Args:
        disparity: H×W disparity in pixels.
        camera: the stereo camera at the disparity's resolution.
        min_disparity: disparities below it are invalid (pixels).
        max_depth: if given and > 0, depths beyond it (metres) are invalid.

    Returns:
        H×W float32 depth in metres; NaN where invalid (see the module policy).
    """
    d = np.asarray(disparity, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"disparity must be H×W, got shape {d.shape}")
    denom = d + camera.doffs
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(d) & (d >= min_disparity) & (denom > 0)
        z = np.where(valid, camera.focal_baseline / np.where(valid, denom, 1.0), np.nan)
        if max_depth is not None and max_depth > 0:
            z[z > max_depth] = np.nan
    return z.astype(np.float32)


def depth_to_disparity(depth: np.ndarray, camera: StereoCamera) -> np.ndarray:
    """Inverse of :func:`disparity_to_depth`: ``d = f * T / Z - doffs`` (pixels; NaN if Z <= 0)."""
    z = np.asarray(depth, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(z) & (z > 0)
        d = np.where(valid, camera.focal_baseline / np.where(valid, z, 1.0) - camera.doffs, np.nan)
    return d.astype(np.float32)


def depth_to_points(depth: np.ndarray, camera: StereoCamera) -> np.ndarray:
    """Back-project a depth map to an organized point array.

    Args:
        depth: H×W depth in metres (NaN = invalid), at the camera's resolution.
        camera: the stereo camera (left intrinsics are used).

    Returns:
        H×W×3 float32 (x, y, z) in metres in the left optical frame; NaN rows where invalid.
    """
    z = np.asarray(depth, dtype=np.float32)
    if z.ndim != 2:
        raise ValueError(f"depth must be H×W, got shape {z.shape}")
    camera.check_image_size(z.shape[1], z.shape[0])
    h, w = z.shape
    u = (np.arange(w, dtype=np.float32) - np.float32(camera.cx)) / np.float32(camera.fx)
    v = (np.arange(h, dtype=np.float32) - np.float32(camera.cy)) / np.float32(camera.fy)
    points = np.empty((h, w, 3), dtype=np.float32)
    np.multiply(z, u[None, :], out=points[..., 0])
    np.multiply(z, v[:, None], out=points[..., 1])
    points[..., 2] = z
    invalid = ~np.isfinite(z)
    if invalid.any():
        points[invalid] = np.nan
    return points


def disparity_to_points(disparity: np.ndarray, camera: StereoCamera, *,
                        min_disparity: float = 0.0,
                        max_depth: Optional[float] = None) -> np.ndarray:
    """Disparity (H×W pixels) -> organized H×W×3 float32 points in metres (NaN invalid)."""
    depth = disparity_to_depth(disparity, camera, min_disparity=min_disparity,
                               max_depth=max_depth)
    return depth_to_points(depth, camera)


def points_to_pixels(points: np.ndarray, camera: StereoCamera) -> Tuple[np.ndarray, np.ndarray]:
    """Project points (…×3, metres, left optical frame) into the left image.

    Returns:
        ``(u, v)`` float arrays of pixel coordinates with the points' leading shape; NaN for
        points that are not finite or have z <= 0.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1] != 3:
        raise ValueError(f"points must be …×3, got shape {p.shape}")
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(p).all(axis=-1) & (z > 0)
        zs = np.where(valid, z, 1.0)
        u = np.where(valid, camera.fx * x / zs + camera.cx, np.nan)
        v = np.where(valid, camera.fy * y / zs + camera.cy, np.nan)
    return u, v


def reprojection_matrix(camera: StereoCamera) -> np.ndarray:
    """The 4×4 ``Q`` matrix (``image_geometry.StereoCameraModel.Q`` / OpenCV ``stereoRectify``).

    ``[X, Y, Z, W]^T = Q [u, v, d, 1]^T`` and the point is ``(X/W, Y/W, Z/W)`` metres, so
    ``cv2.reprojectImageTo3D(disparity, Q)`` gives the same points as :func:`disparity_to_points`
    for valid pixels.
    """
    tx = -camera.baseline
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    q = np.zeros((4, 4), dtype=np.float64)
    q[0, 0] = fy * tx
    q[0, 3] = -fy * cx * tx
    q[1, 1] = fx * tx
    q[1, 3] = -fx * cy * tx
    q[2, 3] = fx * fy * tx
    q[3, 2] = -fy
    q[3, 3] = fy * (cx - camera.cx_right)
    return q


def write_ply(path: Union[str, Path], points: np.ndarray,
              colors: Optional[np.ndarray] = None) -> int:
    """Write the finite points to a binary little-endian PLY file.

    Args:
        path: output file.
        points: …×3 float points in metres (an organized H×W×3 array is fine); non-finite
            points are skipped.
        colors: optional …×3 uint8 RGB with the same leading shape.

    Returns:
        Number of vertices written.
    """
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    keep = np.isfinite(pts).all(axis=1)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {int(keep.sum())}",
              "property float x", "property float y", "property float z"]
    if colors is not None:
        cols = np.asarray(colors)
        if cols.dtype != np.uint8 or cols.size != pts.size:
            raise ValueError(f"write_ply: colors must be uint8 with shape {points.shape}, got "
                             f"{cols.dtype} {cols.shape}")
        cols = cols.reshape(-1, 3)
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    vertices = np.empty(int(keep.sum()), dtype=np.dtype(fields))
    for i, axis in enumerate("xyz"):
        vertices[axis] = pts[keep, i]
    if colors is not None:
        for i, name in enumerate(("red", "green", "blue")):
            vertices[name] = cols[keep, i]
    path = Path(path)
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vertices.tobytes())
    return int(vertices.shape[0])
