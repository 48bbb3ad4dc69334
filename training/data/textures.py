"""A bank of natural photographs used as stereo training textures, and its loader.

:func:`build_texture_bank` collects photographs from folders the user names and, by default,
from Debian's photo packages:

* ``/usr/share/backgrounds`` (``gnome-backgrounds``, ``mate-backgrounds``, ``ukui-wallpapers``),
  searched recursively;
* ``/usr/share/wallpapers`` (``plasma-workspace-wallpapers``): every wallpaper ships
  ``contents/images/<W>x<H>.jpg|png`` at several resolutions, of which only the largest is read;
* the photographs in ``/usr/share/doc/opencv-doc/examples/data``, never its stereo,
  calibration or ground-truth files (``aloe*``, ``left*``, ``right*``, ``*calib*``: evaluation
  data; these name patterns are excluded from every source) nor its drawings, logos and
  rendered test patterns.

Only raster images with both sides >= ``min_side`` pixels are kept, without cut-outs (more than
1 % transparent pixels) and, optionally, only with enough textured area
(:func:`texture_detail` >= ``min_detail``). Near duplicates (the same
photo at several resolutions, or re-encoded) are found with a 64-bit DCT perceptual hash of a
32×32 grey thumbnail; within Hamming distance ``max_hamming`` the largest copy is kept. Each kept
photo is written as ``<out>/<sha256 prefix>.jpg`` (longer side at most ``max_side`` pixels),
with ``<out>/manifest.json`` recording source path, Debian package, licence, SHA-256 of the
source file, perceptual hash and sizes.

:class:`TextureBank` loads such a folder and cuts random patches: random photo, crop at a random
scale, a random 90° rotation and flip, and a per-channel gain, so a few dozen photos give many
distinct textures.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from dtp_stereo.data.real_pairs import OPENCV_DOC_DATA

__all__ = ["DEFAULT_SOURCES", "DEFAULT_OUT", "TextureBank", "build_texture_bank",
           "list_candidates", "perceptual_hash", "hamming", "texture_detail", "debian_packages",
           "package_licence"]

PathLike = Union[str, os.PathLike]

DEBIAN_BACKGROUNDS = "/usr/share/backgrounds"
DEBIAN_WALLPAPERS = "/usr/share/wallpapers"
DEFAULT_SOURCES: Tuple[Tuple[str, str], ...] = (
    (DEBIAN_BACKGROUNDS, "backgrounds"),
    (DEBIAN_WALLPAPERS, "wallpapers"),
    (OPENCV_DOC_DATA, "opencv-doc"),
)
DEFAULT_OUT = "data/textures"
MANIFEST = "manifest.json"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# Stereo, calibration and ground-truth files (evaluation data): excluded from every source.
EVAL_PATTERNS = ("aloe*", "left*", "right*", "*calib*", "*intrinsics*", "im0.*", "im1.*",
                 "disp0*", "disp1*", "*gt.*")
# Previews of a wallpaper (a thumbnail of the real image).
PREVIEW_PATTERNS = ("screenshot*",)
# opencv-doc samples that are drawings, logos, rendered or synthetic test patterns, not photos.
OPENCV_NON_PHOTOS = ("*logo*", "chessboard*", "digits*", "pic[0-9]*", "gradient*", "mask*",
                     "templ*", "tmpl*", "ml.*", "detect_blob*", "ellipses*", "imagetext*",
                     "notes*", "cards*", "blender_suzanne*")
_SIZE_NAME = re.compile(r"^(\d+)x(\d+)$")
_VARIANT = "smaller resolution variant"
_ROTATIONS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


# ------------------------------------------------------------------------------ listing
def _matches(name: str, patterns: Iterable[str]) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


def _exclusion(name: str, origin: str) -> Optional[str]:
    """Why a file name is excluded (``None``: it is a candidate)."""
    if not name.lower().endswith(IMAGE_EXTS):
        return "not a raster image"
    if _matches(name, EVAL_PATTERNS):
        return "stereo/calibration/ground-truth file (evaluation data)"
    if _matches(name, PREVIEW_PATTERNS):
        return "preview thumbnail"
    if origin == "opencv-doc" and _matches(name, OPENCV_NON_PHOTOS):
        return "not a photograph (drawing, logo or test pattern)"
    return None


def _largest_variants(files: List[Path]) -> Tuple[List[Path], List[Path]]:
    """Within one folder, keep only the largest of files named ``<W>x<H>.<ext>``.

    Returns:
        (kept files, dropped smaller variants).
    """
    sized = [(f, _SIZE_NAME.match(f.stem)) for f in files]
    variants = [(int(m.group(1)) * int(m.group(2)), f) for f, m in sized if m]
    if len(variants) < 2:
        return files, []
    best = max(variants, key=lambda v: (v[0], str(v[1])))[1]
    dropped = [f for _, f in variants if f != best]
    return [f for f in files if f not in dropped], dropped


def list_candidates(sources: Sequence[Tuple[PathLike, str]]
                    ) -> Tuple[List[Tuple[Path, str]], List[Tuple[Path, str]]]:
    """List candidate image files under the source folders, recursively.

    Args:
        sources: ``(folder, origin)`` pairs; ``origin`` is ``"opencv-doc"`` for the OpenCV
            sample data (which gets the non-photo exclusions) or any other label.

    Returns:
        ``(candidates, excluded)``: ``(path, origin)`` of the candidates, and ``(path, reason)``
        of every file that was left out by its name. Missing folders are skipped.
    """
    candidates: List[Tuple[Path, str]] = []
    excluded: List[Tuple[Path, str]] = []
    for folder, origin in sources:
        root = Path(folder)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            kept: List[Path] = []
            for name in sorted(filenames):
                path = Path(dirpath) / name
                reason = _exclusion(name, origin)
                if reason is None and not path.is_file():
                    reason = "not a regular file"
                if reason is None:
                    kept.append(path)
                else:
                    excluded.append((path, reason))
            kept, dropped = _largest_variants(kept)
            excluded.extend((p, _VARIANT) for p in dropped)
            candidates.extend((p, origin) for p in kept)
    return candidates, excluded


# ------------------------------------------------------------------------------ hashing
def perceptual_hash(image: np.ndarray) -> int:
    """64-bit DCT perceptual hash of an image (any size, H×W×3 uint8 RGB or H×W grey).

    The image is reduced to a 32×32 grey thumbnail; bit ``i`` of the hash says whether the
    ``i``-th of the 8×8 lowest-frequency DCT coefficients is above their median.
    """
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(grey.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(thumb)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two hashes."""
    return bin(int(a) ^ int(b)).count("1")


def texture_detail(image: np.ndarray) -> float:
    """Fraction of textured area: 8×8 blocks with grey std > 3 levels on a 512-px-wide copy.

    Photographs of natural scenes mostly score above 0.3; flat vector art often below.
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = grey.shape
    grey = cv2.resize(grey, (512, max(8, int(round(512 * h / w)))), interpolation=cv2.INTER_AREA)
    rows = grey.shape[0] // 8
    blocks = grey[:rows * 8].reshape(rows, 8, 64, 8)
    return float(np.mean(blocks.std(axis=(1, 3)) > 3.0))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ Debian
def debian_packages(paths: Sequence[PathLike]) -> Dict[str, Optional[str]]:
    """The Debian package owning each path (``dpkg -S``), ``None`` where none or no dpkg."""
    out: Dict[str, Optional[str]] = {os.fspath(p): None for p in paths}
    dpkg = shutil.which("dpkg")
    if dpkg is None or not out:
        return out
    names = list(out)
    for start in range(0, len(names), 200):
        chunk = names[start:start + 200]
        try:
            proc = subprocess.run([dpkg, "-S", *chunk], capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.SubprocessError):
            return out
        for line in proc.stdout.splitlines():
            if line.startswith("diversion ") or ": " not in line:
                continue
            pkgs, path = line.split(": ", 1)
            if path in out and out[path] is None:
                out[path] = pkgs.split(",")[0].strip().split(":")[0]
    return out


def package_licence(package: Optional[str], doc_root: PathLike = "/usr/share/doc") -> str:
    """The first ``License:`` field of ``<doc_root>/<package>/copyright``, else ``"unknown"``."""
    if not package:
        return "unknown"
    path = Path(doc_root) / package / "copyright"
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("License:"):
                    value = line[len("License:"):].strip()
                    if value:
                        return value
    except OSError:
        pass
    return "unknown"


# ------------------------------------------------------------------------------ reading
def _read_photo(path: Path) -> Tuple[Optional[np.ndarray], str]:
    """Decode an image as H×W×3 uint8 RGB; returns ``(image, "")`` or ``(None, reason)``.

    Images with more than 1 % transparent pixels are rejected (cut-outs, not photographs).
    """
    raw = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        return None, "unreadable"
    if raw.dtype == np.uint16:
        raw = np.round(raw.astype(np.float32) / 257.0).astype(np.uint8)
    elif raw.dtype != np.uint8:
        return None, f"unsupported dtype {raw.dtype}"
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[:, :, 0]
    if raw.ndim == 2:
        return cv2.cvtColor(raw, cv2.COLOR_GRAY2RGB), ""
    if raw.ndim == 3 and raw.shape[2] == 4:
        if float(np.mean(raw[:, :, 3] < 255)) > 0.01:
            return None, "transparent (not a photograph)"
        return cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB), ""
    if raw.ndim == 3 and raw.shape[2] == 3:
        return cv2.cvtColor(raw, cv2.COLOR_BGR2RGB), ""
    return None, f"unsupported shape {raw.shape}"


def _limit_size(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (area) so the longer side is at most ``max_side`` pixels."""
    h, w = image.shape[:2]
    scale = max_side / float(max(h, w))
    if scale >= 1.0:
        return image
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@dataclass
class _Photo:
    source: Path
    origin: str
    sha256: str
    phash: int
    source_size: Tuple[int, int]  # (width, height), pixels
    image: np.ndarray  # H×W×3 uint8 RGB, longer side <= max_side
    detail: float
    duplicates: List[str] = field(default_factory=list)


def _dedupe(photos: List[_Photo], max_hamming: int) -> Tuple[List[_Photo], int]:
    """Greedy near-duplicate removal, largest first; returns (kept, number removed)."""
    order = sorted(photos, key=lambda p: (-p.source_size[0] * p.source_size[1], str(p.source)))
    kept: List[_Photo] = []
    removed = 0
    for photo in order:
        twin = next((k for k in kept if hamming(k.phash, photo.phash) <= max_hamming), None)
        if twin is None:
            kept.append(photo)
        else:
            twin.duplicates.append(os.fspath(photo.source))
            removed += 1
    return kept, removed


# ------------------------------------------------------------------------------ building
def build_texture_bank(
    out: PathLike = DEFAULT_OUT,
    sources: Sequence[PathLike] = (),
    default_sources: Sequence[Tuple[PathLike, str]] = DEFAULT_SOURCES,
    min_side: int = 256,
    max_side: int = 1024,
    max_hamming: int = 6,
    min_detail: float = 0.0,
    jpeg_quality: int = 95,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, Any]:
    """Collect, deduplicate and write a texture bank (see the module docstring).

    Args:
        out: output folder (created); photos listed in an older manifest there are replaced.
        sources: folders of photographs named by the user (searched recursively).
        default_sources: ``(folder, origin)`` pairs also read (default: the Debian folders of
            :data:`DEFAULT_SOURCES`; ``()`` for none); missing folders are skipped.
        min_side: images with a side below this (pixels) are skipped.
        max_side: longer side of the written photos (pixels).
        max_hamming: perceptual-hash distance (bits) up to which two photos are duplicates.
        min_detail: skip images whose :func:`texture_detail` is below this (0: keep all).
        jpeg_quality: quality of the written JPEG files.
        log: optional callable for progress lines.

    Returns:
        The manifest dict (also written to ``<out>/manifest.json``), with ``counts``: ``found``
        (image files), ``excluded`` (by name), ``variants`` (smaller resolutions of a wallpaper,
        not read), ``unreadable``, ``transparent`` (cut-outs), ``too_small``, ``low_detail``,
        ``duplicates`` (near duplicates removed) and ``kept``.
    """
    say = log or (lambda _msg: None)
    src_list = [(Path(s), "user") for s in sources]
    for folder, _origin in src_list:
        if not folder.is_dir():
            raise FileNotFoundError(f"texture source {folder}: not a folder")
    src_list += [(Path(f), str(origin)) for f, origin in default_sources]
    candidates, excluded = list_candidates(src_list)
    excluded = [(p, why) for p, why in excluded if why != "not a raster image"]
    n_variants = sum(1 for _p, why in excluded if why == _VARIANT)
    say(f"{len(candidates)} candidate images, {len(excluded)} images excluded by name")

    photos: List[_Photo] = []
    skipped: List[Tuple[Path, str]] = []
    counts = {"unreadable": 0, "transparent": 0, "too_small": 0, "low_detail": 0}
    for path, origin in candidates:
        image, why = _read_photo(path)
        if image is None:
            counts["transparent" if why.startswith("transparent") else "unreadable"] += 1
            skipped.append((path, why))
            continue
        h, w = image.shape[:2]
        if min(h, w) < min_side:
            counts["too_small"] += 1
            skipped.append((path, f"smaller than {min_side} px ({w}x{h})"))
            continue
        small = _limit_size(image, max_side)
        detail = texture_detail(small)
        if detail < min_detail:
            counts["low_detail"] += 1
            skipped.append((path, f"texture detail {detail:.2f} < {min_detail}"))
            continue
        photos.append(_Photo(path, origin, _sha256(path), perceptual_hash(image), (w, h),
                             small, detail))
    kept, n_dup = _dedupe(photos, max_hamming)
    say(f"{len(photos)} photos read, {n_dup} near duplicates removed, {len(kept)} kept")

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_old_files(out_dir)
    packages = debian_packages([p.source for p in kept])
    entries = []
    for photo in sorted(kept, key=lambda p: str(p.source)):
        name = f"{photo.sha256[:16]}.jpg"
        bgr = cv2.cvtColor(photo.image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(os.fspath(out_dir / name), bgr,
                           [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
            raise OSError(f"{out_dir / name}: cannot write image")
        package = packages.get(os.fspath(photo.source))
        entries.append({
            "file": name,
            "source": os.fspath(photo.source),
            "origin": photo.origin,
            "package": package,
            "licence": package_licence(package),
            "sha256": photo.sha256,
            "phash": f"{photo.phash:016x}",
            "source_size": list(photo.source_size),
            "size": [int(photo.image.shape[1]), int(photo.image.shape[0])],
            "detail": round(photo.detail, 3),
            "duplicates": sorted(photo.duplicates),
        })
    manifest = {
        "created_by": "dtp-train textures",
        "min_side": int(min_side),
        "max_side": int(max_side),
        "max_hamming": int(max_hamming),
        "min_detail": float(min_detail),
        "sources": [os.fspath(f) for f, _o in src_list],
        "counts": {"found": len(candidates) + len(excluded),
                   "excluded": len(excluded) - n_variants, "variants": n_variants, **counts,
                   "duplicates": n_dup, "kept": len(entries)},
        "photos": entries,
        "skipped": [{"source": os.fspath(p), "reason": why} for p, why in excluded + skipped],
    }
    with open(out_dir / MANIFEST, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
    return manifest


def _remove_old_files(out_dir: Path) -> None:
    """Delete the photos an older manifest in ``out_dir`` lists (only those)."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return
    try:
        with open(path, encoding="utf-8") as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        return
    for entry in old.get("photos", []):
        name = os.path.basename(str(entry.get("file", "")))
        if name and (out_dir / name).is_file():
            (out_dir / name).unlink()


# ------------------------------------------------------------------------------ loading
class TextureBank:
    """Random photo patches from a texture-bank folder (photos are loaded once, lazily).

    Args:
        folder: a folder written by :func:`build_texture_bank` (its ``manifest.json`` lists the
            photos) or any folder of ``.jpg``/``.png`` photographs.
        scale_log2: range of the random scale, log2 of output pixels per photo pixel
            (``(-1, 0.5)``: from half to 1.41× the stored photo); raised where needed so the
            crop fits in the photo.
        gain: range of the random per-channel gain.

    Raises:
        FileNotFoundError: the folder holds no photos (the message names it).
    """

    def __init__(self, folder: PathLike, scale_log2: Tuple[float, float] = (-1.0, 0.5),
                 gain: Tuple[float, float] = (0.8, 1.2)) -> None:
        self.folder = Path(folder)
        self.scale_log2 = (float(scale_log2[0]), float(scale_log2[1]))
        self.gain = (float(gain[0]), float(gain[1]))
        self.files = self._list_files()
        if not self.files:
            raise FileNotFoundError(
                f"texture bank {self.folder}: no photos (build one with "
                f"'dtp-train textures --out {self.folder}')")
        self._images: List[Optional[np.ndarray]] = [None] * len(self.files)

    def _list_files(self) -> List[Path]:
        manifest = self.folder / MANIFEST
        if manifest.is_file():
            try:
                with open(manifest, encoding="utf-8") as fh:
                    photos = json.load(fh)["photos"]
                return [self.folder / str(p["file"]) for p in photos]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{manifest}: not a texture-bank manifest ({exc})") from exc
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir()
                      if p.suffix.lower() in (".jpg", ".jpeg", ".png"))

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"TextureBank({os.fspath(self.folder)!r}, {len(self)} photos)"

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_images"] = [None] * len(self.files)  # workers reload instead of copying
        return state

    def image(self, index: int) -> np.ndarray:
        """Photo ``index`` as H×W×3 uint8 RGB (read on first use, then cached)."""
        cached = self._images[index]
        if cached is None:
            raw = cv2.imread(os.fspath(self.files[index]), cv2.IMREAD_COLOR)
            if raw is None:
                raise FileNotFoundError(f"texture bank: cannot read {self.files[index]}")
            cached = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
            self._images[index] = cached
        return cached

    def random_index(self, rng: np.random.Generator, exclude: Optional[int] = None) -> int:
        """A random photo index, different from ``exclude`` when the bank has two or more."""
        n = len(self)
        if exclude is None or n < 2:
            return int(rng.integers(0, n))
        return (int(exclude) + 1 + int(rng.integers(0, n - 1))) % n

    def random_patch(self, rng: np.random.Generator, h: int, w: int,
                     index: Optional[int] = None, rotate: bool = True) -> np.ndarray:
        """A random h×w texture patch, H×W×3 float32 RGB in [0, 255].

        Args:
            rng: the random generator (the patch is deterministic in its state).
            h, w: patch size, pixels.
            index: photo to cut from (default: a random one).
            rotate: allow 90° rotations (``False``: the photo stays upright; it may still be
                mirrored left-right).
        """
        if h < 1 or w < 1:
            raise ValueError(f"TextureBank.random_patch: bad size {h}x{w}")
        idx = self.random_index(rng) if index is None else int(index)
        photo = self.image(idx)
        ph, pw = photo.shape[:2]
        turns = int(rng.integers(0, 4)) if rotate else 0
        flip = bool(rng.random() < 0.5)
        th, tw = (h, w) if turns % 2 == 0 else (w, h)  # size before the rotation
        scale = 2.0 ** rng.uniform(*self.scale_log2)
        scale = max(scale, th / ph, tw / pw)
        ch = min(ph, max(1, int(round(th / scale))))
        cw = min(pw, max(1, int(round(tw / scale))))
        y0 = int(rng.integers(0, ph - ch + 1))
        x0 = int(rng.integers(0, pw - cw + 1))
        crop = photo[y0:y0 + ch, x0:x0 + cw]
        interp = cv2.INTER_AREA if ch > th else cv2.INTER_LINEAR
        patch = cv2.resize(crop, (tw, th), interpolation=interp)
        if turns:
            patch = cv2.rotate(patch, _ROTATIONS[turns])
        if flip:
            patch = cv2.flip(patch, 1)
        gain = rng.uniform(self.gain[0], self.gain[1], 3)
        out = cv2.multiply(patch, (float(gain[0]), float(gain[1]), float(gain[2]), 0.0),
                           dtype=cv2.CV_32F)
        return np.minimum(out, np.float32(255.0), out=out)
