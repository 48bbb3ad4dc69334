"""``dtp-train adapt``: adapt a trained student to the user's own camera, without ground truth.

Data: stereo pairs from a folder (``DIR/left/NAME`` and ``DIR/right/NAME``, matched by file
name) or from a rosbag2 (two image topics, exact stamps). Losses, each switchable (weight 0):

- **proxy** -- confidence-filtered labels from OpenCV SGBM (Tonioni et al., ICCV 2017:
  "Unsupervised adaptation for deep stereo"): SGBM's own uniqueness test and speckle filter,
  plus an explicit left-right consistency check (the right-view SGBM disparity, warped, must
  agree within ``lr_check_px``); L1 on the pixels that pass, weighted by that confidence.
  Or from a frozen **teacher** network (``proxy="teacher"``, ``proxy_teacher`` a checkpoint): its
  disparity on the pair, kept where it agrees with its own right-view disparity (the mirrored
  pair) within ``lr_check_px``; ``"sgbm+teacher"`` takes SGBM's label where SGBM has one and the
  teacher's elsewhere, so the pixels SGBM leaves empty are taught too.
- **photometric** -- the left image rebuilt from the right one warped by the predicted
  disparity, ``0.85·(1 - SSIM)/2 + 0.15·L1`` (Godard et al., CVPR 2017; MADNet, CVPR 2019),
  on pixels whose match lies inside the right image and where the warp explains the left image
  better than the unwarped right image (Monodepth2's auto-mask: occlusions and textureless
  areas do not pull the disparity).
- **smoothness** -- edge-aware first-order smoothness of the mean-normalised disparity.
- **anchor** -- L1 to the disparity of the frozen starting model on the same crops
  (distillation from the starting point, so the network does not forget how to match).
- **synthetic** -- the supervised loss (smooth L1 on ground truth) on fresh procedural scenes
  (:class:`~dtp_stereo.data.synthetic.SyntheticStereo`, a new batch every step) mixed in, the
  replay against forgetting that the issue names; it costs one more forward/backward per step
  and is what lets a higher learning rate adapt further without losing the synthetic test split
  (docs/results/adapt-ablation*.json).

Defaults work without tuning (chosen on two validation pairs, docs/results.md): 600 steps
(300 until session 20: 600 adapt further on Aloe in both seeds and on Motorcycle
in one of two, and forget less), learning rate
3e-4 decaying to 0 on a cosine (the mean rate of the earlier constant 1.5e-4, with less
forgetting: docs/results/adapt-ablation-cosine.json), anchor 0.25 and replay 1.0, BatchNorm
statistics frozen (tiny batches of one camera would skew them), crops of 256×320 of images
scaled to at most 640 px wide. The output is an
ordinary checkpoint of the same architecture and widths (a pruned student stays pruned) with the
adaptation in its provenance (data hashes and counts, settings).
"""

import copy
import hashlib
import logging
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dtp_stereo.baselines import sgbm_disparity
from dtp_stereo.checkpoint import load_model, read_torch_file, save_checkpoint
from dtp_stereo.files import atomic_path
from dtp_stereo.preprocess import image_to_tensor
from training.losses import disparity_loss

__all__ = ["AdaptCfg", "AdaptError", "PROXY_SOURCES", "StereoPairs", "adapt", "learning_rate",
           "load_bag_pairs", "load_folder_pairs", "load_proxy_teacher", "lr_consistent",
           "merge_labels", "pair_proxy", "photometric_loss", "proxy_labels", "smoothness_loss",
           "teacher_labels", "warp_right_to_left"]

_LOG = logging.getLogger(__name__)
PROXY_SOURCES = ("sgbm", "teacher", "sgbm+teacher", "none")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")


class AdaptError(ValueError):
    """Unusable adaptation input or settings; the message names the file, topic or option."""


@dataclass(frozen=True)
class AdaptCfg:
    """Settings of one adaptation run (defaults work without tuning)."""

    steps: int = 600  # optimisation steps (300 until session 20: docs/results.md, issue 10)
    lr: float = 3e-4  # AdamW learning rate (peak of the schedule)
    lr_schedule: str = "cosine"  # "cosine": lr·(1 + cos(π·step/steps))/2, or "constant"
    batch_size: int = 2  # crops per step
    crop: Tuple[int, int] = (256, 320)  # (H, W) of the random crops, pixels (smaller: whole)
    max_width: int = 640  # images wider than this are scaled down first (aspect kept), px
    proxy: str = "sgbm"  # proxy labels: "sgbm", "teacher", "sgbm+teacher" or "none"
    # the teacher of the "teacher" proxies: a checkpoint path or an operating-point name
    proxy_teacher: str = ""
    proxy_weight: float = 1.0
    photometric_weight: float = 1.0
    smoothness_weight: float = 0.1
    anchor_weight: float = 0.25  # L1 to the frozen starting model (anti-forgetting)
    # "all" pixels, or only those without a confident proxy label ("unlabelled"), so that the
    # anchor holds the network where nothing else teaches it and never pulls against the proxy;
    # "unlabelled" averages over those pixels only, so each weighs 1 / (1 - coverage) as much
    anchor_on: str = "all"
    synthetic_weight: float = 1.0  # supervised loss on fresh synthetic scenes (replay); 0 = off
    lr_check_px: float = 1.0  # left-right consistency of the SGBM labels, pixels
    # SGBM block sizes of the proxies, pixels (odd): one, or several whose labels must all be
    # confident and agree within lr_check_px of their median (a consensus: fewer, surer labels)
    proxy_blocks: Tuple[int, ...] = (5,)
    # SGBM search range of the proxies, pixels; 0 = fitted per pair: 1.25 x the 99th percentile
    # of the starting model's disparity, rounded up to 16 (a range of D = 192 on a 320-px-wide
    # image leaves SGBM almost nothing to match: its left 192 columns are invalid)
    proxy_range: int = 0
    # SGBM proxies on images padded on the left by the search range, so that the left border
    # columns, which OpenCV leaves invalid, get labels too (dtp_stereo.baselines.sgbm_disparity)
    proxy_pad: bool = False
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50  # resume state every N steps
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.proxy not in PROXY_SOURCES:
            raise AdaptError(f"adapt: proxy must be one of {', '.join(PROXY_SOURCES)}, got "
                             f"{self.proxy!r}")
        if ("teacher" in self.proxy) != bool(self.proxy_teacher):
            raise AdaptError("adapt: proxy_teacher (a checkpoint) is needed by, and only by, "
                             f"the teacher proxies; proxy={self.proxy!r}, "
                             f"proxy_teacher={self.proxy_teacher!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise AdaptError(f"adapt: lr_schedule must be constant or cosine, got "
                             f"{self.lr_schedule!r}")
        if self.anchor_on not in ("all", "unlabelled"):
            raise AdaptError(f"adapt: anchor_on must be all or unlabelled, got "
                             f"{self.anchor_on!r}")
        if self.anchor_on == "unlabelled" and (self.proxy == "none" or self.proxy_weight == 0):
            raise AdaptError("adapt: anchor_on=unlabelled needs the proxy labels (proxy not "
                             "none, proxy_weight > 0)")
        weights = (self.proxy_weight, self.photometric_weight, self.smoothness_weight,
                   self.anchor_weight, self.synthetic_weight)
        if min(weights) < 0 or (self.proxy_weight if self.proxy != "none" else 0) \
                + self.photometric_weight <= 0:
            raise AdaptError("adapt: weights must be >= 0, and the proxy or the photometric "
                             "loss must be on (something has to teach the network the scene)")
        if not self.proxy_blocks or any(b < 1 or b % 2 == 0 or b > 15
                                        for b in self.proxy_blocks):
            raise AdaptError(f"adapt: proxy_blocks must be odd block sizes in 1..15, got "
                             f"{self.proxy_blocks!r}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_width < 32:
            raise AdaptError("adapt: steps and batch_size must be >= 1, lr > 0, max_width >= 32")


@dataclass
class StereoPairs:
    """Adaptation pairs: H×W×3 uint8 RGB, all the same size; ``names`` for messages."""

    names: List[str]
    left: List[np.ndarray]
    right: List[np.ndarray]
    source: Dict[str, Any]  # where they came from (folder / bag and topics)

    def digests(self) -> List[str]:
        """SHA-256 (first 16 hex digits) of each pair's pixels, for the provenance."""
        out = []
        for left, right in zip(self.left, self.right):
            h = hashlib.sha256(np.ascontiguousarray(left).tobytes())
            h.update(np.ascontiguousarray(right).tobytes())
            out.append(h.hexdigest()[:16])
        return out


# ------------------------------------------------------------------------------------- data
def _check_sizes(names: Sequence[str], left: Sequence[np.ndarray],
                 right: Sequence[np.ndarray], where: str) -> None:
    for name, a, b in zip(names, left, right):
        if a.shape != b.shape:
            raise AdaptError(f"{where}: pair {name!r}: left is {a.shape[1]}x{a.shape[0]}, right "
                             f"is {b.shape[1]}x{b.shape[0]}")
    sizes = {a.shape[:2] for a in left}
    if len(sizes) > 1:
        listed = ", ".join(f"{name} {a.shape[1]}x{a.shape[0]}" for name, a in zip(names, left))
        raise AdaptError(f"{where}: pairs have different sizes ({listed}); adapt on one camera "
                         "at one resolution")


def load_folder_pairs(folder: Path, max_pairs: Optional[int] = None) -> StereoPairs:
    """Pairs ``folder/left/NAME`` + ``folder/right/NAME`` (same file name).

    Raises:
        AdaptError: missing sub-folders, names without a partner (listed), undecodable files
            or sizes that differ (named).
    """
    from dtp_stereo.data.formats import read_image_rgb

    folder = Path(folder)
    sides = {s: folder / s for s in ("left", "right")}
    for side, path in sides.items():
        if not path.is_dir():
            raise AdaptError(f"adapt --pairs {folder}: no folder {path} (expected "
                             f"{folder}/left/NAME and {folder}/right/NAME)")
    files = {s: {p.name: p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
             for s, path in sides.items()}
    pairs_of_sides = (("left", "right"), ("right", "left"))
    only = {s: sorted(set(files[s]) - set(files[o])) for s, o in pairs_of_sides}
    if only["left"] or only["right"]:
        raise AdaptError(f"adapt --pairs {folder}: unmatched file names: only in left/ "
                         f"{only['left'][:5]}, only in right/ {only['right'][:5]}")
    names = sorted(files["left"])[:max_pairs]
    if not names:
        raise AdaptError(f"adapt --pairs {folder}: no images in {sides['left']}")
    left, right = [], []
    for name in names:
        for side, bucket in (("left", left), ("right", right)):
            try:
                bucket.append(read_image_rgb(files[side][name]))
            except (OSError, ValueError) as exc:
                raise AdaptError(f"adapt: cannot read {files[side][name]}: {exc}") from None
    _check_sizes(names, left, right, f"adapt --pairs {folder}")
    return StereoPairs(names, left, right, {"kind": "folder", "path": str(folder)})


def load_bag_pairs(path: Path, left_topic: str, right_topic: str,
                   max_pairs: Optional[int] = None, slop_s: float = 0.0) -> StereoPairs:
    """Pairs of a rosbag2's two image topics with identical stamps, or stamps at most ``slop_s``
    seconds apart (mono is made RGB).

    Raises:
        AdaptError: no bag, a topic missing (the bag's topics are listed), undecodable images,
            no synchronized pair (stamps never equal), or sizes that differ.
    """
    from dtp_stereo.bag import read_stereo_pairs
    from dtp_stereo.ros.conversions import ImageConversionError

    names, left, right = [], [], []
    try:
        for frame in read_stereo_pairs(str(path), left_topic, right_topic, slop_s=slop_s):
            l_img, r_img = (np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a
                            for a in (frame.left, frame.right))
            if l_img.dtype != np.uint8:
                l_img, r_img = ((a >> 8).astype(np.uint8) if a.dtype == np.uint16 else
                                np.clip(a * 255.0, 0, 255).astype(np.uint8)
                                for a in (l_img, r_img))
            names.append(f"stamp {frame.stamp_ns}")
            left.append(l_img)
            right.append(r_img)
            if max_pairs is not None and len(names) >= max_pairs:
                break
    except FileNotFoundError as exc:
        raise AdaptError(f"adapt --bag: {exc}") from None
    except ImageConversionError as exc:
        raise AdaptError(f"adapt --bag {path}: undecodable image: {exc}") from None
    except ValueError as exc:  # a topic not in the bag (listed)
        raise AdaptError(f"adapt --bag: {exc}") from None
    if not names:
        how = f"within {slop_s:g} s" if slop_s else "exactly (try --slop)"
        raise AdaptError(f"adapt --bag {path}: no synchronized pairs on {left_topic} and "
                         f"{right_topic} (their header stamps never match {how})")
    _check_sizes(names, left, right, f"adapt --bag {path}")
    return StereoPairs(names, left, right, {"kind": "bag", "path": str(path),
                                            "topics": [left_topic, right_topic]})


def _downscale(pairs: StereoPairs, max_width: int) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    h, w = pairs.left[0].shape[:2]
    if w <= max_width:
        return pairs.left, pairs.right
    size = (max_width, max(1, round(h * max_width / w)))
    return ([cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in pairs.left],
            [cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in pairs.right])


# ----------------------------------------------------------------------------------- losses
def proxy_labels(left: np.ndarray, right: np.ndarray, max_disparity: int,
                 lr_check_px: float = 1.0, block_sizes: Sequence[int] = (5,),
                 pad: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """SGBM disparity and a 0/1 confidence (H×W float32 each) for one uint8 RGB pair.

    Confident: SGBM matched the pixel (uniqueness ratio 10, speckle filter, ``disp12MaxDiff``
    1) and the right-view disparity at the match agrees within ``lr_check_px`` pixels. With
    several ``block_sizes`` (pixels) a pixel is confident only where every block size's label is
    and all lie within ``lr_check_px`` of their median, which becomes the label: a consensus
    of matchers, fewer and surer labels than any one of them (Tonioni et al. 2017 filter one
    matcher's labels by a learned confidence instead). ``pad``: SGBM on images padded on the
    left (``sgbm_disparity(pad_left=True)``), so the border columns that OpenCV leaves invalid,
    in both views, can be labelled too.
    """
    labels, confident = zip(*(_lr_checked_sgbm(left, right, max_disparity, lr_check_px, b, pad)
                              for b in block_sizes))
    if len(labels) == 1:
        return labels[0], confident[0]
    stack = np.stack(labels)
    ok = np.stack(confident).astype(bool).all(0)
    median = np.median(stack, axis=0)
    ok &= (np.abs(stack - median[None]) <= lr_check_px).all(0)
    return np.where(ok, median, 0.0).astype(np.float32), ok.astype(np.float32)


def _lr_checked_sgbm(left: np.ndarray, right: np.ndarray, max_disparity: int,
                     lr_check_px: float, block_size: int,
                     pad: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """One block size's SGBM labels and their left-right-consistency mask (see proxy_labels)."""
    return _lr_checked(lambda a, b: sgbm_disparity(a, b, max_disparity, fill=False,
                                                   block_size=block_size, pad_left=pad),
                       left, right, max_disparity, lr_check_px)


def _lr_checked(disparity_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
                left: np.ndarray, right: np.ndarray, max_disparity: int,
                lr_check_px: float) -> Tuple[np.ndarray, np.ndarray]:
    """A matcher's left-view disparity, checked against its right-view disparity (the matcher
    on the mirrored pair, mirrored back) by :func:`lr_consistent`."""
    disp_l = disparity_of(left, right).astype(np.float32)
    disp_r = disparity_of(np.ascontiguousarray(right[:, ::-1]),
                          np.ascontiguousarray(left[:, ::-1]))[:, ::-1].astype(np.float32)
    return lr_consistent(disp_l, disp_r, max_disparity, lr_check_px)


def lr_consistent(disp_l: np.ndarray, disp_r: np.ndarray, max_disparity: int,
                  lr_check_px: float) -> Tuple[np.ndarray, np.ndarray]:
    """Left-right check of a left-view disparity ``disp_l`` against the right view's
    ``disp_r`` (H×W each, pixels, NaN = no match): the label and a 0/1 confidence (float32),
    confident where the right-view disparity at the match ``x - d`` lies within
    ``lr_check_px`` of ``d`` and ``d < max_disparity``."""
    h, w = disp_l.shape
    xs = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    target = np.round(xs - np.nan_to_num(disp_l, nan=-1e6)).astype(np.int64)
    inside = (target >= 0) & (target < w) & np.isfinite(disp_l)
    rows = np.arange(h)[:, None].repeat(w, 1)
    back = np.full((h, w), np.nan, np.float32)
    back[inside] = disp_r[rows[inside], target[inside]]
    with np.errstate(invalid="ignore"):
        ok = inside & np.isfinite(back) & (np.abs(back - disp_l) <= lr_check_px) \
            & (disp_l < max_disparity)
    return np.where(ok, disp_l, 0.0).astype(np.float32), ok.astype(np.float32)


def teacher_labels(teacher: nn.Module, left: np.ndarray, right: np.ndarray,
                   max_disparity: int, lr_check_px: float = 1.0
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """A frozen network's disparity and a 0/1 confidence (H×W float32 each) for one uint8 RGB
    pair: its left-view disparity, kept where its right-view disparity (the network on the
    mirrored pair, mirrored back) agrees within ``lr_check_px`` pixels (:func:`lr_consistent`)."""
    from dtp_stereo.backends.torch_backend import TorchBackend
    from dtp_stereo.pipeline import StereoPipeline

    pipeline = StereoPipeline(TorchBackend(teacher, fuse_bn=False))
    return _lr_checked(pipeline, left, right, max_disparity, lr_check_px)


def merge_labels(first: Tuple[np.ndarray, np.ndarray],
                 second: Tuple[np.ndarray, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(label, confidence) pairs merged: ``first``'s label where it is confident, ``second``'s
    where only it is, no label elsewhere."""
    use_first = first[1] > 0
    label = np.where(use_first, first[0], np.where(second[1] > 0, second[0], 0.0))
    return label.astype(np.float32), np.maximum(first[1], second[1]).astype(np.float32)


def warp_right_to_left(right: Tensor, disparity: Tensor) -> Tuple[Tensor, Tensor]:
    """The right image (B×C×H×W) sampled at ``x - d`` (d: B×H×W, pixels): the left view as the
    right camera saw it, and a B×H×W mask of pixels whose match lies inside the right image."""
    b, _, h, w = right.shape
    xs = torch.arange(w, dtype=right.dtype, device=right.device).view(1, 1, w).expand(b, h, w)
    ys = torch.arange(h, dtype=right.dtype, device=right.device).view(1, h, 1).expand(b, h, w)
    x_src = xs - disparity
    grid = torch.stack((2.0 * x_src / max(w - 1, 1) - 1.0, 2.0 * ys / max(h - 1, 1) - 1.0), -1)
    warped = F.grid_sample(right, grid, mode="bilinear", padding_mode="border",
                           align_corners=True)
    return warped, ((x_src >= 0) & (x_src <= w - 1)).to(right.dtype)


def _ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel SSIM over 3×3 windows (B×C×H×W), as Monodepth."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    pad = nn.functional.pad
    x, y = pad(x, (1, 1, 1, 1), mode="reflect"), pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sx = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sy = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sxy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sx + sy + c2)
    return torch.clamp(num / den, -1.0, 1.0)


def _photo_error(a: Tensor, b: Tensor) -> Tensor:
    """B×H×W: 0.85·(1 - SSIM)/2 + 0.15·|a - b|, channel mean."""
    return (0.85 * (1.0 - _ssim(a, b)) / 2.0 + 0.15 * (a - b).abs()).mean(1)


def photometric_loss(left: Tensor, right: Tensor, disparity: Tensor) -> Tensor:
    """Masked reconstruction error of the left view from the warped right view.

    Pixels count where the match lies inside the right image and the warp explains the left
    image better than the unwarped right image (auto-mask).
    """
    warped, inside = warp_right_to_left(right, disparity)
    error = _photo_error(left, warped)
    with torch.no_grad():
        identity = _photo_error(left, right)
        mask = inside * (error < identity).to(error.dtype)
    return (error * mask).sum() / mask.sum().clamp(min=1.0)


def smoothness_loss(disparity: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness of ``disparity / mean`` (B×H×W) guided by ``image`` (B×3×H×W)."""
    d = disparity / disparity.mean(dim=(1, 2), keepdim=True).clamp(min=1e-3)
    dx, dy = (d[:, :, 1:] - d[:, :, :-1]).abs(), (d[:, 1:] - d[:, :-1]).abs()
    ix = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().mean(1)
    iy = (image[:, :, 1:] - image[:, :, :-1]).abs().mean(1)
    return (dx * torch.exp(-ix)).mean() + (dy * torch.exp(-iy)).mean()


# ------------------------------------------------------------------------------------- loop
def _freeze_batchnorm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _crop_box(h: int, w: int, crop: Tuple[int, int], divisor: int,
              rng: random.Random) -> Tuple[int, int, int, int]:
    ch = min(crop[0], h) // divisor * divisor
    cw = min(crop[1], w) // divisor * divisor
    if ch < divisor or cw < divisor:
        raise AdaptError(f"adapt: images of {w}x{h} are smaller than the network's divisor "
                         f"{divisor}")
    y, x = rng.randint(0, h - ch), rng.randint(0, w - cw)
    return y, x, ch, cw


def _proxy_range(cfg: AdaptCfg, reference: nn.Module, left: np.ndarray, right: np.ndarray,
                 d_max: int) -> int:
    """SGBM range of one pair's proxies: ``cfg.proxy_range``, or fitted to the starting model's
    disparity (1.25 × its 99th percentile, rounded up to 16, at most D)."""
    if cfg.proxy_range > 0:
        return min(int(cfg.proxy_range), d_max)
    from dtp_stereo.backends.torch_backend import TorchBackend
    from dtp_stereo.pipeline import StereoPipeline

    # fuse_bn=False: the frozen reference is used as it is by the anchor loss afterwards
    disparity = StereoPipeline(TorchBackend(reference, fuse_bn=False))(left, right)
    return fitted_proxy_range(disparity, d_max)


def pair_proxy(proxy: str, left: np.ndarray, right: np.ndarray, d_max: int,
               lr_check_px: float = 1.0, block_sizes: Sequence[int] = (5,),
               sgbm_range: Optional[int] = None, teacher: Optional[nn.Module] = None,
               sgbm_pad: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """One pair's (label, confidence), H×W float32 each, from ``proxy``'s sources: SGBM over
    ``sgbm_range`` pixels (default ``d_max``), the frozen ``teacher`` network, or SGBM with the
    teacher where SGBM has no label (:func:`merge_labels`); see :class:`AdaptCfg`. ``sgbm_pad``:
    SGBM on left-padded images (:func:`proxy_labels`)."""
    if proxy not in PROXY_SOURCES or proxy == "none":
        raise AdaptError(f"adapt: no proxy labels from {proxy!r}")
    if "teacher" in proxy and teacher is None:
        raise AdaptError(f"adapt: proxy {proxy!r} needs a teacher network")
    sgbm = proxy_labels(left, right, sgbm_range or d_max, lr_check_px, block_sizes, sgbm_pad) \
        if "sgbm" in proxy else None
    taught = teacher_labels(teacher, left, right, d_max, lr_check_px) \
        if "teacher" in proxy else None
    if sgbm is not None and taught is not None:
        return merge_labels(sgbm, taught)
    return sgbm if sgbm is not None else taught  # type: ignore[return-value]


def load_proxy_teacher(spec: str) -> nn.Module:
    """The frozen teacher network of the teacher proxies (a checkpoint file or an
    operating-point name), in eval mode."""
    from dtp_stereo.assets import resolve_model

    try:
        net, _ = load_model(resolve_model(spec))
    except (FileNotFoundError, ValueError) as exc:
        raise AdaptError(f"adapt: proxy_teacher {spec!r}: {exc}") from None
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def _proxies(cfg: AdaptCfg, reference: nn.Module, left_imgs: Sequence[np.ndarray],
             right_imgs: Sequence[np.ndarray], d_max: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Each pair's (label, confidence) from ``cfg.proxy``'s sources (:func:`pair_proxy`)."""
    teacher = load_proxy_teacher(cfg.proxy_teacher) if "teacher" in cfg.proxy else None
    with torch.inference_mode():
        return [pair_proxy(cfg.proxy, a, b, d_max, cfg.lr_check_px, cfg.proxy_blocks,
                           _proxy_range(cfg, reference, a, b, d_max) if "sgbm" in cfg.proxy
                           else None, teacher, cfg.proxy_pad)
                for a, b in zip(left_imgs, right_imgs)]


def fitted_proxy_range(disparity: np.ndarray, d_max: int) -> int:
    """SGBM range fitted to a model's H×W disparity (pixels): 1.25 × its 99th percentile,
    rounded up to 16, at least 16 and at most ``d_max``."""
    high = float(np.percentile(disparity[np.isfinite(disparity)], 99)) * 1.25
    return int(min(d_max, max(16, -(-high // 16) * 16)))


def learning_rate(cfg: AdaptCfg, step: int) -> float:
    """The learning rate of optimisation step ``step`` (0-based) of ``cfg.steps``."""
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps))
    return cfg.lr


def _state_path(output: Path) -> Path:
    return output.with_name(output.name + ".adapt_state.pt")


def adapt(checkpoint: Path, pairs: StereoPairs, output: Path, cfg: AdaptCfg = AdaptCfg(), *,
          onnx: Optional[Path] = None, force: bool = False, resume: bool = False,
          progress: bool = True, tensorboard: bool = True) -> Dict[str, Any]:
    """Adapt ``checkpoint`` on ``pairs``; write ``output`` (and ``onnx``). Returns a summary.

    Resume state (``OUTPUT.adapt_state.pt``, every ``checkpoint_every`` steps) lets a cut run
    continue with ``resume=True``; it is removed when the run finishes.

    Raises:
        AdaptError: ``output``/``onnx`` exist without ``force``, a resume state of other
            settings, or unusable images.
    """
    from training.trainer import MetricsLog

    output = Path(output)
    for path in (output, onnx):
        if path is not None and Path(path).exists() and not force:
            raise AdaptError(f"adapt: {path} exists; pass --force to overwrite it")
    model, ckpt = load_model(checkpoint)
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    d_max = int(ckpt.max_disparity)
    divisor = int(getattr(model, "size_divisor", 16))
    left_imgs, right_imgs = _downscale(pairs, cfg.max_width)
    h, w = left_imgs[0].shape[:2]
    proxies = None
    if cfg.proxy != "none" and cfg.proxy_weight > 0:
        proxies = _proxies(cfg, reference, left_imgs, right_imgs, d_max)
    coverage = (float(np.mean([c.mean() for _, c in proxies])) if proxies else None)
    settings = asdict(cfg)
    digests = pairs.digests()  # hashed once: resume check, resume states, provenance
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.lr, weight_decay=0.0)
    state_path = _state_path(output)
    step = 0
    if resume and state_path.exists():
        state = read_torch_file(state_path)
        if state.get("settings") != settings or state.get("data") != digests:
            raise AdaptError(f"adapt --resume: {state_path} was written with other settings or "
                             "data; remove it or run without --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
    replay = None
    if cfg.synthetic_weight > 0:
        from dtp_stereo.data.synthetic import SyntheticStereo

        rh, rw = (max(divisor, c - c % divisor) for c in cfg.crop)
        # disparities up to 0.8·D whatever the crop width (the synthetic test split reaches
        # 0.3 × 512 = 154 px of D = 192): a narrow crop's 0.3·W would leave the far range out,
        # and that range is what a near-only camera scene makes the network forget
        replay = SyntheticStereo(height=rh, width=rw, max_disparity=d_max, seed=cfg.seed + 1,
                                 length=2**31 - 1,
                                 max_disparity_fraction=min(1.0, 0.8 * d_max / rw))
    log = MetricsLog(output.with_name(output.name + ".adapt_log"), True, tensorboard,
                     resume_step=step if step else None)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="adapt", unit="step", dynamic_ncols=True)
    model.train()
    _freeze_batchnorm(model)
    params = [p for p in model.parameters() if p.requires_grad]
    last: Dict[str, float] = {}
    try:
        while step < cfg.steps:
            rng = random.Random(cfg.seed * 1_000_003 + step)  # per step: resumes are exact
            picks = [rng.randrange(len(left_imgs)) for _ in range(cfg.batch_size)]
            y, x, ch, cw = _crop_box(h, w, cfg.crop, divisor, rng)
            crop = (slice(y, y + ch), slice(x, x + cw))
            left = torch.cat([image_to_tensor(left_imgs[i][crop]) for i in picks])
            right = torch.cat([image_to_tensor(right_imgs[i][crop]) for i in picks])
            pred = model(left, right).disparity
            terms: Dict[str, Tensor] = {}
            if proxies is not None:
                target = torch.stack([torch.from_numpy(proxies[i][0][crop]) for i in picks])
                conf = torch.stack([torch.from_numpy(proxies[i][1][crop]) for i in picks])
                terms["proxy"] = ((pred - target).abs() * conf).sum() / conf.sum().clamp(min=1.0)
            if cfg.photometric_weight > 0:
                terms["photometric"] = photometric_loss(left, right, pred)
            if cfg.smoothness_weight > 0:
                terms["smoothness"] = smoothness_loss(pred, left)
            if cfg.anchor_weight > 0:
                with torch.no_grad():
                    anchor = reference(left, right).disparity
                if cfg.anchor_on == "unlabelled" and proxies is not None:
                    free = 1.0 - conf
                    terms["anchor"] = ((pred - anchor).abs() * free).sum() \
                        / free.sum().clamp(min=1.0)
                else:
                    terms["anchor"] = (pred - anchor).abs().mean()
            if replay is not None:  # scenes indexed by step: resumes stay exact
                scenes = [replay.sample(step * cfg.batch_size + i) for i in range(cfg.batch_size)]
                s_left = torch.cat([image_to_tensor(sc["left"]) for sc in scenes])
                s_right = torch.cat([image_to_tensor(sc["right"]) for sc in scenes])
                s_gt = torch.stack([torch.from_numpy(sc["disparity"]) for sc in scenes])
                terms["synthetic"] = disparity_loss(model(s_left, s_right).disparity, s_gt,
                                                    None, d_max)
            weights = {"proxy": cfg.proxy_weight, "photometric": cfg.photometric_weight,
                       "smoothness": cfg.smoothness_weight, "anchor": cfg.anchor_weight,
                       "synthetic": cfg.synthetic_weight}
            loss = sum(weights[k] * v for k, v in terms.items())
            for group in optimizer.param_groups:  # set per step: resumes stay exact
                group["lr"] = learning_rate(cfg, step)
            optimizer.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
            step += 1
            last = {"loss": float(loss.detach())}
            last.update({k: float(v.detach()) for k, v in terms.items()})
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.log(step, 0, "adapt", last)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.3f}")
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                with atomic_path(state_path) as tmp:
                    torch.save({"step": step, "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(), "settings": settings,
                                "data": digests}, tmp)
    finally:
        if bar is not None:
            bar.close()
        log.close()
    model.eval()
    provenance = {"stage": "adapt", "parent": str(checkpoint), "adapt": {
        "settings": settings, "data": {**pairs.source, "pairs": len(pairs.names),
                                       "size": [int(pairs.left[0].shape[0]),
                                                int(pairs.left[0].shape[1])],
                                       "adapted_at": [h, w], "sha256_16": digests},
        "proxy_coverage": coverage, "final_losses": last}}
    save_checkpoint(output, model, model_name=ckpt.model_name, provenance=provenance)
    summary = {"output": str(output), "steps": step, "pairs": len(pairs.names),
               "size": [h, w], "proxy_coverage": coverage, "final_losses": last}
    if onnx is not None:
        from dtp_stereo.export import export_onnx

        hp, wp = -(-h // divisor) * divisor, -(-w // divisor) * divisor
        export_onnx(model, str(onnx), hp, wp, dynamic=True)
        summary["onnx"] = str(onnx)
    if state_path.exists():
        state_path.unlink()
    if not all(math.isfinite(v) for v in last.values()):
        _LOG.warning("adapt: the last step's losses were not finite: %s", last)
    return summary
