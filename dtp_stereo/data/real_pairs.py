"""Real stereo pairs with ground truth found on this kind of machine, in Middlebury layout.

Two sources, both evaluation data only (never training data):

* **Aloe** (Middlebury 2006), shipped by Debian's ``opencv-doc`` in
  ``/usr/share/doc/opencv-doc/examples/data``: ``aloeL.jpg``, ``aloeR.jpg`` (1282×1110 RGB) and
  ``aloeGT.png`` (8-bit, value = disparity of the left image in pixels of that size, 0 = unknown).
* **Motorcycle** (Middlebury 2014, Scharstein et al.), shipped inside the scikit-image wheel as
  ``skimage/data/motorcycle_{left,right}.png`` (741×500, the benchmark's images downsampled ×4)
  and ``motorcycle_disp.npz`` (float32 disparity of that size, ``inf`` = unknown). The wheel is
  read as a zip file, so scikit-image need not be installed: ``pip download --no-deps
  scikit-image`` fetches it.

:func:`prepare_real_pairs` writes each pair as ``<out>/<name>/im0.png``, ``im1.png`` and
``disp0GT.pfm`` (``inf`` = unknown), the layout of :func:`dtp_stereo.data.readers.list_dataset`
``("middlebury2014", out, "all")``, plus ``<out>/manifest.json`` (source, licence, SHA-256 of every
file written). :func:`scale_pair` downsamples a pair and its ground truth consistently.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from dtp_stereo.data.formats import read_image_rgb, write_image_rgb, write_pfm

__all__ = ["OPENCV_DOC_DATA", "ALOE_FILES", "SKIMAGE_MOTORCYCLE", "load_aloe",
           "load_motorcycle", "find_skimage_wheel", "prepare_real_pairs", "scale_pair"]

OPENCV_DOC_DATA = "/usr/share/doc/opencv-doc/examples/data"
ALOE_FILES = ("aloeL.jpg", "aloeR.jpg", "aloeGT.png")
SKIMAGE_MOTORCYCLE = ("skimage/data/motorcycle_left.png", "skimage/data/motorcycle_right.png",
                      "skimage/data/motorcycle_disp.npz")
_LICENCE = ("Middlebury stereo datasets (Scharstein et al.): free for research use; cite the "
            "Middlebury papers. Evaluation only, never training data.")

Pair = Tuple[np.ndarray, np.ndarray, np.ndarray]


def load_aloe(data_dir: str = OPENCV_DOC_DATA) -> Pair:
    """Read the Aloe pair of ``opencv-doc`` at its shipped size.

    Returns:
        ``(left, right, gt)``: H×W×3 uint8 RGB images and H×W float32 disparity in pixels,
        ``inf`` where unknown.

    Raises:
        FileNotFoundError: a file is missing (the message says to install ``opencv-doc``).
        ValueError: an unreadable ground truth or sizes that differ.
    """
    missing = [n for n in ALOE_FILES if not os.path.isfile(os.path.join(data_dir, n))]
    if missing:
        raise FileNotFoundError(f"Aloe stereo data not found: {', '.join(missing)} missing in "
                                f"{data_dir}; install it with 'apt-get install opencv-doc'")
    left = read_image_rgb(os.path.join(data_dir, ALOE_FILES[0]))
    right = read_image_rgb(os.path.join(data_dir, ALOE_FILES[1]))
    gt_path = os.path.join(data_dir, ALOE_FILES[2])
    raw = cv2.imread(gt_path, cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint8:
        raise ValueError(f"{gt_path}: expected an 8-bit disparity PNG")
    if raw.ndim == 3:
        raw = raw[:, :, 0]
    if left.shape != right.shape or left.shape[:2] != raw.shape:
        raise ValueError(f"Aloe sizes differ in {data_dir}: left {left.shape[:2]}, right "
                         f"{right.shape[:2]}, GT {raw.shape}")
    gt = raw.astype(np.float32)
    gt[raw == 0] = np.inf
    return left, right, gt


def find_skimage_wheel(search: Optional[str] = None) -> Optional[str]:
    """A scikit-image wheel or installed package folder that holds the Motorcycle pair.

    Looks at ``search`` (a wheel file or a folder of wheels), then at an installed ``skimage``.
    Returns ``None`` when nothing is found.
    """
    candidates: List[str] = []
    if search:
        candidates += ([search] if os.path.isfile(search) else
                       [search] + sorted(glob.glob(os.path.join(search, "scikit_image-*.whl"))))
    try:
        import importlib.util

        spec = importlib.util.find_spec("skimage")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(os.path.dirname(list(spec.submodule_search_locations)[0]))
    except (ImportError, ValueError):
        pass
    for c in candidates:
        if os.path.isdir(c) and os.path.isfile(os.path.join(c, SKIMAGE_MOTORCYCLE[0])):
            return c
        if os.path.isfile(c) and zipfile.is_zipfile(c):
            with zipfile.ZipFile(c) as z:
                if all(n in z.namelist() for n in SKIMAGE_MOTORCYCLE):
                    return c
    return None


def load_motorcycle(source: str) -> Pair:
    """Read Middlebury 2014 Motorcycle (741×500) from a scikit-image wheel or install folder.

    Returns:
        ``(left, right, gt)`` as :func:`load_aloe` (``inf`` = unknown disparity).
    """
    def read(name: str) -> bytes:
        if os.path.isdir(source):
            with open(os.path.join(source, name), "rb") as fh:
                return fh.read()
        with zipfile.ZipFile(source) as z:
            return z.read(name)

    def image(name: str) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{source}: cannot decode {name}")
        return np.ascontiguousarray(bgr[:, :, ::-1])

    left, right = image(SKIMAGE_MOTORCYCLE[0]), image(SKIMAGE_MOTORCYCLE[1])
    with np.load(io.BytesIO(read(SKIMAGE_MOTORCYCLE[2]))) as npz:
        gt = np.asarray(npz[npz.files[0]], np.float32)
    if left.shape != right.shape or left.shape[:2] != gt.shape:
        raise ValueError(f"{source}: Motorcycle sizes differ: {left.shape}, {right.shape}, "
                         f"{gt.shape}")
    gt = np.where(np.isfinite(gt) & (gt > 0), gt, np.inf).astype(np.float32)
    return left, right, gt


def scale_pair(left: np.ndarray, right: np.ndarray, gt: np.ndarray, scale: float) -> Pair:
    """Downsample a pair by ``scale`` in (0, 1]: images ``INTER_AREA``, GT nearest × ``scale``.

    Unknown GT (``inf``, ``nan`` or <= 0) stays unknown (``inf``).
    """
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if scale == 1.0:
        return left, right, gt
    h, w = gt.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 wants (W, H)
    known = np.isfinite(gt) & (gt > 0)
    g = cv2.resize(np.where(known, gt, 0.0).astype(np.float32), size,
                   interpolation=cv2.INTER_NEAREST) * np.float32(scale)
    g[g <= 0] = np.inf
    return (cv2.resize(left, size, interpolation=cv2.INTER_AREA),
            cv2.resize(right, size, interpolation=cv2.INTER_AREA), g)


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _write_pair(out_root: str, name: str, pair: Pair, source: str) -> Dict[str, Any]:
    left, right, gt = pair
    scene = os.path.join(out_root, name)
    os.makedirs(scene, exist_ok=True)
    files = {"im0.png": left, "im1.png": right}
    for fname, img in files.items():
        write_image_rgb(os.path.join(scene, fname), img)
    write_pfm(os.path.join(scene, "disp0GT.pfm"), gt)
    known = np.isfinite(gt)
    return {"name": name, "source": source, "licence": _LICENCE,
            "size": [int(gt.shape[1]), int(gt.shape[0])],
            "gt_known_fraction": float(known.mean()),
            "gt_max_px": float(gt[known].max()) if known.any() else None,
            "files": {f: _sha256(os.path.join(scene, f))
                      for f in ("im0.png", "im1.png", "disp0GT.pfm")}}


def prepare_real_pairs(out_root: str, opencv_doc_dir: str = OPENCV_DOC_DATA,
                       skimage_source: Optional[str] = None) -> Dict[str, Any]:
    """Write every real pair that can be found into ``out_root`` (Middlebury 2014 layout).

    Args:
        out_root: output folder; one sub-folder per pair.
        opencv_doc_dir: folder of ``opencv-doc``'s example data (Aloe).
        skimage_source: a scikit-image wheel, a folder of wheels or an install folder
            (Motorcycle); ``None`` looks for an installed scikit-image only.

    Returns:
        The manifest (also written to ``<out_root>/manifest.json``): ``pairs`` written and
        ``missing`` sources with the reason.

    Raises:
        FileNotFoundError: no pair at all could be found.
    """
    pairs: List[Dict[str, Any]] = []
    missing: Dict[str, str] = {}
    try:
        pairs.append(_write_pair(out_root, "aloe", load_aloe(opencv_doc_dir),
                                 f"opencv-doc {opencv_doc_dir}/aloe*"))
    except (FileNotFoundError, ValueError) as exc:
        missing["aloe"] = str(exc)
    wheel = find_skimage_wheel(skimage_source)
    if wheel is None:
        missing["motorcycle"] = ("no scikit-image wheel or install found (get one with "
                                 "'pip download --no-deps scikit-image -d DIR')")
    else:
        pairs.append(_write_pair(out_root, "motorcycle", load_motorcycle(wheel),
                                 f"scikit-image {os.path.basename(wheel)}"))
    if not pairs:
        raise FileNotFoundError(f"no real stereo pair found: {missing}")
    manifest = {"pairs": pairs, "missing": missing}
    with open(os.path.join(out_root, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)
    return manifest
