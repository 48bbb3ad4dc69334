"""Accuracy of the shipped student in reduced precision, emulated on the CPU.

No GPU was available to this project, so fp16 *latency* on CUDA/TensorRT is not measured here.
What the CPU can tell is what fp16 arithmetic does to the *accuracy*: the same weights run

- ``fp32``: the reference;
- ``fp16_autocast``: ``torch.autocast(float16)``, as the torch backend runs with ``fp16=True``
  on CUDA; on the CPU autocast also leaves softmax and the outputs in float16 (on CUDA softmax
  runs in float32), so this is the more pessimistic of the two;
- ``fp16_all``: every layer and activation in float16 (``model.half()``), close to a TensorRT
  FP16 engine that keeps no layer in float32 (the worst case);
- ``bf16_autocast``: bfloat16 autocast, the other 16-bit format.

CPU float16 kernels accumulate differently from GPU tensor cores, so the numbers are an
estimate of the rounding cost, not the GPU's exact outputs. Writes
``docs/results/precision-accuracy.json``.

Usage (repository root)::

    .venv/bin/python benchmarks/precision_accuracy.py [--checkpoint models/dtpnet_pruned.pt] \\
        [--samples 50] [--output docs/results/precision-accuracy.json]
"""

import argparse
import sys
from typing import List, Optional

import torch
from torch import Tensor, nn

from dtp_stereo.checkpoint import load_model
from dtp_stereo.models.output import StereoOutput

__all__ = ["PRECISIONS", "PrecisionModel", "main"]

PRECISIONS = ("fp32", "fp16_autocast", "fp16_all", "bf16_autocast")


class PrecisionModel(nn.Module):
    """Run a stereo model in one of :data:`PRECISIONS`; outputs come back as float32.

    Args:
        model: a dtp_stereo model (not modified: ``fp16_all`` runs a half copy).
        precision: one of :data:`PRECISIONS`.
    """

    def __init__(self, model: nn.Module, precision: str) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.model = _half_copy(model) if precision == "fp16_all" else model
        self.max_disparity = model.max_disparity
        self.size_divisor = model.size_divisor

    def forward(self, left: Tensor, right: Tensor) -> StereoOutput:
        if self.precision == "fp16_all":
            out = self.model(left.half(), right.half())
        elif self.precision == "fp32":
            out = self.model(left, right)
        else:
            dtype = torch.float16 if self.precision == "fp16_autocast" else torch.bfloat16
            with torch.autocast(device_type=left.device.type, dtype=dtype):
                out = self.model(left, right)
        conf = None if out.confidence is None else out.confidence.float()
        return StereoOutput(out.disparity.float(), None, conf)


def _half_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).half()


def main(argv: Optional[List[str]] = None) -> int:
    from dtp_stereo.tools.bench import write_report
    from training.evaluation import SYNTHETIC_TEST, evaluate_model, synthetic_test_split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="models/dtpnet_pruned.pt", help="dtp_stereo checkpoint")
    p.add_argument("--heads", default="full,fast", help="DTPnet heads to evaluate")
    p.add_argument("--samples", type=int, default=50, help="synthetic test pairs")
    p.add_argument("--output", default="docs/results/precision-accuracy.json", help="JSON path")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    test = synthetic_test_split(args.samples)
    out = {"checkpoint": args.checkpoint, "test_split": SYNTHETIC_TEST,
           "samples": args.samples, "device": "cpu (float16 emulated; no GPU measured)",
           "results": {}}
    for head in filter(None, args.heads.split(",")):
        model, _ = load_model(args.checkpoint, overrides={"head": head})
        ref = None
        for precision in PRECISIONS:
            wrapped = PrecisionModel(model, precision).eval()
            r = evaluate_model(wrapped, test, args.samples)
            row = {k: r[k] for k in ("epe", "d1", "bad_1", "bad_2", "bad_3")}
            sample = test[0]
            with torch.inference_mode():
                disp = wrapped(sample["left"][None].float(), sample["right"][None].float())
            if ref is None:
                ref = disp.disparity
            diff = (disp.disparity - ref).abs()
            row["first_pair_max_abs_diff_px"] = float(diff.max())
            row["first_pair_mean_abs_diff_px"] = float(diff.mean())
            out["results"][f"{head}_{precision}"] = row
            print(f"{head} {precision}: EPE {row['epe']:.3f} px, D1 {row['d1']:.2f} %, vs fp32 "
                  f"max {row['first_pair_max_abs_diff_px']:.3f} px", flush=True)
    write_report(args.output, out, threads=2, script="benchmarks/precision_accuracy.py",
                 argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
