"""Is the student convolution-bound? Its convolutions timed alone vs the whole model.

Forward pre-hooks record the input of every convolution during one forward pass; each
convolution is then timed in isolation on its recorded input (median of ``repeats`` runs after
warm-up), and the sum is compared with the median latency of the whole model on the same input.
A ratio ``model_ms / conv_ms`` near 1 means the convolutions are the cost and MAC reductions
(pruning) turn into speed; the target is <= 1.5. Everything else (cost volume construction,
interpolation, softmax, regression, memory copies, Python overhead) is in the gap.

Usage (from the repository root, torch CPU)::

    .venv/bin/python benchmarks/conv_bound.py --sizes 256x512 --heads full,fast --threads 2 \\
        --repeats 10 --output docs/results/conv-bound-cpu.json
"""

import argparse
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["record_conv_inputs", "measure_conv_bound", "main"]

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d,
               nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def record_conv_inputs(model: nn.Module, left: Tensor,
                       right: Tensor) -> List[Tuple[str, nn.Module, Tensor]]:
    """Run ``model(left, right)`` once; return (name, conv module, input copy) per conv call.

    A module called several times (e.g. the shared feature extractor on both images) gives
    one entry per call.
    """
    calls: List[Tuple[str, nn.Module, Tensor]] = []
    handles = []

    def make_hook(name: str) -> Callable:
        def hook(module: nn.Module, args: Tuple[Tensor, ...]) -> None:
            calls.append((name, module, args[0].detach().clone()))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, _CONV_TYPES):
            handles.append(module.register_forward_pre_hook(make_hook(name)))
    try:
        with torch.inference_mode():
            model(left, right)
    finally:
        for h in handles:
            h.remove()
    return calls


def measure_conv_bound(model: nn.Module, height: int, width: int, *, repeats: int = 10,
                       warmup: int = 2, top: int = 5, seed: int = 0) -> Dict[str, Any]:
    """Time the model and its convolutions alone on a 1×3×height×width pair (CPU, float32).

    The two are timed in interleaved rounds (each round: the whole model once, then every
    convolution once), so a slow spell of a shared machine hits both alike; the ratio is the
    median over rounds of (model time / sum of the round's convolution times).

    Args:
        model: a dtp_stereo model in eval mode (``forward(left, right)``).
        height, width: input size, pixels (multiples of ``model.size_divisor``).
        repeats, warmup: timed and untimed rounds.
        top: how many of the slowest convolutions to list.
        seed: seed of the random input pair.

    Returns:
        ``{"size", "model_ms" (median), "conv_ms" (median of the per-round sums), "ratio"
        (median of per-round model/conv ratios), "ratio_range" [min, max], "conv_share"
        (conv_ms / model_ms), "n_conv_calls", "top_convs": [{name, ms (median), shape}]}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    left = torch.rand(1, 3, height, width, generator=gen)
    right = torch.roll(left, shifts=-8, dims=3)
    calls = record_conv_inputs(model, left, right)
    if not calls:
        raise ValueError(f"{type(model).__name__} has no convolution modules")
    model_times: List[float] = []
    conv_times: List[List[float]] = [[] for _ in calls]
    with torch.inference_mode():
        for round_ in range(warmup + repeats):
            t0 = time.perf_counter()
            model(left, right)
            t_model = (time.perf_counter() - t0) * 1e3
            t_convs = []
            for _, mod, x in calls:
                t0 = time.perf_counter()
                mod(x)
                t_convs.append((time.perf_counter() - t0) * 1e3)
            if round_ >= warmup:
                model_times.append(t_model)
                for acc, t in zip(conv_times, t_convs):
                    acc.append(t)
    sums = [sum(ts) for ts in zip(*conv_times)]
    ratios = [m / c for m, c in zip(model_times, sums)]
    model_ms, conv_ms = statistics.median(model_times), statistics.median(sums)
    per_conv = [(name, statistics.median(ts), tuple(x.shape))
                for (name, _, x), ts in zip(calls, conv_times)]
    slowest = sorted(per_conv, key=lambda item: item[1], reverse=True)[:top]
    return {"size": f"{height}x{width}", "model_ms": model_ms, "conv_ms": conv_ms,
            "ratio": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)],
            "conv_share": conv_ms / model_ms, "n_conv_calls": len(calls),
            "top_convs": [{"name": n, "ms": ms, "input_shape": list(s)} for n, ms, s in slowest]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure both DTPnet heads (or a checkpoint) and print a markdown table."""
    from dtp_stereo.tools.bench import ModelSpec, build_spec_model, parse_model_spec, write_report
    from dtp_stereo.tools.bench import parse_size
    from dtp_stereo.optimize import fuse_conv_bn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256x512", help="comma-separated HxW, pixels")
    parser.add_argument("--heads", default="full,fast", help="DTPnet heads to build")
    parser.add_argument("--checkpoint", action="append", default=None,
                        help="LABEL=PATH[:head=fast] of a checkpoint to measure too "
                             "(repeatable)")
    parser.add_argument("--no-fuse-bn", dest="fuse_bn", action="store_false",
                        help="keep BatchNorm layers (default: folded into the convs, as the "
                             "torch backend runs the model)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--output", default=None, help="write JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    specs: List[ModelSpec] = [ModelSpec(label=f"dtpnet_{h}", name="dtpnet", config={"head": h})
                              for h in filter(None, args.heads.split(","))]
    for item in args.checkpoint or []:
        try:
            specs.append(parse_model_spec(item))
        except ValueError as exc:
            parser.error(f"--checkpoint: {exc}")
    rows = []
    for spec in specs:
        label, model = spec.label, build_spec_model(spec)
        if args.fuse_bn:
            model = fuse_conv_bn(model)
        for size in args.sizes.split(","):
            h, w = parse_size(size)
            res = measure_conv_bound(model, h, w, repeats=args.repeats, warmup=args.warmup)
            rows.append({"model": label, **res})
            print(f"{label} {size}: model {res['model_ms']:.1f} ms, convs {res['conv_ms']:.1f} "
                  f"ms, ratio {res['ratio']:.2f} (rounds {res['ratio_range'][0]:.2f}-"
                  f"{res['ratio_range'][1]:.2f})", flush=True)
    print("\n| model | size | model ms | convs ms | ratio (target <= 1.5) | rounds | conv calls |")
    print("|---|---|---:|---:|---:|---|---:|")
    for r in rows:
        lo, hi = r["ratio_range"]
        print(f"| {r['model']} | {r['size']} | {r['model_ms']:.1f} | {r['conv_ms']:.1f} "
              f"| {r['ratio']:.2f} | {lo:.2f}-{hi:.2f} | {r['n_conv_calls']} |")
    if args.output:
        write_report(args.output, {"repeats": args.repeats, "fuse_bn": args.fuse_bn,
                                   "results": rows},
                     threads=args.threads, script="benchmarks/conv_bound.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
