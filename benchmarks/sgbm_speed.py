"""A student on ONNX Runtime against OpenCV SGBM (3-way) at robot-camera size, interleaved.

The issue-9 speed target: the shipped student at 640×480 with D = 192, 2 threads, through the
ONNX Runtime backend, no slower than ``cv2.StereoSGBM`` (3-way mode, 192 disparities, the
project's settings in :func:`dtp_stereo.baselines.sgbm_disparity`, holes not filled) at the same
size. Each round times SGBM ``--per-round`` times and the student ``--per-round`` times (medians),
one after the other in one process, so both see the same machine state; the report is the median
of the per-round ratios student ms / SGBM ms (< 1: the student is faster) with its range.
Inputs: the Aloe pair (``opencv-doc``) resized to the size when it is installed, else a
textured random pair. SGBM's time includes OpenCV's grey/colour cost on uint8 images; the
student's is the backend call on the normalised tensors (no resize, no padding: 640×480 is a
multiple of 16).

Usage (repository root)::

    .venv/bin/python benchmarks/sgbm_speed.py --model student=models/dtpnet_real.pt \\
        --size 480x640 --threads 2 --rounds 5 --output docs/results/sgbm-speed-640x480.json
"""

import argparse
import statistics
import sys
import tempfile
from typing import List, Optional

import numpy as np


def _pair(height: int, width: int):
    import cv2

    try:
        from dtp_stereo.data.real_pairs import load_aloe

        left, right, _ = load_aloe()
        source = "aloe (opencv-doc) resized"
    except (FileNotFoundError, ValueError):
        rng = np.random.default_rng(0)
        left = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        right = np.ascontiguousarray(np.roll(left, -8, axis=1))
        source = "random texture, right = left shifted 8 px"
    left = cv2.resize(left, (width, height), interpolation=cv2.INTER_AREA)
    right = cv2.resize(right, (width, height), interpolation=cv2.INTER_AREA)
    return left, right, source


def main(argv: Optional[List[str]] = None) -> int:
    import cv2

    from dtp_stereo.baselines import sgbm_disparity
    from dtp_stereo.tools.bench import (BenchJob, _make_backend, build_spec_model,
                                        export_for_onnx, parse_model_spec, parse_size,
                                        write_report)
    from dtp_stereo.timing import time_calls

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="LABEL=CHECKPOINT (the student)")
    p.add_argument("--size", default="480x640", help="HxW pixels (default 480x640)")
    p.add_argument("--sgbm-disparities", type=int, default=192, help="SGBM search range, px")
    p.add_argument("--threads", type=int, default=2, help="threads for ORT and OpenCV")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=5)
    p.add_argument("--output", default=None, help="write JSON here")
    args = p.parse_args(argv)
    height, width = parse_size(args.size)
    spec = parse_model_spec(args.model)
    cv2.setNumThreads(args.threads)
    left_u8, right_u8, source = _pair(height, width)
    left = left_u8.astype(np.float32) / 255.0
    right = right_u8.astype(np.float32) / 255.0
    with tempfile.TemporaryDirectory(prefix="dtp_sgbm_speed_") as tmp:
        exported = export_for_onnx(spec, height, width, tmp)
        job = BenchJob(model=spec, height=height, width=width, backend="onnxruntime",
                       threads=args.threads, onnx=exported["onnx"])
        model = build_spec_model(spec)
        backend, _ = _make_backend(job, model)
        backend.infer(left, right)
        sgbm_disparity(left_u8, right_u8, args.sgbm_disparities, fill=False)
        student_ms, sgbm_ms, ratios = [], [], []
        for _ in range(args.rounds):
            t_sgbm = time_calls(lambda: sgbm_disparity(left_u8, right_u8,
                                                       args.sgbm_disparities, fill=False),
                                args.per_round).p50
            t_model = time_calls(lambda: backend.infer(left, right), args.per_round).p50
            sgbm_ms.append(t_sgbm)
            student_ms.append(t_model)
            ratios.append(t_model / t_sgbm)
    payload = {"model": spec.label, "checkpoint": spec.checkpoint,
               "max_disparity": int(getattr(model, "max_disparity", 0)),
               "size": f"{height}x{width}", "backend": "onnxruntime",
               "sgbm": {"mode": "3-way", "disparities": args.sgbm_disparities,
                        "holes_filled": False},
               "input": source, "rounds": args.rounds, "per_round": args.per_round,
               "student_ms": statistics.median(student_ms),
               "sgbm_ms": statistics.median(sgbm_ms),
               "ratio_student_over_sgbm": statistics.median(ratios),
               "ratio_min": min(ratios), "ratio_max": max(ratios), "round_ratios": ratios,
               "target_met": statistics.median(ratios) <= 1.0}
    print(f"{spec.label}: {payload['student_ms']:.1f} ms (ORT), SGBM "
          f"{payload['sgbm_ms']:.1f} ms, ratio {payload['ratio_student_over_sgbm']:.2f} "
          f"({min(ratios):.2f}..{max(ratios):.2f})")
    if args.output:
        write_report(args.output, payload, threads=args.threads,
                     script="benchmarks/sgbm_speed.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
