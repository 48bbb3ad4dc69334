"""The student's non-convolution operators: the implementation vs the plain formula it replaced.

Times, on the CPU, each operator of :mod:`dtp_stereo.models.layers` and
:mod:`dtp_stereo.models.dtpnet` that the speed work rewrote, next to the textbook formula (the
one the tests compare it with):

- soft-argmax ``sum_d p_d·d``: multiply-then-sum vs one MatMul (:func:`soft_argmax`);
- window confidence: mask of all D planes vs gathering 2r+1 planes around the peak
  (:func:`window_confidence`);
- softmax + both (:func:`regress`) at the fast head's 1/4 resolution and the full head's;
- shift correlation: fixed-weight convolutions (the first implementation) vs unrolled slices
  (:class:`ShiftCorrelation`).

Writes ``docs/results/op-timings.json``. Usage (repository root)::

    .venv/bin/python benchmarks/op_timings.py --threads 2 --output docs/results/op-timings.json
"""

import argparse
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dtp_stereo.models.dtpnet import ShiftCorrelation
from dtp_stereo.models.layers import regress, soft_argmax, window_confidence
from dtp_stereo.timing import time_calls

__all__ = ["plain_soft_argmax", "plain_window_confidence", "plain_regress",
           "conv_shift_correlation", "main"]


def plain_soft_argmax(prob: Tensor) -> Tensor:
    """``sum_d p_d·d`` as multiply-then-sum (B×D×H×W -> B×H×W)."""
    d = torch.arange(prob.shape[1], dtype=prob.dtype).view(1, -1, 1, 1)
    return torch.sum(prob * d, dim=1)


def plain_window_confidence(prob: Tensor, radius: int = 2) -> Tensor:
    """Mass within ``radius`` of the argmax by masking all D planes."""
    d = torch.arange(prob.shape[1], dtype=prob.dtype).view(1, -1, 1, 1)
    peak = torch.argmax(prob, dim=1, keepdim=True).to(prob.dtype)
    return torch.sum(prob * (torch.abs(d - peak) <= radius).to(prob.dtype), dim=1)


def plain_regress(logits: Tensor) -> Tuple[Tensor, Tensor]:
    prob = F.softmax(logits, dim=1)
    return plain_soft_argmax(prob), plain_window_confidence(prob)


def conv_shift_correlation(channels: int, shifts: int) -> Callable[[Tensor, Tensor], Tensor]:
    """The first ShiftCorrelation: one-hot depthwise 1×n shift conv, depthwise 1×1 repeat,
    1×1 sum over C·n channels (same values, mostly zero weights)."""
    c, n = channels, shifts
    shift = torch.eye(n).flip(1).repeat(c, 1).view(c * n, 1, 1, n)
    total = torch.zeros(n, c * n, 1, 1)
    idx = torch.arange(n)
    for ch in range(c):
        total[idx, ch * n + idx] = 1.0 / c
    ones = torch.ones(c * n, 1, 1, 1)

    def correlate(left: Tensor, right: Tensor) -> Tensor:
        shifted = F.conv2d(F.pad(right, (n - 1, 0)), shift, groups=c)
        return F.conv2d(shifted * F.conv2d(left, ones, groups=c), total)

    return correlate


def _pair(name: str, shape: List[int], plain: Callable[[], Any], impl: Callable[[], Any],
          repeats: int) -> Dict[str, Any]:
    with torch.inference_mode():
        a, b = plain(), impl()
        a = a if isinstance(a, tuple) else (a,)
        b = b if isinstance(b, tuple) else (b,)
        diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
        t_plain = time_calls(plain, repeats, 3).p50
        t_impl = time_calls(impl, repeats, 3).p50
    row = {"op": name, "shape": shape, "plain_ms": t_plain, "impl_ms": t_impl,
           "speedup_x": t_plain / t_impl, "max_abs_diff": diff}
    print(f"{name} {shape}: plain {t_plain:.2f} ms, implementation {t_impl:.2f} ms "
          f"({row['speedup_x']:.1f}x), max |diff| {diff:.1e}", flush=True)
    return row


def main(argv: Optional[List[str]] = None) -> int:
    from dtp_stereo.tools.bench import write_report

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per variant")
    p.add_argument("--output", default=None, help="write JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    # the fast head at 256x512 and 384x1248 (D = 192 planes at 1/4), the full head at 256x512
    for shape in ([1, 192, 64, 128], [1, 192, 96, 312], [1, 192, 256, 512]):
        logits = torch.randn(*shape, generator=g) * 3
        prob = F.softmax(logits, dim=1)
        rows.append(_pair("soft_argmax", shape, lambda: plain_soft_argmax(prob),
                          lambda: soft_argmax(prob), args.repeats))
        rows.append(_pair("window_confidence", shape, lambda: plain_window_confidence(prob),
                          lambda: window_confidence(prob), args.repeats))
        rows.append(_pair("regress", shape, lambda: plain_regress(logits),
                          lambda: regress(logits), args.repeats))
    # the shipped student's correlation (16 channels, D/4 = 16 shifts) at 1/4 of 384x1248
    for c, n, h, w in ((16, 16, 64, 128), (16, 16, 96, 312)):
        left = torch.randn(1, c, h, w, generator=g)
        right = torch.randn(1, c, h, w, generator=g)
        old, new = conv_shift_correlation(c, n), ShiftCorrelation(c, n)
        rows.append(_pair("shift_correlation", [1, c, h, w], lambda: old(left, right),
                          lambda: new(left, right), args.repeats))
    if args.output:
        write_report(args.output, {"results": rows}, threads=args.threads,
                     script="benchmarks/op_timings.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
