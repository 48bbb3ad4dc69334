"""``dtp-stereo eval``: evaluate a checkpoint (or OpenCV SGBM) on a dataset; print and write JSON.

Metrics follow :mod:`dtp_stereo.metrics` (EPE px; D1, bad-1/2/3 in percent), averaged per image
by default. Latency is per pair, preprocessing + network + mapping back, without file reading;
``--warmup`` untimed runs come first.

For real pairs (``--dataset middlebury2014 --root DIR --split all``, e.g. the folder written by
``dtp-stereo real-pairs``), ``--scale`` downsamples every pair and its ground truth,
``--also LABEL=CKPT`` adds more checkpoints (a teacher, a larger operating point) and
``--with-sgbm`` adds OpenCV SGBM (3-way) over the same disparity range in the same run, twice:
``sgbm_raw``, as OpenCV returns it (its holes hold ``minDisparity − 1`` = −1 px and count as
errors), and ``sgbm_filled``, its holes filled as the KITTI devkit does (each takes the smaller of
the nearest valid disparities left and right on its row). ``--figure`` writes one row per pair:
left | ground truth | every model | SGBM filled.
"""

import argparse
import json
import math
import os
import platform
import socket
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from dtp_stereo.cli.infer import (CliError, add_model_arguments, fail, load_pipeline,
                                  resolve_checkpoint)
from dtp_stereo.metrics import METRIC_NAMES, MODES, MetricAccumulator, valid_mask
from dtp_stereo.timing import LatencyStats, timer

PROG = "dtp-stereo eval"
DEFAULT_DATASET = "synthetic:20:256x512:0"
SGBM_DEFAULT_MAX_DISPARITY = 192


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo eval``."""
    parser.add_argument("--dataset", default=DEFAULT_DATASET,
                        help="dataset name (sceneflow, kitti2015, kitti2012, middlebury2014, "
                             "eth3d, ...) or synthetic:N:HxW:seed[:maxdisp] "
                             f"(default: {DEFAULT_DATASET})")
    parser.add_argument("--root", default="", help="dataset folder")
    parser.add_argument("--split", default=None,
                        help="split (default: 'val' for synthetic, else the reader's default)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N samples")
    parser.add_argument("--max-disparity", type=float, default=None,
                        help="score GT below this, pixels (default: the model's max disparity)")
    parser.add_argument("--mode", choices=MODES, default="per_image",
                        help="average per image (default) or pooled over all pixels")
    parser.add_argument("--noc", action="store_true",
                        help="score only non-occluded pixels when the dataset marks them")
    parser.add_argument("--sgbm", action="store_true",
                        help="evaluate OpenCV StereoSGBM instead of a checkpoint")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="downsample each pair by this factor in (0, 1] before evaluation "
                             "(images INTER_AREA, ground truth nearest x scale; default 1)")
    parser.add_argument("--with-sgbm", action="store_true",
                        help="also evaluate OpenCV SGBM over the model's disparity range, raw "
                             "(holes as errors) and with holes filled, in the same run")
    parser.add_argument("--sgbm-range", action="append", type=int, default=[], metavar="PX",
                        help="with --with-sgbm: also SGBM over this disparity range (pixels; "
                             "repeatable), e.g. one fitted to the scene as a stronger reference")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=CKPT",
                        help="another checkpoint to evaluate in the same run (repeatable)")
    parser.add_argument("--label", default="model", help="label of --checkpoint in the report")
    parser.add_argument("--figure", type=Path, default=None,
                        help="write a PNG: left | GT | models | SGBM filled, one row per pair")
    parser.add_argument("--figure-pairs", type=int, default=4,
                        help="pairs shown in --figure (the first N; default 4)")
    add_model_arguments(parser)


def host_info(device: str) -> Dict[str, Any]:
    """Machine description stored with every report."""
    import torch

    info = {"hostname": socket.gethostname(), "platform": platform.platform(),
            "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def command_line(args: argparse.Namespace) -> str:
    """An equivalent ``dtp-stereo eval`` command line rebuilt from the parsed arguments."""
    parts = ["dtp-stereo", "eval"]
    for key, value in sorted(vars(args).items()):
        if key == "command" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, str(value)]
    return " ".join(parts)


def _finite(value: Any) -> Any:
    """JSON has no NaN: map non-finite floats to None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _load_scaled(ref: Any, scale: float) -> Dict[str, Any]:
    """Read one sample; with ``scale`` < 1 downsample it (:func:`real_pairs.scale_pair`)."""
    from dtp_stereo.data.readers import load_sample

    sample = load_sample(ref)
    if scale != 1.0:
        from dtp_stereo.data.real_pairs import scale_pair

        gt = np.where(sample["valid"], sample["disparity"], np.inf).astype(np.float32)
        left, right, gt = scale_pair(sample["left"], sample["right"], gt, scale)
        valid = np.isfinite(gt)
        sample = dict(sample, left=left, right=right, disparity=np.where(valid, gt, 0.0),
                      valid=valid)
        sample.pop("valid_noc", None)  # not resampled; --noc then falls back to valid
    return sample


def evaluate(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], refs: List[Any],
             max_disparity: float, *, mode: str = "per_image", noc: bool = False,
             warmup: int = 1, device: str = "cpu", scale: float = 1.0,
             keep: int = 0) -> Dict[str, Any]:
    """Run ``predict`` over dataset ``refs`` and score it.

    Args:
        predict: maps an H×W×3 uint8 RGB pair to H×W float32 disparity (pixels).
        refs: :class:`dtp_stereo.data.readers.SampleRef` list.
        max_disparity: exclusive GT bound for scoring, pixels.
        mode: ``"per_image"`` or ``"pooled"``.
        noc: use ``valid_noc`` masks where the samples have them.
        warmup: untimed predictions on the first sample before timing.
        device: torch device used (GPU is synchronised around timed calls).
        scale: downsample every pair (and its GT) by this factor first.
        keep: keep the predictions of the first ``keep`` samples (key ``predictions``, not JSON).

    Returns:
        ``{"metrics": {...}, "latency_ms": {...}, "per_image": [...], "n_images", "n_no_gt"}``.
    """
    acc = MetricAccumulator(mode)
    stats = LatencyStats()
    per_image: List[Dict[str, Any]] = []
    kept: List[np.ndarray] = []
    n_no_gt = 0
    for i, ref in enumerate(refs):
        sample = _load_scaled(ref, scale)
        if i == 0:
            for _ in range(max(0, warmup)):
                predict(sample["left"], sample["right"])
        with timer(device, stats) as t:
            pred = predict(sample["left"], sample["right"])
        if i < keep:
            kept.append(pred)
        if not sample["meta"].get("has_gt", True):
            n_no_gt += 1
            continue
        mask = sample["valid_noc"] if noc and "valid_noc" in sample else sample["valid"]
        valid = valid_mask(sample["disparity"], max_disparity, mask)
        known = valid_mask(sample["disparity"], None, mask)
        m = acc.update(pred, sample["disparity"], valid)
        n_known = int(known.sum())
        per_image.append({"name": sample["meta"].get("name", str(i)), "latency_ms": t.ms,
                          **{k: _finite(m[k]) for k in METRIC_NAMES},
                          "valid_pixels": m["valid_pixels"],
                          "size": [int(pred.shape[1]), int(pred.shape[0])],
                          "gt_above_max_fraction": (float((known & ~valid).sum()) / n_known
                                                    if n_known else None)})
    metrics = {k: _finite(v) for k, v in acc.compute().items()}
    latency = {k: _finite(v) for k, v in stats.summary().items()}
    out = {"metrics": metrics, "latency_ms": latency, "per_image": per_image,
           "n_images": len(refs), "n_no_gt": n_no_gt}
    if keep:
        out["predictions"] = kept
    return out


Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]


def sgbm_predictor(max_disparity: float, fill: bool) -> Predict:
    """OpenCV SGBM over ``ceil(max_disparity)`` px: holes filled, or as OpenCV returns them.

    Unfilled holes get ``minDisparity − 1`` = −1 px (OpenCV's invalid value), so they count as
    errors in every metric.
    """
    from dtp_stereo.baselines import sgbm_disparity

    search = int(math.ceil(max_disparity))

    def predict(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        disp = sgbm_disparity(left, right, search, fill=fill)
        return disp if fill else np.nan_to_num(disp, nan=-1.0)

    return predict


def save_figure(path: Path, refs: List[Any], scale: float,
                columns: List[Tuple[str, List[np.ndarray]]], max_disparity: float) -> None:
    """One row per pair: left | ground truth | each prediction column, colour-coded alike.

    Args:
        path: PNG to write.
        refs: the pairs (the first ``len(columns[0][1])`` are drawn).
        scale: the evaluation's ``--scale``.
        columns: ``(label, predictions)`` per method, predictions H×W pixels.
        max_disparity: top of the colour map, pixels (unknown GT and holes are black).
    """
    import cv2

    from dtp_stereo.data.formats import colorize_disparity

    rows = []
    n = min(len(c[1]) for c in columns) if columns else 0
    for i in range(n):
        sample = _load_scaled(refs[i], scale)
        known = sample["valid"]
        top = max(float(sample["disparity"][known].max()) * 1.05 if known.any() else 1.0, 1.0)
        top = min(top, float(max_disparity))
        tiles = [("left", cv2.cvtColor(sample["left"], cv2.COLOR_RGB2BGR)),
                 ("ground truth", colorize_disparity(sample["disparity"], top, ~known))]
        for label, preds in columns:
            pred = preds[i]
            tiles.append((label, colorize_disparity(pred, top, pred < 0)))
        labelled = []
        for label, tile in tiles:
            tile = tile.copy()
            cv2.putText(tile, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3)
            cv2.putText(tile, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
            labelled.append(tile)
        rows.append(np.concatenate(labelled, axis=1))
    if not rows:
        raise ValueError("save_figure: nothing to draw")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate(rows, axis=0)):
        raise OSError(f"cannot write figure {path}")


def _fmt(v: Optional[float], spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def _row(label: str, report: Dict[str, Any]) -> str:
    """One table row (EPE, D1, bad-1/2/3, latency) of an evaluation report."""
    m, lat, fmt = report["metrics"], report["latency_ms"], _fmt
    return (f"{label[:28]:<28} {fmt(m['epe']):>8} {fmt(m['d1'], '.2f'):>7} "
            f"{fmt(m['bad_1'], '.2f'):>7} {fmt(m['bad_2'], '.2f'):>7} {fmt(m['bad_3'], '.2f'):>7} "
            f"{fmt(lat['p50'], '.1f'):>8} {fmt(lat['p90'], '.1f'):>8}")


def _table(report: Dict[str, Any]) -> str:
    m = report["metrics"]

    head = f"{'method':<28} {'EPE px':>8} {'D1 %':>7} {'>1px %':>7} {'>2px %':>7} {'>3px %':>7} " \
           f"{'p50 ms':>8} {'p90 ms':>8}"
    row = _row(report["method"], report)
    tail = (f"{report['dataset']['name']} split={report['dataset']['split']}: "
            f"{m['n_images']} images scored ({m['mode']}), {m['n_skipped']} without valid "
            f"pixels, {report['n_no_gt']} without GT; max disparity "
            f"{report['max_disparity']:g} px")
    return "\n".join([head, row, tail])


def _parse_also(items: List[str]) -> List[Tuple[str, Path]]:
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise CliError(f"--also {item!r}: expected LABEL=CHECKPOINT")
        out.append((label, resolve_checkpoint(Path(path))))  # a file or an operating point
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``dtp-stereo eval``; returns the exit code."""
    from dtp_stereo.checkpoint import CheckpointError
    from dtp_stereo.data.readers import list_dataset

    split = args.split
    if split is None and args.dataset.lower().startswith("synthetic"):
        split = "val"
    keep = max(0, args.figure_pairs) if args.figure is not None else 0
    columns: List[Tuple[str, List[np.ndarray]]] = []
    comparison: Dict[str, Any] = {}
    try:
        if not 0.0 < args.scale <= 1.0:
            raise CliError(f"--scale must be in (0, 1], got {args.scale}")
        also = _parse_also(args.also)
        refs = list_dataset(args.dataset, args.root, split)
        if args.limit is not None:
            refs = refs[: max(0, args.limit)]
        if not refs:
            raise CliError(f"dataset {args.dataset!r} (root {args.root!r}, split {split}) "
                           "has no samples")
        if args.sgbm:
            max_disp = args.max_disparity or SGBM_DEFAULT_MAX_DISPARITY
            predict = sgbm_predictor(max_disp, fill=True)
            method, checkpoint, device = "opencv_sgbm", None, "cpu"
        else:
            checkpoint = resolve_checkpoint(args.checkpoint)
            predictor = load_pipeline(checkpoint, args.device, args.max_width, args.threads)
            max_disp = args.max_disparity or predictor.max_disparity
            predict, device = predictor, args.device
            method = f"{predictor.backend.model_name} ({Path(checkpoint).name})"
        report = evaluate(predict, refs, max_disp, mode=args.mode, noc=args.noc,
                          warmup=args.warmup, device=device, scale=args.scale, keep=keep)
        columns.append((args.label if not args.sgbm else "sgbm filled",
                        report.pop("predictions", [])))
        for label, path in also:
            other = load_pipeline(path, args.device, args.max_width, args.threads)
            rep = evaluate(other, refs, max_disp, mode=args.mode, noc=args.noc,
                           warmup=args.warmup, device=args.device, scale=args.scale, keep=keep)
            columns.append((label, rep.pop("predictions", [])))
            comparison[label] = {"method": f"{other.backend.model_name} ({path.name})",
                                 "checkpoint": str(path),
                                 "model_max_disparity": other.max_disparity, **rep}
        if args.with_sgbm and not args.sgbm:
            ranges = [(None, max_disp)] + [(int(r), float(r)) for r in args.sgbm_range]
            for suffix, search in ranges:
                for label, fill in (("sgbm_raw", False), ("sgbm_filled", True)):
                    label = label if suffix is None else f"{label}_{suffix}"
                    draw = keep if fill and suffix is None else 0
                    rep = evaluate(sgbm_predictor(search, fill), refs, max_disp,
                                   mode=args.mode, noc=args.noc, warmup=args.warmup,
                                   device="cpu", scale=args.scale, keep=draw)
                    preds = rep.pop("predictions", None)
                    if preds is not None:
                        columns.append(("sgbm filled", preds))
                    comparison[label] = {
                        "method": f"opencv_sgbm 3-way, {int(math.ceil(search))} disparities "
                                  f"(at most the image width), holes "
                                  f"{'filled' if fill else 'as errors (-1 px)'}",
                        "search_range": int(math.ceil(search)), **rep}
        if args.figure is not None:
            save_figure(args.figure, refs, args.scale, columns, max_disp)
    except (CliError, CheckpointError, FileNotFoundError) as exc:
        return fail(PROG, str(exc))
    except (OSError, ValueError, RuntimeError) as exc:
        return fail(PROG, f"{type(exc).__name__}: {exc}")
    report = {
        "method": method,
        "label": args.label,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "dataset": {"name": args.dataset, "root": args.root, "split": split,
                    "limit": args.limit, "noc": args.noc, "scale": args.scale},
        "max_disparity": float(max_disp),
        "max_width": args.max_width,
        **report,
        "command": command_line(args),
        "host": host_info(device),
    }
    if comparison:
        report["comparison"] = comparison
    print(_table(report))
    for label, rep in comparison.items():
        print(_row(label, rep))
    if args.figure is not None:
        print(f"wrote {args.figure}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0
