"""``dtp-stereo eval``: evaluate a checkpoint (or OpenCV SGBM) on a dataset; print and write JSON.

Metrics follow :mod:`dtp_stereo.metrics` (EPE px; D1, bad-1/2/3 in percent), averaged per image
by default. Latency is per pair, preprocessing + network + mapping back, without file reading;
``--warmup`` untimed runs come first.
"""

import argparse
import json
import math
import os
import platform
import socket
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from dtp_stereo.cli.infer import CliError, Predictor, add_model_arguments, fail, resolve_checkpoint
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


def evaluate(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], refs: List[Any],
             max_disparity: float, *, mode: str = "per_image", noc: bool = False,
             warmup: int = 1, device: str = "cpu") -> Dict[str, Any]:
    """Run ``predict`` over dataset ``refs`` and score it.

    Args:
        predict: maps an H×W×3 uint8 RGB pair to H×W float32 disparity (pixels).
        refs: :class:`dtp_stereo.data.readers.SampleRef` list.
        max_disparity: exclusive GT bound for scoring, pixels.
        mode: ``"per_image"`` or ``"pooled"``.
        noc: use ``valid_noc`` masks where the samples have them.
        warmup: untimed predictions on the first sample before timing.
        device: torch device used (GPU is synchronised around timed calls).

    Returns:
        ``{"metrics": {...}, "latency_ms": {...}, "per_image": [...], "n_images", "n_no_gt"}``.
    """
    from dtp_stereo.data.readers import load_sample

    acc = MetricAccumulator(mode)
    stats = LatencyStats()
    per_image: List[Dict[str, Any]] = []
    n_no_gt = 0
    for i, ref in enumerate(refs):
        sample = load_sample(ref)
        if i == 0:
            for _ in range(max(0, warmup)):
                predict(sample["left"], sample["right"])
        with timer(device, stats) as t:
            pred = predict(sample["left"], sample["right"])
        if not sample["meta"].get("has_gt", True):
            n_no_gt += 1
            continue
        mask = sample["valid_noc"] if noc and "valid_noc" in sample else sample["valid"]
        valid = valid_mask(sample["disparity"], max_disparity, mask)
        m = acc.update(pred, sample["disparity"], valid)
        per_image.append({"name": sample["meta"].get("name", str(i)), "latency_ms": t.ms,
                          **{k: _finite(m[k]) for k in METRIC_NAMES},
                          "valid_pixels": m["valid_pixels"]})
    metrics = {k: _finite(v) for k, v in acc.compute().items()}
    latency = {k: _finite(v) for k, v in stats.summary().items()}
    return {"metrics": metrics, "latency_ms": latency, "per_image": per_image,
            "n_images": len(refs), "n_no_gt": n_no_gt}


def _table(report: Dict[str, Any]) -> str:
    m, lat = report["metrics"], report["latency_ms"]

    def fmt(v: Optional[float], spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    head = f"{'method':<28} {'EPE px':>8} {'D1 %':>7} {'>1px %':>7} {'>2px %':>7} {'>3px %':>7} " \
           f"{'p50 ms':>8} {'p90 ms':>8}"
    row = (f"{report['method'][:28]:<28} {fmt(m['epe']):>8} {fmt(m['d1'], '.2f'):>7} "
           f"{fmt(m['bad_1'], '.2f'):>7} {fmt(m['bad_2'], '.2f'):>7} {fmt(m['bad_3'], '.2f'):>7} "
           f"{fmt(lat['p50'], '.1f'):>8} {fmt(lat['p90'], '.1f'):>8}")
    tail = (f"{report['dataset']['name']} split={report['dataset']['split']}: "
            f"{m['n_images']} images scored ({m['mode']}), {m['n_skipped']} without valid "
            f"pixels, {report['n_no_gt']} without GT; max disparity "
            f"{report['max_disparity']:g} px")
    return "\n".join([head, row, tail])


def run(args: argparse.Namespace) -> int:
    """Run ``dtp-stereo eval``; returns the exit code."""
    from dtp_stereo.checkpoint import CheckpointError
    from dtp_stereo.data.readers import list_dataset

    split = args.split
    if split is None and args.dataset.lower().startswith("synthetic"):
        split = "val"
    try:
        refs = list_dataset(args.dataset, args.root, split)
        if args.limit is not None:
            refs = refs[: max(0, args.limit)]
        if not refs:
            raise CliError(f"dataset {args.dataset!r} (root {args.root!r}, split {split}) "
                           "has no samples")
        if args.sgbm:
            from dtp_stereo.baselines import sgbm_disparity

            max_disp = args.max_disparity or SGBM_DEFAULT_MAX_DISPARITY
            search = int(math.ceil(max_disp))

            def predict(left: np.ndarray, right: np.ndarray) -> np.ndarray:
                return sgbm_disparity(left, right, search)

            method, checkpoint, device = "opencv_sgbm", None, "cpu"
        else:
            checkpoint = resolve_checkpoint(args.checkpoint)
            predictor = Predictor(checkpoint, args.device, args.max_width, args.threads)
            max_disp = args.max_disparity or predictor.max_disparity
            predict, device = predictor, args.device
            method = f"{predictor.checkpoint.model_name} ({Path(checkpoint).name})"
        report = evaluate(predict, refs, max_disp, mode=args.mode, noc=args.noc,
                          warmup=args.warmup, device=device)
    except (CliError, CheckpointError, FileNotFoundError) as exc:
        return fail(PROG, str(exc))
    except (OSError, ValueError, RuntimeError) as exc:
        return fail(PROG, f"{type(exc).__name__}: {exc}")
    report = {
        "method": method,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "dataset": {"name": args.dataset, "root": args.root, "split": split,
                    "limit": args.limit, "noc": args.noc},
        "max_disparity": float(max_disp),
        "max_width": args.max_width,
        **report,
        "command": command_line(args),
        "host": host_info(device),
    }
    print(_table(report))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0
