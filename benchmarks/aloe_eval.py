"""Stereo checkpoints and OpenCV SGBM on a real pair: Middlebury 2006 "Aloe" (opencv-doc).

Debian/Ubuntu's ``opencv-doc`` package ships the Aloe pair with its ground truth in
``/usr/share/doc/opencv-doc/examples/data``: ``aloeL.jpg``, ``aloeR.jpg`` (1282×1110 RGB) and
``aloeGT.png`` (8-bit, value = disparity of the left image in full-size pixels, 0 = unknown).
Both images are downsampled by ``--scale`` (``cv2.INTER_AREA``); the ground truth is resampled
with ``INTER_NEAREST`` and its values multiplied by ``--scale`` (unknown stays unknown).

Each checkpoint runs through :class:`dtp_stereo.pipeline.StereoPipeline` (resize/pad with
:class:`dtp_stereo.preprocess.StereoPreprocessor`, disparity mapped back to the image size).
EPE / D1 / bad-1/2/3 (:mod:`dtp_stereo.metrics`) count GT-known pixels below the method's
disparity range; ``gt_above_max_fraction`` is the share of GT-known pixels at or beyond that
range (a method cannot predict them). SGBM (:func:`dtp_stereo.baselines.sgbm_disparity`) searches
the same range as the widest model (``--sgbm-max-disparity`` overrides). Latency is the whole
call (preprocessing, inference, restore) on this pair, via :func:`dtp_stereo.timing.time_calls`.
One image pair: an illustration on real data, not a benchmark score.

Usage (from the repository root)::

    .venv/bin/python benchmarks/aloe_eval.py --checkpoints student=models/dtpnet_pruned.pt \\
        teacher=runs/x/teacher/best.pt --scale 0.25 \\
        --output-json docs/results/aloe.json --figure docs/results/aloe.png
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dtp_stereo.data.real_pairs import ALOE_FILES, OPENCV_DOC_DATA as DEFAULT_DATA_DIR

__all__ = ["DEFAULT_DATA_DIR", "ALOE_FILES", "load_aloe", "score_disparity", "evaluate_sgbm",
           "evaluate_checkpoint", "save_figure", "main"]

DEFAULT_SGBM_MAX_DISPARITY = 192


def load_aloe(data_dir: str = DEFAULT_DATA_DIR,
              scale: float = 1.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the Aloe pair and its ground truth, downsampled by ``scale``.

    Args:
        data_dir: folder holding ``aloeL.jpg``, ``aloeR.jpg`` and ``aloeGT.png``.
        scale: size factor in (0, 1]; output size is ``round(H·scale) × round(W·scale)``.

    Returns:
        ``(left, right, gt)``: H×W×3 uint8 RGB images and the H×W float32 GT disparity in
        pixels of the scaled images (0 = unknown).

    Raises:
        FileNotFoundError: a file is missing (the message says to install ``opencv-doc``).
        ValueError: ``scale`` out of range, an unreadable file, or sizes that differ.
    """
    from dtp_stereo.data import real_pairs

    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    left, right, gt = real_pairs.scale_pair(*real_pairs.load_aloe(data_dir), scale)
    return left, right, np.where(np.isfinite(gt), gt, 0.0).astype(np.float32)


def score_disparity(pred: np.ndarray, gt: np.ndarray, max_disparity: float) -> Dict[str, Any]:
    """EPE (px), D1 and bad-1/2/3 (%) on GT-known pixels below ``max_disparity``.

    Args:
        pred: H×W predicted disparity, pixels.
        gt: H×W GT disparity, pixels, 0 = unknown.
        max_disparity: the method's disparity range, pixels (exclusive bound).

    Returns:
        The :func:`dtp_stereo.metrics.stereo_metrics` values plus ``gt_above_max_fraction``
        (GT-known pixels with ``gt >= max_disparity`` over all GT-known pixels, in [0, 1]).
    """
    from dtp_stereo.metrics import stereo_metrics, valid_mask

    known = valid_mask(gt, None)
    valid = valid_mask(gt, max_disparity)
    result: Dict[str, Any] = stereo_metrics(pred, gt, valid)
    n_known = int(known.sum())
    result["gt_above_max_fraction"] = (float((known & ~valid).sum()) / n_known
                                       if n_known else math.nan)
    return result


def _latency(stats: Any) -> Dict[str, float]:
    return {k: stats.summary()[k] for k in ("count", "mean", "p50", "p90", "max")}


def evaluate_sgbm(left: np.ndarray, right: np.ndarray, gt: np.ndarray, max_disparity: int,
                  *, repeats: int = 3, warmup: int = 1) -> Tuple[Dict[str, Any], np.ndarray]:
    """SGBM disparity (holes filled), its scores and latency on one pair.

    Returns:
        ``(entry, disparity)``: the JSON entry and the H×W float32 disparity, pixels.
    """
    from dtp_stereo.baselines import sgbm_disparity
    from dtp_stereo.timing import time_calls

    disp = sgbm_disparity(left, right, max_disparity)
    stats = time_calls(lambda: sgbm_disparity(left, right, max_disparity), repeats, warmup)
    entry = {"method": "opencv_sgbm", "max_disparity": int(max_disparity),
             **score_disparity(disp, gt, max_disparity), "latency_ms": _latency(stats)}
    return entry, disp


def evaluate_checkpoint(path: str, left: np.ndarray, right: np.ndarray, gt: np.ndarray, *,
                        device: str = "cpu", threads: Optional[int] = None, repeats: int = 3,
                        warmup: int = 1) -> Tuple[Dict[str, Any], np.ndarray]:
    """Run one checkpoint on the pair (:class:`dtp_stereo.pipeline.StereoPipeline`); score it.

    Returns:
        ``(entry, disparity)``: the JSON entry (checkpoint, model, parameters, scores,
        latency in ms) and the H×W float32 disparity at the image size, pixels.
    """
    from dtp_stereo.complexity import count_parameters
    from dtp_stereo.pipeline import StereoPipeline
    from dtp_stereo.timing import time_calls

    predictor = StereoPipeline.from_checkpoint(Path(path), device=device, threads=threads)
    disp = predictor(left, right)
    stats = time_calls(lambda: predictor(left, right), repeats, warmup, device=device)
    entry = {"method": "checkpoint", "checkpoint": str(path),
             "model_name": predictor.backend.model_name,
             "max_disparity": predictor.max_disparity,
             "params": count_parameters(predictor.backend.model),
             **score_disparity(disp, gt, predictor.max_disparity),
             "latency_ms": _latency(stats)}
    return entry, disp


def save_figure(path: str, left: np.ndarray, gt: np.ndarray,
                panels: Sequence[Tuple[str, np.ndarray]], max_disp: float) -> str:
    """One row: left image, GT, then each disparity, colourised on a common ``[0, max_disp]``.

    Args:
        path: PNG to write.
        left: H×W×3 uint8 RGB.
        gt: H×W GT disparity, pixels, 0 = unknown (drawn black).
        panels: (title, H×W disparity in pixels) per method.
        max_disp: disparity at the top of the colour map, pixels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dtp_stereo.data.formats import colorize_disparity

    def rgb(disp: np.ndarray, invalid: Optional[np.ndarray] = None) -> np.ndarray:
        return colorize_disparity(disp, max_disp, invalid)[..., ::-1]  # BGR -> RGB

    images = [("left", left), ("ground truth", rgb(gt, gt <= 0))]
    images += [(title, rgb(d)) for title, d in panels]
    h, w = gt.shape
    fig, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 2.6 * h / w + 0.7))
    for ax, (title, img) in zip(np.atleast_1d(axes), images):
        ax.imshow(img)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Middlebury 2006 Aloe, {h}x{w} (HxW), colour 0..{max_disp:.0f} px", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _parse_checkpoints(items: Sequence[str]) -> List[Tuple[str, str]]:
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).stem, item
        if not label or not os.path.isfile(path):
            raise FileNotFoundError(f"--checkpoints {item!r}: need LABEL=PATH to an existing "
                                    f"checkpoint file")
        out.append((label, path))
    labels = [label for label, _ in out]
    if len(set(labels)) != len(labels) or "sgbm" in labels:
        raise ValueError(f"--checkpoints: labels must be unique and not 'sgbm', got {labels}")
    return out


def _json_safe(value: Any) -> Any:
    """NaN/inf floats -> None (strict JSON), recursively."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(entry: Dict[str, Any]) -> str:
    return (f"EPE {entry['epe']:.2f} px, D1 {entry['d1']:.1f} %, bad-2 {entry['bad_2']:.1f} %, "
            f"GT beyond range {100 * entry['gt_above_max_fraction']:.1f} %, "
            f"{entry['latency_ms']['p50']:.0f} ms")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Evaluate checkpoints and SGBM on Aloe; write JSON (and a figure). Returns exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="*", default=[], metavar="LABEL=PATH",
                        help="dtp_stereo checkpoints to evaluate")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"folder with {', '.join(ALOE_FILES)} (default: {DEFAULT_DATA_DIR})")
    parser.add_argument("--scale", type=float, default=0.25,
                        help="downsampling factor of images and GT (default 0.25)")
    parser.add_argument("--sgbm-max-disparity", type=int, default=None,
                        help="SGBM range, pixels (default: the widest model's, else "
                             f"{DEFAULT_SGBM_MAX_DISPARITY})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--output-json", default="docs/results/aloe.json", help="JSON to write")
    parser.add_argument("--figure", default=None, help="PNG row figure to write")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    try:
        checkpoints = _parse_checkpoints(args.checkpoints)
        left, right, gt = load_aloe(args.data_dir, args.scale)
        methods: Dict[str, Dict[str, Any]] = {}
        disparities: Dict[str, np.ndarray] = {}
        for label, path in checkpoints:
            methods[label], disparities[label] = evaluate_checkpoint(
                path, left, right, gt, device=args.device, threads=args.threads,
                repeats=args.repeats, warmup=args.warmup)
        sgbm_range = args.sgbm_max_disparity or max(
            [m["max_disparity"] for m in methods.values()] or [DEFAULT_SGBM_MAX_DISPARITY])
        sgbm, sgbm_disp = evaluate_sgbm(left, right, gt, sgbm_range, repeats=args.repeats,
                                        warmup=args.warmup)
    except (FileNotFoundError, ValueError) as exc:
        print(f"aloe_eval: error: {exc}", file=sys.stderr)
        return 1
    methods = {"sgbm": sgbm, **methods}
    disparities = {"sgbm": sgbm_disp, **disparities}
    known = gt > 0
    gt_max = float(gt[known].max()) if known.any() else float(sgbm_range)
    h, w = gt.shape
    report = {"dataset": "Middlebury 2006 Aloe (opencv-doc)", "data_dir": args.data_dir,
              "scale": args.scale, "size": f"{h}x{w}", "gt_known_fraction": float(known.mean()),
              "gt_max_disparity": gt_max, "device": args.device, "threads": args.threads,
              "metrics_note": "EPE px; d1, bad_* percent of GT-known pixels below the method's "
                              "max_disparity; gt_above_max_fraction of GT-known pixels",
              "methods": methods}
    os.makedirs(os.path.dirname(os.path.abspath(args.output_json)), exist_ok=True)
    with open(args.output_json, "w", encoding="utf-8") as fh:
        json.dump(_json_safe(report), fh, indent=2)
    for label, entry in methods.items():
        print(f"{label}: {_fmt(entry)}")
    print(f"wrote {args.output_json}")
    if args.figure:
        panels = [(f"{label}\nEPE {methods[label]['epe']:.2f} px", d)
                  for label, d in disparities.items()]
        save_figure(args.figure, left, gt, panels, gt_max)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
