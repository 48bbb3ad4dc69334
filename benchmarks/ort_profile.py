"""Where ONNX Runtime spends its time on a student: per-operator kernel time from ORT's profiler.

Exports a checkpoint at a fixed size, runs it ``--runs`` times with ``enable_profiling`` and sums
the ``*_kernel_time`` events per operator type (ms per run), and lists the slowest nodes with
their output shapes. ``--plain-softmax`` exports the regression as ONNX ``Softmax`` then
soft-argmax (what eager PyTorch runs) instead of
:func:`dtp_stereo.models.layers.regress_unnormalised`, to show why the latter exists.

Usage (repository root)::

    .venv/bin/python benchmarks/ort_profile.py --checkpoint models/dtpnet_pruned.pt \\
        --size 256x512 [--head full] [--plain-softmax] --output docs/results/ort-profile.json
"""

import argparse
import collections
import json
import os
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np


def profile_onnx(path: str, height: int, width: int, runs: int,
                 threads: int) -> Tuple[Dict[str, float], Dict[str, dict]]:
    """Mean kernel time per run (ms) of each operator type of the ONNX file ``path``, and of each
    node (``{"op": type, "ms": time, "output": [shape]}``, slowest first)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="dtp_ort_profile_") as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
        session.run(None, {"left": x, "right": x})  # warm-up, also profiled: dropped below
        session.end_profiling()
        opts.profile_file_prefix = os.path.join(tmp, "timed")
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        session.run(None, {"left": x, "right": x})
        for _ in range(runs):
            session.run(None, {"left": x, "right": x})
        with open(session.end_profiling(), encoding="utf-8") as fh:
            events = json.load(fh)
    totals: Dict[str, float] = collections.Counter()
    per_node: Dict[str, dict] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op, ms = e["args"]["op_name"], e["dur"] / 1000.0
            totals[op] += ms
            node = per_node.setdefault(e["name"][:-len("_kernel_time")],
                                       {"op": op, "ms": 0.0, "output": None})
            node["ms"] += ms
            shapes = e["args"].get("output_type_shape") or []
            if shapes and node["output"] is None:
                node["output"] = [list(d.values())[0] for d in shapes][0]
    scale = 1.0 / (runs + 1)
    for node in per_node.values():
        node["ms"] *= scale
    ops = {op: ms * scale for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])}
    return ops, dict(sorted(per_node.items(), key=lambda kv: -kv[1]["ms"]))


def main(argv: Optional[List[str]] = None) -> int:
    import torch.nn.functional as F

    import dtp_stereo.models.layers as layers
    from dtp_stereo.tools.bench import parse_size, write_report
    from dtp_stereo.checkpoint import load_model
    from dtp_stereo.export import export_onnx

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="models/dtpnet_pruned.pt", help="dtp_stereo checkpoint")
    p.add_argument("--head", default=None, choices=("full", "fast"), help="DTPnet head override")
    p.add_argument("--size", default="256x512", help="HxW pixels")
    p.add_argument("--runs", type=int, default=4, help="profiled runs after one warm-up")
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    p.add_argument("--plain-softmax", action="store_true",
                   help="export the regression as an ONNX Softmax node then soft-argmax")
    p.add_argument("--top-nodes", type=int, default=25, help="slowest nodes to list")
    p.add_argument("--output", default=None, help="write JSON here")
    args = p.parse_args(argv)
    height, width = parse_size(args.size)
    model, _ = load_model(args.checkpoint, overrides={"head": args.head} if args.head else None)
    original = layers.regress_unnormalised
    if args.plain_softmax:
        def plain(logits, radius=2):
            prob = F.softmax(logits, dim=1)
            return layers.soft_argmax(prob), layers.window_confidence(prob, radius)
        layers.regress_unnormalised = plain
    try:
        with tempfile.TemporaryDirectory(prefix="dtp_ort_export_") as tmp:
            path = export_onnx(model, os.path.join(tmp, "model.onnx"), height, width)
            ops, nodes = profile_onnx(path, height, width, args.runs, args.threads)
    finally:
        layers.regress_unnormalised = original
    total = sum(ops.values())
    for op, ms in list(ops.items())[:8]:
        print(f"{op:24s} {ms:8.1f} ms ({100 * ms / total:4.1f} %)")
    print(f"{'total kernel time':24s} {total:8.1f} ms")
    top = dict(list(nodes.items())[:args.top_nodes])
    for name, node in top.items():
        print(f"  {name[:40]:40s} {node['op']:14s} {node['ms']:7.2f} ms  {node['output']}")
    if args.output:
        write_report(args.output, {"checkpoint": args.checkpoint, "head": args.head,
                                   "size": args.size, "plain_softmax": args.plain_softmax,
                                   "total_kernel_ms": total, "ms_per_op_type": ops,
                                   "slowest_nodes": top},
                     threads=args.threads, script="benchmarks/ort_profile.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
