"""Stereo file formats: PFM, KITTI 16-bit PNG disparity, RGB images, Middlebury calib.txt.

Conventions:
    * Images are returned as H×W×3 uint8 **RGB** (OpenCV's BGR order is converted here).
    * Disparities are H×W float32 in pixels, left-referenced, top row first.
    * Every reader raises :class:`FormatError` (a ``ValueError``) or ``FileNotFoundError`` whose
      message names the file and the problem.

Only numpy and OpenCV are needed (no torch).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple, Union

import cv2
import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "FormatError",
    "read_pfm",
    "write_pfm",
    "read_kitti_disparity",
    "write_kitti_disparity",
    "write_disparity_png16",
    "read_image_rgb",
    "write_image_rgb",
    "read_mask_png",
    "colorize_disparity",
    "read_middlebury_calib",
    "image_size_from_header",
    "MAX_IMAGE_PIXELS",
]

#: Largest disparity a 16-bit KITTI PNG can hold (pixels): 65535 / 256.
KITTI_MAX_DISPARITY = 65535.0 / 256.0


class FormatError(ValueError):
    """A file exists but its content is not in the expected format."""


def _require_file(path: PathLike) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    return path


# --------------------------------------------------------------------------------------- PFM
def _pfm_tokens(data: bytes, path: str) -> Tuple[list, int]:
    """Return the three header tokens (type, "W H" as two tokens, scale) and the data offset."""
    tokens = []
    pos = 0
    n = len(data)
    while len(tokens) < 4:
        while pos < n and data[pos:pos + 1].isspace():
            pos += 1
        if pos < n and data[pos:pos + 1] == b"#":  # comment line (tolerated)
            while pos < n and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < n and not data[pos:pos + 1].isspace():
            pos += 1
        if start == pos:
            raise FormatError(f"{path}: bad PFM header (file ends inside the header)")
        tokens.append(data[start:pos])
        if len(tokens) == 1 and tokens[0] not in (b"PF", b"Pf"):
            raise FormatError(
                f"{path}: bad PFM header: expected 'PF' or 'Pf', got {tokens[0][:16]!r}"
            )
    # Exactly one whitespace byte separates the scale from the raster.
    if pos >= n:
        raise FormatError(f"{path}: bad PFM header (no data after the scale)")
    return tokens, pos + 1


_PFM_HEADER_MAX = 4096  # bytes of a PFM header, comments included


def _pfm_raster(f: Any, head: bytes, tokens: list, offset: int, path: str) -> bytes:
    """The raster bytes of an open PFM file whose first bytes ``head`` held the header.

    The size the header announces is checked against the file's size before anything more is
    read, so a 4x3 header on a 1 GiB file costs no 1 GiB read.
    """
    try:
        width, height = int(tokens[1]), int(tokens[2])
    except ValueError:
        raise FormatError(
            f"{path}: bad PFM header: width/height/scale not numbers: {tokens[1:]!r}"
        ) from None
    channels = 3 if tokens[0] == b"PF" else 1
    needed = max(width, 0) * max(height, 0) * channels * 4
    available = os.fstat(f.fileno()).st_size - offset
    if head[offset - 1:offset + 1] == b"\r\n" and available == needed + 1:
        offset += 1  # header written with CRLF line ends
        available -= 1
    if available < needed:
        raise FormatError(
            f"{path}: truncated PFM data: expected {needed} bytes for {width}x{height}x"
            f"{channels}, found {available}"
        )
    f.seek(offset)
    return f.read(needed)


def read_pfm(path: PathLike) -> np.ndarray:
    """Read a PFM file (``PF`` colour or ``Pf`` greyscale).

    The scale's sign gives the byte order (negative = little-endian) and rows are stored bottom
    to top; both are undone here.

    Args:
        path: file to read.

    Returns:
        H×W float32 (``Pf``) or H×W×3 float32 (``PF``), top row first, native byte order.
        Values are returned as stored (e.g. ``inf`` marks unknown Middlebury/ETH3D disparity).

    Raises:
        FileNotFoundError: the file does not exist.
        FormatError: bad header or truncated data.
    """
    path = _require_file(path)
    with open(path, "rb") as f:  # the header first: the raster is read only if it fits
        data = f.read(_PFM_HEADER_MAX)
        tokens, offset = _pfm_tokens(data, path)
        data = _pfm_raster(f, data, tokens, offset, path)
    offset = 0
    channels = 3 if tokens[0] == b"PF" else 1
    try:
        width, height = int(tokens[1]), int(tokens[2])
        scale = float(tokens[3])
    except ValueError:
        raise FormatError(
            f"{path}: bad PFM header: width/height/scale not numbers: {tokens[1:]!r}"
        ) from None
    if width <= 0 or height <= 0:
        raise FormatError(f"{path}: bad PFM header: size {width}x{height}")
    if scale == 0.0 or not np.isfinite(scale):
        raise FormatError(f"{path}: bad PFM header: scale must be finite and non-zero")
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    count = width * height * channels
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    shape = (height, width, 3) if channels == 3 else (height, width)
    arr = arr.reshape(shape)[::-1]
    return np.ascontiguousarray(arr.astype(np.float32))


def write_pfm(path: PathLike, image: np.ndarray, *, little_endian: bool = True) -> None:
    """Write a float image as PFM (``Pf`` for H×W or H×W×1, ``PF`` for H×W×3).

    Args:
        path: destination file (parent folder must exist).
        image: H×W or H×W×3 array, top row first; converted to float32.
        little_endian: byte order of the raster (scale written as -1.0 or 1.0).
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        kind = b"Pf"
    elif arr.ndim == 3 and arr.shape[2] == 3:
        kind = b"PF"
    else:
        raise ValueError(f"{os.fspath(path)}: PFM needs H×W or H×W×3, got shape {arr.shape}")
    height, width = arr.shape[:2]
    dtype = np.dtype("<f4") if little_endian else np.dtype(">f4")
    raster = np.ascontiguousarray(arr[::-1].astype(dtype))
    header = kind + b"\n" + f"{width} {height}\n{-1.0 if little_endian else 1.0}\n".encode()
    with open(path, "wb") as f:
        f.write(header)
        f.write(raster.tobytes())


# ------------------------------------------------------------------------------------- PNG
#: Images with more pixels than this are refused before decoding (a few hundred kB of PNG can
#: decode to GBs); the environment variable ``DTP_STEREO_MAX_IMAGE_PIXELS`` changes it.
MAX_IMAGE_PIXELS = 100_000_000


def _png_size(head: bytes) -> Optional[Tuple[int, int]]:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def _jpeg_size(f: Any) -> Optional[Tuple[int, int]]:
    """Width and height from the first start-of-frame marker of a JPEG file, if found."""
    f.seek(2)
    for _ in range(10000):
        if f.read(1) != b"\xff":
            return None
        code = 0xFF
        while code == 0xFF:  # fill bytes may precede a marker code
            byte = f.read(1)
            if not byte:
                return None
            code = byte[0]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:  # no length field
            continue
        length = int.from_bytes(f.read(2), "big")
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):  # SOFn
            body = f.read(5)
            if len(body) < 5:
                return None
            return int.from_bytes(body[3:5], "big"), int.from_bytes(body[1:3], "big")
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)
    return None


def image_size_from_header(path: PathLike) -> Optional[Tuple[int, int]]:
    """``(width, height)`` of a PNG or JPEG file from its header (no decoding); None for
    other formats or unreadable headers."""
    with open(path, "rb") as f:
        head = f.read(32)
        size = _png_size(head)
        if size is None and head[:2] == b"\xff\xd8":
            size = _jpeg_size(f)
    return size


def _imread_unchanged(path: PathLike) -> np.ndarray:
    path = _require_file(path)
    text = os.environ.get("DTP_STEREO_MAX_IMAGE_PIXELS", "")
    try:
        limit = int(float(text)) if text else MAX_IMAGE_PIXELS
    except ValueError:
        raise FormatError(f"DTP_STEREO_MAX_IMAGE_PIXELS={text!r} is not a number of pixels "
                          f"(reading {path})") from None
    size = image_size_from_header(path)
    if size is not None and size[0] * size[1] > limit:
        raise FormatError(f"{path}: image of {size[0]}x{size[1]} pixels is above the limit of "
                          f"{limit} (a decompression bomb or a wrong file?); set "
                          "DTP_STEREO_MAX_IMAGE_PIXELS to allow it")
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FormatError(f"{path}: cannot decode image (unsupported or corrupt file)")
    return img


def read_kitti_disparity(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Read a KITTI 2012/2015 disparity map (16-bit PNG, value = disparity·256, 0 = unknown).

    Returns:
        ``(disp, valid)``: H×W float32 disparity in pixels (0 where unknown) and H×W bool mask.

    Raises:
        FileNotFoundError: the file does not exist.
        FormatError: not a single-channel 16-bit PNG.
    """
    raw = _imread_unchanged(path)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise FormatError(
            f"{os.fspath(path)}: KITTI disparity must be a 1-channel 16-bit PNG, got "
            f"dtype {raw.dtype} shape {raw.shape}"
        )
    return raw.astype(np.float32) / 256.0, raw > 0


def write_disparity_png16(path: PathLike, disparity: np.ndarray) -> None:
    """Write disparity (pixels) as a KITTI-style 16-bit PNG: ``round(d·256)``, clipped to uint16.

    Non-finite and negative values are written as 0 (= unknown).
    """
    disp = np.asarray(disparity, dtype=np.float64)
    if disp.ndim != 2:
        raise ValueError(f"{os.fspath(path)}: disparity must be H×W, got shape {disp.shape}")
    disp = np.where(np.isfinite(disp) & (disp > 0), disp, 0.0)
    raw = np.clip(np.round(disp * 256.0), 0, 65535).astype(np.uint16)
    if not cv2.imwrite(os.fspath(path), raw):
        raise OSError(f"{os.fspath(path)}: cannot write PNG")


def write_kitti_disparity(
    path: PathLike, disparity: np.ndarray, valid: Optional[np.ndarray] = None
) -> None:
    """Write a KITTI disparity PNG; pixels where ``valid`` is False (if given) are written as 0.

    Args:
        path: destination ``.png``.
        disparity: H×W disparity in pixels (0 .. 255.99).
        valid: optional H×W bool mask.
    """
    disp = np.array(disparity, dtype=np.float64)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != disp.shape:
            raise ValueError(
                f"{os.fspath(path)}: valid shape {valid.shape} != disparity {disp.shape}"
            )
        disp[~valid] = 0.0
    write_disparity_png16(path, disp)


def read_image_rgb(path: PathLike) -> np.ndarray:
    """Read an image as H×W×3 uint8 RGB.

    Greyscale is replicated to 3 channels, alpha is dropped, and 16-bit images are rescaled to
    8 bits (``round(v / 257)``).

    Raises:
        FileNotFoundError: the file does not exist.
        FormatError: the file cannot be decoded or has an unsupported depth/layout.
    """
    img = _imread_unchanged(path)
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise FormatError(f"{os.fspath(path)}: unsupported image dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise FormatError(f"{os.fspath(path)}: unsupported image shape {img.shape}")


def write_image_rgb(path: PathLike, image: np.ndarray) -> None:
    """Write an H×W×3 uint8 RGB (or H×W greyscale) image; the format follows the extension."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"{os.fspath(path)}: image must be uint8, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim != 2:
        raise ValueError(f"{os.fspath(path)}: image must be H×W×3 or H×W, got {img.shape}")
    if not cv2.imwrite(os.fspath(path), img):
        raise OSError(f"{os.fspath(path)}: cannot write image")


def read_mask_png(path: PathLike, threshold: int = 255) -> np.ndarray:
    """Read an 8-bit mask PNG (e.g. Middlebury/ETH3D ``mask0nocc.png``) as H×W bool.

    Args:
        path: mask file; multi-channel masks use their first channel.
        threshold: pixels with value >= threshold are True (``mask0nocc``: 255 = non-occluded,
            128 = occluded, 0 = unknown).
    """
    raw = _imread_unchanged(path)
    if raw.ndim == 3:
        raw = raw[:, :, 0]
    return raw >= threshold


def colorize_disparity(
    disp: np.ndarray,
    max_disp: float,
    invalid_mask: Optional[np.ndarray] = None,
    colormap: int = cv2.COLORMAP_TURBO,
    *,
    min_disp: Optional[float] = None,
) -> np.ndarray:
    """Colour-code a disparity map for display (files, rqt_image_view).

    Args:
        disp: H×W disparity in pixels.
        max_disp: disparity mapped to the top of the colour map (pixels, > 0).
        invalid_mask: optional H×W bool, True where the pixel is invalid (drawn black).
            Non-finite disparities are always drawn black.
        colormap: an OpenCV colour map id (TURBO by default: near = warm).
        min_disp: if given, disparities below it (pixels) are invalid (black) and the colour
            map spans ``[min_disp, max_disp]``; otherwise it spans ``[0, max_disp]``.

    Returns:
        H×W×3 uint8 **BGR** image (ready for ``cv2.imwrite`` or a ROS ``bgr8`` image).
    """
    d = np.asarray(disp, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"colorize_disparity: disparity must be H×W, got shape {d.shape}")
    if not max_disp > 0:
        raise ValueError(f"colorize_disparity: max_disp must be > 0, got {max_disp}")
    low = 0.0 if min_disp is None else float(min_disp)
    finite = np.isfinite(d)
    span = max(float(max_disp) - low, 1e-6)
    scaled = np.clip((np.where(finite, d, low) - low) * (255.0 / span), 0, 255)
    out = cv2.applyColorMap(scaled.astype(np.uint8), colormap)
    black = ~finite
    if min_disp is not None:
        with np.errstate(invalid="ignore"):
            black |= d < low
    if invalid_mask is not None:
        invalid_mask = np.asarray(invalid_mask, dtype=bool)
        if invalid_mask.shape != d.shape:
            raise ValueError(
                f"colorize_disparity: invalid_mask shape {invalid_mask.shape} != {d.shape}"
            )
        black |= invalid_mask
    out[black] = 0
    return out


# ------------------------------------------------------------------------ Middlebury calib
_CALIB_INT_KEYS = ("width", "height", "ndisp", "isint")
_CALIB_FLOAT_KEYS = ("doffs", "baseline", "vmin", "vmax", "dyavg", "dymax")


def _parse_matrix(text: str, path: str, key: str) -> np.ndarray:
    inner = text.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise FormatError(f"{path}: {key} must look like [f 0 cx; 0 f cy; 0 0 1], got {text!r}")
    rows = [r.split() for r in inner[1:-1].split(";")]
    try:
        mat = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError:
        raise FormatError(f"{path}: {key} has non-numeric entries: {text!r}") from None
    if mat.shape != (3, 3):
        raise FormatError(f"{path}: {key} must be 3x3, got {text!r}")
    return mat


def read_middlebury_calib(path: PathLike) -> Dict[str, Any]:
    """Read a Middlebury 2014 ``calib.txt`` (also used by ETH3D two-view).

    Returns:
        Dict with ``cam0``/``cam1`` (3×3 float64 intrinsics ``[f 0 cx; 0 f cy; 0 0 1]``),
        ``doffs`` (cx1 − cx0, pixels), ``baseline`` (mm), ``width``, ``height``, ``ndisp``,
        ``isint`` (ints), ``vmin``, ``vmax``, ``dyavg``, ``dymax`` (floats, pixels). Keys absent
        from the file are absent from the dict, except that ``cam0``, ``cam1``, ``baseline``
        are required. Depth is ``Z = baseline · f / (d + doffs)`` (mm).

    Raises:
        FileNotFoundError: the file does not exist.
        FormatError: a line is not ``key=value`` or a required key is missing/bad.
    """
    path = _require_file(path)
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    calib: Dict[str, Any] = {}
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise FormatError(f"{path}:{lineno}: expected key=value, got {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        try:
            if key in ("cam0", "cam1"):
                calib[key] = _parse_matrix(value, path, key)
            elif key in _CALIB_INT_KEYS:
                calib[key] = int(float(value))
            elif key in _CALIB_FLOAT_KEYS:
                calib[key] = float(value)
            else:
                calib[key] = value
        except ValueError as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"{path}:{lineno}: bad value for {key}: {value!r}") from None
    for key in ("cam0", "cam1", "baseline"):
        if key not in calib:
            raise FormatError(f"{path}: missing required key {key!r}")
    if "doffs" not in calib:
        calib["doffs"] = float(calib["cam1"][0, 2] - calib["cam0"][0, 2])
    return calib
