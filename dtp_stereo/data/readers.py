"""Folder readers for stereo datasets: list samples, then load them into the sample dict.

Entry points:
    ``list_dataset(name, root, split)`` -> list of :class:`SampleRef` (cheap: paths only) and
    ``load_sample(ref)`` -> sample dict with ``left``/``right`` (H×W×3 uint8 RGB),
    ``disparity`` (H×W float32 pixels, 0 where unknown), ``valid`` (H×W bool), ``valid_noc``
    (H×W bool, when the dataset has a non-occlusion mask) and ``meta``
    (``dataset``, ``name``, ``has_gt``, paths, ``calib`` for Middlebury/ETH3D).

Layouts (``root`` is the dataset folder):
    * SceneFlow FlyingThings3D ``frames_<pass>/{TRAIN,TEST}/{A,B,C}/NNNN/{left,right}/*.png``
      and ``disparity/{TRAIN,TEST}/.../left/*.pfm``; Driving and Monkaa the same trees without
      the split level (training data only). ``"sceneflow"`` expects sub-folders whose names
      start with ``flyingthings3d``, ``driving`` and ``monkaa`` (train = all three,
      test = FlyingThings3D TEST).
    * KITTI 2015 ``{training,testing}/image_2/*_10.png``, ``image_3``, ``disp_occ_0``,
      ``disp_noc_0``; KITTI 2012 ``colored_0``, ``colored_1``, ``disp_occ``, ``disp_noc``.
    * Middlebury 2014 ``<Scene>-perfect/{im0.png, im1.png, disp0.pfm, calib.txt}``, optional
      ``mask0nocc.png`` (MiddEval3-style ``disp0GT.pfm`` also accepted).
    * ETH3D two-view ``<scene>/{im0.png, im1.png}``, GT ``disp0GT.pfm`` + ``mask0nocc.png`` in
      the scene folder, in ``gt_root/<scene>`` or in the sibling ``<root>_gt/<scene>``.
    * ``synthetic`` (root ignored), spec ``synthetic[:N[:HxW[:seed[:max_disparity]]]]`` given as
      the name or the root.
"""

from __future__ import annotations

import functools
import glob
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dtp_stereo.data import formats
from dtp_stereo.data.synthetic import SyntheticStereo, split_seed

__all__ = ["SampleRef", "DATASETS", "list_dataset", "load_sample", "parse_synthetic_spec"]

DATASETS = ("sceneflow", "flyingthings3d", "driving", "monkaa", "kitti2015", "kitti2012",
            "middlebury2014", "eth3d", "synthetic")


@dataclass(frozen=True)
class SampleRef:
    """Where one stereo sample lives (paths only; nothing is read until ``load_sample``).

    Attributes:
        dataset: dataset name (one of ``DATASETS``).
        name: sample id unique within the dataset (relative path or scene name).
        left, right: image paths ("" for synthetic).
        disparity: ground-truth path or None (test splits).
        disparity_format: ``"pfm"``, ``"kitti_png"`` or ``"synthetic"``.
        disparity_noc: non-occluded GT (KITTI ``disp_noc``) or None.
        mask_noc: non-occlusion mask PNG (255 = non-occluded) or None.
        calib: ``calib.txt`` path or None.
        synthetic: ``(height, width, max_disparity, seed, index)`` for synthetic samples.
    """

    dataset: str
    name: str
    left: str
    right: str
    disparity: Optional[str] = None
    disparity_format: str = "pfm"
    disparity_noc: Optional[str] = None
    mask_noc: Optional[str] = None
    calib: Optional[str] = None
    synthetic: Optional[Tuple[int, int, int, int, int]] = None


# ------------------------------------------------------------------------------ helpers
def _require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: {what} folder not found")
    return path


def _images_in(folder: str) -> List[str]:
    files = []
    for ext in ("png", "PNG", "jpg", "jpeg", "webp"):
        files.extend(glob.glob(os.path.join(glob.escape(folder), f"*.{ext}")))
    return sorted(set(files))


def _check_split(dataset: str, split: Optional[str], allowed: Tuple[str, ...]) -> str:
    split = "train" if split is None else split.lower()
    if split not in allowed:
        raise ValueError(f"{dataset}: unknown split {split!r}; expected one of {allowed}")
    return split


# ----------------------------------------------------------------------------- SceneFlow
def _scan_frames(dataset: str, frames_root: str, disp_root: str, name_root: str
                 ) -> List[SampleRef]:
    """Every ``left/*.png`` under ``frames_root`` with its ``right`` twin and ``left/*.pfm``.

    Sample names are image paths relative to ``name_root``.
    """
    refs = []
    for dirpath, dirnames, _ in os.walk(frames_root):
        dirnames.sort()
        if os.path.basename(dirpath) != "left":
            continue
        parent = os.path.dirname(dirpath)
        rel = os.path.relpath(parent, frames_root)
        right_dir = os.path.join(parent, "right")
        disp_dir = os.path.normpath(os.path.join(disp_root, rel, "left"))
        for left in _images_in(dirpath):
            stem = os.path.splitext(os.path.basename(left))[0]
            right = os.path.join(right_dir, os.path.basename(left))
            disp = os.path.join(disp_dir, stem + ".pfm")
            if not os.path.isfile(right):
                raise FileNotFoundError(f"{right_dir}: incomplete pair, missing {stem} (right)")
            if not os.path.isfile(disp):
                raise FileNotFoundError(f"{disp_dir}: incomplete pair, missing {stem}.pfm")
            name = os.path.relpath(left, name_root)
            refs.append(SampleRef(dataset, name, left, right, disp, "pfm"))
    if not refs:
        raise FileNotFoundError(f"{frames_root}: no left/right image folders found ({dataset})")
    return refs


def _sceneflow_part(dataset: str, root: str, split: Optional[str], render_pass: str,
                    tag: Optional[str] = None, name_root: Optional[str] = None
                    ) -> List[SampleRef]:
    """One SceneFlow subset; ``tag``/``name_root`` relabel samples for the combined set."""
    tag = tag or dataset
    name_root = name_root or root
    frames = _require_dir(os.path.join(root, f"frames_{render_pass}"), f"{dataset} frames")
    disp = _require_dir(os.path.join(root, "disparity"), f"{dataset} disparity")
    if dataset == "flyingthings3d":
        split = _check_split(dataset, split, ("train", "test"))
        sub = split.upper()
        return _scan_frames(tag, _require_dir(os.path.join(frames, sub), f"{dataset} split"),
                            os.path.join(disp, sub), name_root)
    _check_split(dataset, split, ("train",))
    return _scan_frames(tag, frames, disp, name_root)


def _sceneflow(root: str, split: Optional[str], render_pass: str) -> List[SampleRef]:
    split = _check_split("sceneflow", split, ("train", "test"))
    _require_dir(root, "sceneflow")
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    parts = ("flyingthings3d",) if split == "test" else ("flyingthings3d", "driving", "monkaa")
    refs: List[SampleRef] = []
    for part in parts:
        match = [d for d in subdirs if d.lower().startswith(part)]
        if not match:
            raise FileNotFoundError(f"{root}: no sub-folder starting with {part!r} (sceneflow)")
        refs.extend(_sceneflow_part(part, os.path.join(root, match[0]), split, render_pass,
                                    tag="sceneflow", name_root=root))
    return refs


# --------------------------------------------------------------------------------- KITTI
_KITTI_DIRS = {
    "kitti2015": ("image_2", "image_3", "disp_occ_0", "disp_noc_0"),
    "kitti2012": ("colored_0", "colored_1", "disp_occ", "disp_noc"),
}


def _kitti(dataset: str, root: str, split: Optional[str]) -> List[SampleRef]:
    split = _check_split(dataset, split, ("train", "test"))
    left_name, right_name, occ_name, noc_name = _KITTI_DIRS[dataset]
    base = os.path.join(root, "training" if split == "train" else "testing")
    if not os.path.isdir(base) and os.path.isdir(os.path.join(root, left_name)):
        base = root  # root already points at training/ or testing/
    left_dir = _require_dir(os.path.join(base, left_name), f"{dataset} left image")
    right_dir = _require_dir(os.path.join(base, right_name), f"{dataset} right image")
    occ_dir, noc_dir = os.path.join(base, occ_name), os.path.join(base, noc_name)
    has_gt = os.path.isdir(occ_dir)
    if split == "train" and not has_gt:
        raise FileNotFoundError(f"{occ_dir}: {dataset} ground-truth folder not found")
    refs = []
    for left in _images_in(left_dir):
        fname = os.path.basename(left)
        if not os.path.splitext(fname)[0].endswith("_10"):
            continue  # only the reference frame (_10) has ground truth
        right = os.path.join(right_dir, fname)
        if not os.path.isfile(right):
            raise FileNotFoundError(f"{right_dir}: incomplete pair, missing {fname}")
        disp = noc = None
        if has_gt:
            disp = os.path.join(occ_dir, fname)
            if not os.path.isfile(disp):
                raise FileNotFoundError(f"{occ_dir}: incomplete pair, missing {fname}")
            noc_path = os.path.join(noc_dir, fname)
            noc = noc_path if os.path.isfile(noc_path) else None
        name = os.path.splitext(fname)[0]
        refs.append(SampleRef(dataset, name, left, right, disp, "kitti_png", noc))
    if not refs:
        raise FileNotFoundError(f"{left_dir}: no *_10.png images found ({dataset})")
    return refs


# ------------------------------------------------------------------- Middlebury and ETH3D
def _first_file(folder: str, names: Tuple[str, ...]) -> Optional[str]:
    for n in names:
        p = os.path.join(folder, n)
        if os.path.isfile(p):
            return p
    return None


def _scene_ref(dataset: str, scene_dir: str, gt_dirs: List[str]) -> SampleRef:
    scene = os.path.basename(os.path.normpath(scene_dir))
    left, right = os.path.join(scene_dir, "im0.png"), os.path.join(scene_dir, "im1.png")
    if not os.path.isfile(right):
        raise FileNotFoundError(f"{scene_dir}: incomplete pair, missing im1.png")
    disp = mask = None
    for gdir in [scene_dir] + gt_dirs:
        disp = _first_file(gdir, ("disp0GT.pfm", "disp0.pfm"))
        if disp is not None:
            mask = _first_file(gdir, ("mask0nocc.png",))
            break
    calib = _first_file(scene_dir, ("calib.txt",))
    return SampleRef(dataset, scene, left, right, disp, "pfm", None, mask, calib)


def _scene_dirs(root: str, dataset: str) -> List[str]:
    _require_dir(root, dataset)
    dirs = sorted(os.path.join(root, d) for d in os.listdir(root)
                  if os.path.isfile(os.path.join(root, d, "im0.png")))
    if not dirs:
        raise FileNotFoundError(f"{root}: no <scene>/im0.png folders found ({dataset})")
    return dirs


def _middlebury(root: str, split: Optional[str]) -> List[SampleRef]:
    split = _check_split("middlebury2014", split,
                         ("train", "test", "all", "perfect", "imperfect"))
    dirs = _scene_dirs(root, "middlebury2014")
    perfect = [d for d in dirs if d.endswith("-perfect")]
    if split == "imperfect":
        dirs = [d for d in dirs if d.endswith("-imperfect")]
    elif split != "all" and perfect:
        dirs = perfect  # the -imperfect twins share the same GT
    if not dirs:
        raise FileNotFoundError(f"{root}: no middlebury2014 scenes for split {split!r}")
    return [_scene_ref("middlebury2014", d, []) for d in dirs]


def _eth3d(root: str, split: Optional[str], gt_root: Optional[str]) -> List[SampleRef]:
    _check_split("eth3d", split, ("train", "test"))
    dirs = _scene_dirs(root, "eth3d")
    if gt_root is not None:
        _require_dir(gt_root, "eth3d ground-truth")
    refs = []
    for d in dirs:
        scene = os.path.basename(d)
        gt_dirs = [os.path.join(g, scene) for g in
                   ([gt_root] if gt_root else []) + [os.path.normpath(root) + "_gt"]]
        refs.append(_scene_ref("eth3d", d, gt_dirs))
    return refs


# ----------------------------------------------------------------------------- synthetic
def parse_synthetic_spec(spec: str) -> Tuple[int, int, int, int, int]:
    """Parse ``synthetic[:N[:HxW[:seed[:max_disparity]]]]``.

    Returns:
        ``(N, height, width, seed, max_disparity)``; defaults 100, 256, 512, 0, 192.
    """
    parts = spec.split(":")
    if parts[0].lower() != "synthetic" or len(parts) > 5:
        raise ValueError(f"bad synthetic spec {spec!r}; expected synthetic:N:HxW:seed[:maxdisp]")
    try:
        n = int(parts[1]) if len(parts) > 1 and parts[1] else 100
        h, w = (int(v) for v in parts[2].lower().split("x")) if len(parts) > 2 else (256, 512)
        seed = int(parts[3]) if len(parts) > 3 else 0
        maxd = int(parts[4]) if len(parts) > 4 else 192
    except ValueError:
        raise ValueError(
            f"bad synthetic spec {spec!r}; expected synthetic:N:HxW:seed[:maxdisp]"
        ) from None
    return n, h, w, seed, maxd


def _synthetic(spec: str, split: Optional[str]) -> List[SampleRef]:
    n, h, w, seed, maxd = parse_synthetic_spec(spec)
    seed = split_seed(seed, split)
    return [SampleRef("synthetic", f"synthetic_s{seed}_{i:06d}", "", "", None, "synthetic",
                      synthetic=(h, w, maxd, seed, i)) for i in range(n)]


@functools.lru_cache(maxsize=8)
def _generator(h: int, w: int, maxd: int, seed: int) -> SyntheticStereo:
    return SyntheticStereo(h, w, maxd, seed)


# ---------------------------------------------------------------------------- public API
def list_dataset(name: str, root: str = "", split: Optional[str] = None, *,
                 render_pass: str = "cleanpass", gt_root: Optional[str] = None
                 ) -> List[SampleRef]:
    """List the samples of a dataset folder.

    Args:
        name: one of ``DATASETS`` (case-insensitive), or a synthetic spec
            ``synthetic:N:HxW:seed[:max_disparity]``.
        root: dataset folder (ignored for synthetic unless it holds the spec).
        split: ``"train"`` (default) or ``"test"``; ``"val"`` too for synthetic; Middlebury also
            ``"all"``, ``"perfect"``, ``"imperfect"``.
        render_pass: SceneFlow ``"cleanpass"`` or ``"finalpass"``.
        gt_root: ETH3D ground-truth folder (``<gt_root>/<scene>/disp0GT.pfm``).

    Returns:
        Sorted list of :class:`SampleRef`.

    Raises:
        ValueError: unknown dataset name or split.
        FileNotFoundError: the expected layout or half of a pair is missing (names the folder).
    """
    key = name.lower()
    if key.startswith("synthetic"):
        spec = root if key == "synthetic" and root.lower().startswith("synthetic") else name
        return _synthetic(spec, split)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    root = os.fspath(root)
    if key == "sceneflow":
        return _sceneflow(root, split, render_pass)
    if key in ("flyingthings3d", "driving", "monkaa"):
        return _sceneflow_part(key, root, split, render_pass)
    if key in _KITTI_DIRS:
        return _kitti(key, root, split)
    if key == "middlebury2014":
        return _middlebury(root, split)
    return _eth3d(root, split, gt_root)


def load_sample(ref: SampleRef) -> Dict[str, Any]:
    """Read one sample (see the module docstring for the dict layout).

    Samples without ground truth get ``disparity`` zeros, ``valid`` all False and
    ``meta["has_gt"] = False``. PFM disparities that are non-finite or negative are invalid
    (and set to 0); masking to the network's disparity range is the metric's job.
    """
    if ref.disparity_format == "synthetic":
        if ref.synthetic is None:
            raise ValueError(f"{ref.name}: synthetic sample without generator settings")
        h, w, maxd, seed, index = ref.synthetic
        sample = _generator(h, w, maxd, seed).sample(index)
        sample["meta"]["has_gt"] = True
        return sample
    left = formats.read_image_rgb(ref.left)
    right = formats.read_image_rgb(ref.right)
    if left.shape != right.shape:
        raise ValueError(f"{ref.left}: left {left.shape} and right {right.shape} sizes differ")
    h, w = left.shape[:2]
    meta: Dict[str, Any] = {"dataset": ref.dataset, "name": ref.name, "left_path": ref.left,
                            "right_path": ref.right, "disparity_path": ref.disparity,
                            "has_gt": ref.disparity is not None}
    sample: Dict[str, Any] = {"left": left, "right": right, "meta": meta}
    if ref.disparity is None:
        disp, valid = np.zeros((h, w), np.float32), np.zeros((h, w), bool)
    elif ref.disparity_format == "kitti_png":
        disp, valid = formats.read_kitti_disparity(ref.disparity)
        if ref.disparity_noc is not None:
            sample["valid_noc"] = formats.read_kitti_disparity(ref.disparity_noc)[1] & valid
    elif ref.disparity_format == "pfm":
        disp = formats.read_pfm(ref.disparity)
        if disp.ndim == 3:
            disp = disp[:, :, 0]
        valid = np.isfinite(disp) & (disp >= 0)
        disp = np.where(valid, disp, 0.0).astype(np.float32)
        if ref.mask_noc is not None:
            sample["valid_noc"] = formats.read_mask_png(ref.mask_noc) & valid
    else:
        raise ValueError(f"{ref.disparity}: unknown disparity format {ref.disparity_format!r}")
    if disp.shape != (h, w):
        raise ValueError(f"{ref.disparity}: disparity {disp.shape} does not match image {(h, w)}")
    if "valid_noc" in sample and sample["valid_noc"].shape != (h, w):
        raise ValueError(f"{ref.name}: non-occlusion mask does not match image size {(h, w)}")
    if ref.calib is not None:
        meta["calib"] = formats.read_middlebury_calib(ref.calib)
    sample["disparity"] = disp
    sample["valid"] = valid
    return sample
