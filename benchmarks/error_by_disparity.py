"""Where on a real pair does a model lose to SGBM? Errors binned by ground-truth disparity.

The Aloe pair (opencv-doc, see :mod:`benchmarks.aloe_eval`) at ``--scale``; each checkpoint runs
through :class:`dtp_stereo.pipeline.StereoPipeline`, OpenCV SGBM (3-way, the widest model's range)
as OpenCV returns it (holes hold −1 px, so they count as errors) and with its holes filled
(:func:`dtp_stereo.baselines.fill_invalid_background`). GT-known pixels below the range are
split into bins of GT disparity (``--edges``, pixels of the scaled pair); each bin reports its
pixel count and, per method, EPE (px) and bad-2 (% of pixels with error > 2 px).

A real pair with ground truth is validation data here: it explains an error, it never trains.

Usage (from the repository root)::

    .venv/bin/python benchmarks/error_by_disparity.py --scale 1 \\
        --checkpoints s6=models/dtpnet_real_pruned_s6.pt \\
        --output docs/results/aloe-x1-error-by-disparity.json
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.aloe_eval import (DEFAULT_DATA_DIR, _parse_checkpoints,  # noqa: E402
                                  load_aloe)

DEFAULT_EDGES = (0.0, 50.0, 100.0, 150.0, 192.0)


def bin_errors(pred: np.ndarray, gt: np.ndarray, edges: Sequence[float]) -> List[Dict[str, Any]]:
    """EPE and bad-2 of ``pred`` per GT-disparity bin.

    Args:
        pred: H×W predicted disparity, pixels (non-finite values count as −1 px).
        gt: H×W GT disparity, pixels, 0 = unknown.
        edges: increasing bin edges, pixels; bin ``i`` holds ``edges[i] < gt <= edges[i+1]``
            (the last bin excludes ``gt == edges[-1]``, the range no method can reach).

    Returns:
        One dict per bin: ``low``, ``high`` (px), ``pixels``, ``epe`` (px), ``bad_2`` (%);
        NaN scores for an empty bin.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"bin_errors: prediction {pred.shape} and GT {gt.shape} differ")
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bin_errors: edges must be increasing, got {list(edges)}")
    pred = np.where(np.isfinite(pred), pred, -1.0)
    err = np.abs(pred.astype(np.float64) - gt)
    rows = []
    last = len(edges) - 2
    for i, (low, high) in enumerate(zip(edges, edges[1:])):
        mask = (gt > low) & ((gt < high) if i == last else (gt <= high))
        n = int(mask.sum())
        rows.append({"low": float(low), "high": float(high), "pixels": n,
                     "epe": float(err[mask].mean()) if n else math.nan,
                     "bad_2": float((err[mask] > 2.0).mean() * 100.0) if n else math.nan})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", required=True, metavar="LABEL=PATH")
    parser.add_argument("--scale", type=float, default=1.0, help="size factor in (0, 1]")
    parser.add_argument("--edges", type=float, nargs="+", default=list(DEFAULT_EDGES),
                        help="GT disparity bin edges, pixels of the scaled pair")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", required=True, help="JSON to write")
    args = parser.parse_args(argv)

    from dtp_stereo.baselines import fill_invalid_background, sgbm_disparity
    from dtp_stereo.files import atomic_write_text
    from dtp_stereo.pipeline import StereoPipeline

    try:
        checkpoints = _parse_checkpoints(args.checkpoints)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error_by_disparity: {exc}") from None
    left, right, gt = load_aloe(args.data_dir, args.scale)
    predictions: Dict[str, np.ndarray] = {}
    max_disparity = 0
    for label, path in checkpoints:
        pipeline = StereoPipeline.from_checkpoint(Path(path), threads=args.threads)
        predictions[label] = pipeline(left, right)
        max_disparity = max(max_disparity, int(pipeline.max_disparity))
    raw = sgbm_disparity(left, right, max_disparity, fill=False)
    predictions["sgbm_raw"] = raw  # bin_errors counts its holes (NaN) as -1 px
    predictions["sgbm_filled"] = fill_invalid_background(np.nan_to_num(raw), ~np.isfinite(raw))
    edges = [e for e in args.edges if e < max_disparity] + [float(max_disparity)]
    bins = {label: bin_errors(pred, gt, edges) for label, pred in predictions.items()}
    result = {"benchmark": "error_by_disparity", "pair": "aloe", "scale": args.scale,
              "image_size": list(left.shape[:2]), "max_disparity": max_disparity,
              "edges_px": edges, "checkpoints": dict(checkpoints),
              "note": "validation: a real pair with GT explains errors; it never trains",
              "bins": bins}
    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    for i in range(len(edges) - 1):
        cells = "  ".join(f"{label} {rows[i]['epe']:.2f}/{rows[i]['bad_2']:.1f}"
                          for label, rows in bins.items())
        print(f"GT {edges[i]:.0f}-{edges[i + 1]:.0f} px ({bins['sgbm_raw'][i]['pixels']} px): "
              f"{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
