"""ROS message <-> numpy conversions for images, DisparityImage and PointCloud2 (duck-typed).

Nothing here imports rclpy. Message classes are passed in (``msg_cls=...``) or imported lazily
from ``sensor_msgs``/``stereo_msgs`` when omitted, so the functions are tested with plain
objects. The pure numpy path is used instead of ``cv_bridge``: it is faster (one ``frombuffer``
and a view, no copy for packed rows), has no extra dependency, and honours ``step`` and
``is_bigendian`` explicitly.

Image layout: rows of ``step`` bytes, ``height`` rows; a row holds ``width`` pixels of
``channels * itemsize`` bytes followed by optional padding.
"""

import sys
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = [
    "ImageConversionError",
    "UnsupportedEncodingError",
    "ENCODINGS",
    "DELTA_D",
    "image_msg_to_numpy",
    "image_msg_to_rgb",
    "numpy_to_image_msg",
    "build_disparity_image",
    "disparity_output_range",
    "disparity_image_to_numpy",
    "build_pointcloud2",
    "pointcloud2_to_numpy",
    "build_camera_info",
    "check_image_msg",
]

# encoding -> (numpy dtype, channels)
ENCODINGS: Dict[str, Tuple[str, int]] = {
    "mono8": ("u1", 1),
    "8UC1": ("u1", 1),
    "mono16": ("u2", 1),
    "16UC1": ("u2", 1),
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "32FC1": ("f4", 1),
}
_POINTFIELD_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
DELTA_D = 1.0 / 16.0  # reported disparity step (px): sub-pixel regression, as stereo_image_proc


class ImageConversionError(ValueError):
    """An Image message cannot be converted (empty, short buffer, bad step, ...)."""


class UnsupportedEncodingError(ImageConversionError):
    """The Image encoding is not one of :data:`ENCODINGS`; the message names it."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"unsupported image encoding {encoding!r}; supported: "
                         f"{', '.join(ENCODINGS)}")
        self.encoding = encoding


def _lazy(module: str, name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(module), name)


def check_image_msg(msg: Any) -> None:
    """Check an Image message's metadata against its buffer, without decoding it.

    Constant time (the buffer's length only), so a subscriber can reject a bad frame on
    arrival, before it displaces a good one waiting for inference.

    Raises:
        UnsupportedEncodingError: encoding not one of :data:`ENCODINGS`.
        ImageConversionError: empty image, step smaller than a row, or a short buffer.
    """
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise UnsupportedEncodingError(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image ({width}x{height}, encoding {encoding})")
    code, channels = ENCODINGS[encoding]
    row_bytes = width * channels * np.dtype(code).itemsize
    if step < row_bytes:
        raise ImageConversionError(f"image step {step} is smaller than one row of {width} "
                                   f"{encoding} pixels: needs step >= {row_bytes} bytes")
    try:
        size = memoryview(msg.data).nbytes
    except TypeError:  # a list of byte values
        size = len(msg.data)
    if size < step * (height - 1) + row_bytes:
        raise ImageConversionError(f"image data has {size} bytes, expected {step * height} "
                                   f"for {width}x{height} {encoding} with step {step}")


def image_msg_to_numpy(msg: Any) -> np.ndarray:
    """Convert a ``sensor_msgs/Image``-like message to numpy.

    Args:
        msg: object with ``height``, ``width``, ``encoding``, ``step``, ``is_bigendian`` and
            ``data`` (bytes, ``array.array`` or any buffer).

    Returns:
        mono8/8UC1 -> H×W uint8; mono16/16UC1 -> H×W uint16; 32FC1 -> H×W float32;
        rgb8/bgr8/rgba8/bgra8 -> H×W×3 uint8 in **RGB** order (alpha dropped). Native byte
        order; the array may share memory with ``msg.data`` (read-only).

    Raises:
        UnsupportedEncodingError: encoding not supported (the message names it).
        ImageConversionError: empty image, step smaller than a row, or a short buffer.
    """
    check_image_msg(msg)
    encoding = str(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    code, channels = ENCODINGS[encoding]
    dtype = np.dtype(code).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = width * channels * dtype.itemsize
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if step % dtype.itemsize == 0 and buf.size >= step * height:
        rows = buf[: step * height].view(dtype).reshape(height, step // dtype.itemsize)
        arr = rows[:, : width * channels]
    else:  # odd step: copy each row's pixel bytes out
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes),
                                               strides=(step, 1))
        arr = np.ascontiguousarray(rows).view(dtype)
    arr = arr.reshape(height, width, channels) if channels > 1 else arr.reshape(height, width)
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    if encoding in ("bgr8", "bgra8"):
        arr = arr[..., 2::-1]
    elif encoding == "rgba8":
        arr = arr[..., :3]
    return arr


def image_msg_to_rgb(msg: Any, bit_depth: int = 16) -> np.ndarray:
    """Convert a camera image to H×W×3 RGB (uint8 or uint16) for the network.

    Mono images are replicated to 3 channels. 32FC1 is rejected: it is not a camera image.
    ``bit_depth`` (9..16) is the number of significant bits of 16-bit images (12 for most
    12-bit sensors, whose values stop at 4095): they are scaled up to the full 16-bit range, so
    that the network sees the same brightness as from an 8-bit camera. 8-bit images ignore it.

    Raises:
        UnsupportedEncodingError, ImageConversionError: as :func:`image_msg_to_numpy`.
        ValueError: ``bit_depth`` outside 9..16.
    """
    if not 9 <= int(bit_depth) <= 16:
        raise ValueError(f"image_msg_to_rgb: bit_depth must be in 9..16, got {bit_depth}")
    if str(msg.encoding) == "32FC1":
        raise UnsupportedEncodingError("32FC1")
    arr = image_msg_to_numpy(msg)
    if arr.dtype == np.uint16 and bit_depth < 16:
        top = (1 << int(bit_depth)) - 1
        arr = (np.minimum(arr, top).astype(np.uint32) * 65535 // top).astype(np.uint16)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr)


def numpy_to_image_msg(arr: np.ndarray, encoding: str, header: Any = None,
                       msg_cls: Any = None) -> Any:
    """Build a ``sensor_msgs/Image`` from an array whose channel order matches ``encoding``.

    Args:
        arr: H×W (mono8, mono16, 32FC1, 8UC1, 16UC1) or H×W×C array (C = 3 for rgb8/bgr8,
            4 for rgba8/bgra8) with the encoding's dtype.
        encoding: one of :data:`ENCODINGS`.
        header: copied into the message if given.
        msg_cls: Image class; defaults to ``sensor_msgs.msg.Image``.

    Raises:
        UnsupportedEncodingError: unknown encoding.
        ValueError: shape or dtype does not match the encoding.
    """
    if encoding not in ENCODINGS:
        raise UnsupportedEncodingError(encoding)
    code, channels = ENCODINGS[encoding]
    arr = np.asarray(arr)
    want_shape = 2 if channels == 1 else 3
    if arr.ndim != want_shape or (channels > 1 and arr.shape[2] != channels):
        raise ValueError(f"numpy_to_image_msg: {encoding} needs {channels} channel(s), got array "
                         f"of shape {arr.shape}")
    if arr.dtype.kind != np.dtype(code).kind or arr.dtype.itemsize != np.dtype(code).itemsize:
        raise ValueError(f"numpy_to_image_msg: {encoding} needs dtype {np.dtype(code)}, "
                         f"got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.dtype(code).newbyteorder("="))
    cls = msg_cls if msg_cls is not None else _lazy("sensor_msgs.msg", "Image")
    msg = cls()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 1 if sys.byteorder == "big" else 0
    msg.step = int(arr.shape[1] * channels * arr.dtype.itemsize)
    msg.data = arr.tobytes()
    return msg


def disparity_output_range(network_max_disparity: int,
                           scale: float = 1.0) -> Tuple[float, float]:
    """``(max_disparity, delta_d)`` for a DisparityImage, in output pixels.

    A network with ``D`` disparity planes regresses values in ``[0, D - 1]`` network pixels
    (soft-argmax over planes ``0 .. D - 1``), so the largest disparity it can report is
    ``D - 1`` -- the ``min + range - 1`` of stereo_image_proc. Disparities mapped back from a
    resized network input are multiplied by ``scale`` (original width / network width), and so
    are both the range and the step :data:`DELTA_D`.

    Args:
        network_max_disparity: ``D``, the model's ``max_disparity`` (network pixels).
        scale: :attr:`dtp_stereo.preprocess.Frame.scale`.
    """
    if network_max_disparity < 1 or not scale > 0:
        raise ValueError(f"disparity_output_range: need D >= 1 and scale > 0, got "
                         f"{network_max_disparity} and {scale}")
    return (network_max_disparity - 1) * float(scale), DELTA_D * float(scale)


def build_disparity_image(disparity: np.ndarray, header: Any, *, f: float, t: float,
                          min_disparity: float, max_disparity: float, delta_d: float,
                          valid_window: Optional[Tuple[int, int, int, int]] = None,
                          msg_cls: Any = None, image_cls: Any = None,
                          roi_cls: Any = None) -> Any:
    """Fill a ``stereo_msgs/DisparityImage``.

    Args:
        disparity: H×W disparity in pixels (left-referenced).
        header: left image header (stamp and frame of the output).
        f: focal length of the right camera in pixels, at this resolution.
        t: baseline in metres (``Z = f * t / d``).
        min_disparity, max_disparity: disparity search range in pixels.
        delta_d: smallest distinguishable disparity step in pixels.
        valid_window: ``(x_offset, y_offset, width, height)``; the whole image if omitted.
            The node and the bag tools use the whole image: the message defines the window as
            the region of *potentially* valid disparities, and a learned network estimates
            every pixel (the disparity is cropped back from any padding). In the band
            ``x < d`` a point's match lies outside the right image, so the network infers it
            from context rather than matching; unlike block matching (stereo_image_proc
            excludes the left ``min_disparity + range - 1 + border`` columns, where it computes
            nothing) those pixels still carry estimates, and pixels there with ``x >= d`` are
            genuine matches.
        msg_cls, image_cls, roi_cls: DisparityImage, Image and RegionOfInterest classes
            (lazily imported from stereo_msgs/sensor_msgs when omitted).

    Invalid pixels (non-finite or below ``min_disparity``) are written as
    ``min_disparity - 1``, below the valid range, as the message definition prescribes.

    Returns:
        The message, ``image`` encoded 32FC1.
    """
    d = np.array(disparity, dtype=np.float32, copy=True)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"build_disparity_image: disparity must be a non-empty H×W array, got "
                         f"shape {d.shape}")
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(d) | (d < min_disparity)
    d[invalid] = np.float32(min_disparity - 1.0)
    cls = msg_cls if msg_cls is not None else _lazy("stereo_msgs.msg", "DisparityImage")
    roi = roi_cls if roi_cls is not None else _lazy("sensor_msgs.msg", "RegionOfInterest")
    msg = cls()
    msg.header = header
    msg.image = numpy_to_image_msg(d, "32FC1", header, msg_cls=image_cls)
    msg.f = float(f)
    msg.t = float(t)
    msg.min_disparity = float(min_disparity)
    msg.max_disparity = float(max_disparity)
    msg.delta_d = float(delta_d)
    x, y, w, h = valid_window if valid_window is not None else (0, 0, d.shape[1], d.shape[0])
    window = roi()
    window.x_offset, window.y_offset = int(x), int(y)
    window.width, window.height = int(w), int(h)
    msg.valid_window = window
    return msg


def disparity_image_to_numpy(msg: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Read a DisparityImage: ``(disparity H×W float32, valid H×W bool)`` (valid: >= min)."""
    d = image_msg_to_numpy(msg.image).astype(np.float32)
    return d, np.isfinite(d) & (d >= msg.min_disparity)


def _pack_rgb(colors: np.ndarray) -> np.ndarray:
    c = colors.astype(np.uint32)
    packed = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    return packed.astype("<u4").view("<f4")


def build_pointcloud2(points: np.ndarray, header: Any, colors: Optional[np.ndarray] = None, *,
                      msg_cls: Any = None, field_cls: Any = None) -> Any:
    """Build an organized ``sensor_msgs/PointCloud2`` (as stereo_image_proc's points2).

    Args:
        points: H×W×3 float points in metres; NaN marks invalid points.
        header: output header (left image header).
        colors: optional H×W×3 uint8 **RGB**; adds an ``rgb`` field (0x00RRGGBB packed into a
            float32, the PCL/RViz convention).
        msg_cls, field_cls: PointCloud2 and PointField classes (lazily imported if omitted).

    Layout: little-endian, fields ``x, y, z`` float32 at offsets 0, 4, 8 (+ ``rgb`` at 12),
    ``point_step`` 12 (16 with colour), ``height`` = H, ``width`` = W, ``is_dense`` False.
    """
    pts = np.asarray(points)
    if pts.ndim != 3 or pts.shape[2] != 3:
        raise ValueError(f"build_pointcloud2: points must be H×W×3, got shape {pts.shape}")
    h, w = pts.shape[:2]
    names = ["x", "y", "z"]
    if colors is not None:
        cols = np.asarray(colors)
        if cols.shape != pts.shape or cols.dtype != np.uint8:
            raise ValueError(f"build_pointcloud2: colors must be uint8 {pts.shape}, got "
                             f"{cols.dtype} {cols.shape}")
        names.append("rgb")
    dtype = np.dtype({"names": names, "formats": ["<f4"] * len(names),
                      "offsets": [4 * i for i in range(len(names))], "itemsize": 4 * len(names)})
    cloud = np.empty((h, w), dtype=dtype)
    for i, axis in enumerate("xyz"):
        cloud[axis] = pts[..., i]
    if colors is not None:
        cloud["rgb"] = _pack_rgb(cols)
    cls = msg_cls if msg_cls is not None else _lazy("sensor_msgs.msg", "PointCloud2")
    fcls = field_cls if field_cls is not None else _lazy("sensor_msgs.msg", "PointField")
    msg = cls()
    msg.header = header
    msg.height, msg.width = int(h), int(w)
    fields = []
    for i, name in enumerate(names):
        field = fcls()
        field.name, field.offset, field.datatype, field.count = name, 4 * i, \
            _POINTFIELD_FLOAT32, 1
        fields.append(field)
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = dtype.itemsize
    msg.row_step = dtype.itemsize * int(w)
    msg.is_dense = False
    msg.data = cloud.tobytes()
    return msg


def pointcloud2_to_numpy(msg: Any) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Read a float32 xyz(+rgb) PointCloud2 back: ``(H×W×3 float32, H×W×3 uint8 RGB or None)``.

    Raises:
        ValueError: missing x/y/z fields, non-float32 fields, or a short buffer.
    """
    fields = {f.name: f for f in msg.fields}
    for axis in "xyz":
        if axis not in fields or fields[axis].datatype != _POINTFIELD_FLOAT32:
            raise ValueError(f"PointCloud2 has no float32 field {axis!r}")
    order = ">" if msg.is_bigendian else "<"
    names = [n for n in ("x", "y", "z", "rgb") if n in fields]
    dtype = np.dtype({"names": names, "formats": [order + "f4"] * len(names),
                      "offsets": [int(fields[n].offset) for n in names],
                      "itemsize": int(msg.point_step)})
    h, w = int(msg.height), int(msg.width)
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < int(msg.row_step) * h or int(msg.row_step) < w * int(msg.point_step):
        raise ValueError(f"PointCloud2 data has {buf.size} bytes, too short for {w}x{h} points "
                         f"(row_step {msg.row_step})")
    rows = buf[: int(msg.row_step) * h].reshape(h, int(msg.row_step))[:, : w * int(msg.point_step)]
    cloud = np.ascontiguousarray(rows).view(dtype).reshape(h, w)
    points = np.stack([cloud[a].astype(np.float32) for a in "xyz"], axis=-1)
    colors = None
    if "rgb" in names:
        packed = cloud["rgb"].astype("<f4").view("<u4")
        colors = np.stack([(packed >> s) & 0xFF for s in (16, 8, 0)], axis=-1).astype(np.uint8)
    return points, colors


def build_camera_info(camera: Any, header: Any, *, right: bool = False, msg_cls: Any = None,
                      roi_cls: Any = None) -> Any:
    """A rectified ``sensor_msgs/CameraInfo`` for one side of a stereo pair.

    The inverse of :meth:`dtp_stereo.ros.geometry.StereoCamera.from_camera_info`: plumb_bob
    with zero distortion, ``R = I``, ``K = [fx 0 cx; 0 fy cy; 0 0 1]`` and
    ``P = [fx 0 cx Tx; 0 fy cy 0; 0 0 1 0]`` with ``cx = camera.cx_right`` and
    ``Tx = -fx * baseline`` (pixels·metres) for the right camera, ``Tx = 0`` for the left.

    Args:
        camera: a ``StereoCamera``-like object (``width``, ``height`` pixels; ``fx``, ``fy``,
            ``cx``, ``cy``, ``cx_right`` pixels; ``baseline`` metres).
        header: the message header (stamp, optical frame of that side).
        right: build the right camera's message.
        msg_cls, roi_cls: CameraInfo and RegionOfInterest classes (lazily imported if omitted).
    """
    cls = msg_cls if msg_cls is not None else _lazy("sensor_msgs.msg", "CameraInfo")
    roi = roi_cls if roi_cls is not None else _lazy("sensor_msgs.msg", "RegionOfInterest")
    fx, fy, cy = float(camera.fx), float(camera.fy), float(camera.cy)
    cx = float(camera.cx_right if right else camera.cx)
    tx = -fx * float(camera.baseline) if right else 0.0
    msg = cls()
    msg.header = header
    msg.height, msg.width = int(camera.height), int(camera.width)
    msg.distortion_model = "plumb_bob"
    msg.d = np.zeros(5, dtype=np.float64)
    msg.k = np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], dtype=np.float64)
    msg.r = np.eye(3, dtype=np.float64).reshape(-1)
    msg.p = np.array([fx, 0.0, cx, tx, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=np.float64)
    msg.binning_x, msg.binning_y = 0, 0
    window = roi()
    window.x_offset, window.y_offset, window.height, window.width = 0, 0, 0, 0
    window.do_rectify = False
    msg.roi = window
    return msg
