"""``dtp-stereo bench``: models × sizes × backends side by side; JSON report + markdown table."""

import argparse
import json
import math
import os
import sys
from typing import Any, Dict, List, Optional

__all__ = ["add_arguments", "run", "format_markdown"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser``."""
    parser.add_argument("--models", default="psmnet,dtpnet,dtpnet_fast",
                        help="comma-separated: aliases psmnet (teacher, full width), dtpnet "
                             "(full head), dtpnet_fast (fast head), any registered model name, "
                             "or LABEL=CHECKPOINT.pt (e.g. dtpnet_pruned=models/pruned.pt)")
    parser.add_argument("--sizes", default="256x512",
                        help="comma-separated network input sizes HxW in pixels "
                             "(multiples of the models' size divisor)")
    parser.add_argument("--backends", default="torch,onnxruntime",
                        help="comma-separated: torch, torch-cuda, onnxruntime, "
                             "onnxruntime-cuda, tensorrt (unavailable ones are recorded)")
    parser.add_argument("--threads", type=int, default=2, help="CPU intra-op threads")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per configuration")
    parser.add_argument("--model-repeats", default="",
                        help="per-model repeats, e.g. psmnet=3,dtpnet=20 (overrides --repeats)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--time-cap", type=float, default=300.0,
                        help="seconds allowed per configuration; repeats are reduced, or the "
                             "configuration skipped with a recorded reason, when over")
    parser.add_argument("--reference", default="psmnet",
                        help="model label the ratios compare against ('' for none)")
    parser.add_argument("--channels-last", action="store_true",
                        help="torch: channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="torch: torch.compile the model")
    parser.add_argument("--no-fuse-bn", dest="fuse_bn", action="store_false",
                        help="torch: keep BatchNorm layers (default: folded into the convs)")
    parser.add_argument("--ort-optimization", default="all",
                        choices=("disable", "basic", "extended", "all"),
                        help="onnxruntime graph optimisation level")
    parser.add_argument("--fp16", action="store_true",
                        help="half precision on CUDA backends (torch autocast, TensorRT FP16)")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process instead of one subprocess per "
                             "configuration (faster; peak memory is then not per configuration)")
    parser.add_argument("--onnx-dir", default=None,
                        help="keep the ONNX exports here (default: a temporary directory)")
    parser.add_argument("--output", default=None, help="write the JSON report here")
    parser.add_argument("--markdown", default=None, help="also write the markdown table here")


def _parse_model_repeats(text: str) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        label, _, value = item.partition("=")
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--model-repeats entry {item!r} must be LABEL=N with N >= 1")
        out[label.strip()] = int(value)
    return out


def _fmt(value: Optional[float], spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def format_markdown(report: Dict[str, Any]) -> str:
    """The report as a markdown table (one row per configuration) with a header of the host."""
    host = report["host"]
    lines = [f"CPU: {host.get('cpu')} ({host.get('logical_cpus')} logical), threads "
             f"{host.get('threads')}; torch {host.get('torch_version')}, onnxruntime "
             f"{host.get('onnxruntime_version')}; CUDA: {host.get('cuda_device') or 'none'}; "
             f"{host.get('date')}",
             f"MACs: {report['macs_counter']}.",
             f"Ratios are reference / model against `{report.get('reference')}` at the same size "
             "and backend (x fewer params/MACs, x faster, x less memory).", "",
             "| model | size | backend | params (M) | GMACs | median ms | p90 ms | n | peak MB "
             "| +MB | params x | MACs x | speed x | status |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["results"]:
        lat = r.get("latency_ms", {})
        vs = r.get("vs_reference", {})
        params = r.get("params")
        macs = r.get("macs")
        status = r.get("status", "?")
        if r.get("reason") or r.get("note"):
            status += f": {r.get('reason') or r.get('note')}"
        lines.append(
            f"| {r['model']} | {r['size']} | {r['backend']} "
            f"| {_fmt(params / 1e6 if params else None, '.3f')} "
            f"| {_fmt(macs / 1e9 if macs else None, '.2f')} "
            f"| {_fmt(lat.get('median'), '.1f')} | {_fmt(lat.get('p90'), '.1f')} "
            f"| {r.get('repeats_done', '–')} | {_fmt(r.get('peak_rss_mb'), '.0f')} "
            f"| {_fmt(r.get('peak_above_baseline_mb'), '.0f')} "
            f"| {_fmt(vs.get('params_x'), '.1f')} | {_fmt(vs.get('macs_x'), '.1f')} "
            f"| {_fmt(vs.get('speedup_x'), '.1f')} | {status.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table; write JSON/markdown when asked. Returns 0, or 2 on
    bad arguments."""
    from dtp_stereo.tools.bench import parse_model_spec, parse_size, run_benchmark

    try:
        specs = [parse_model_spec(s) for s in args.models.split(",") if s.strip()]
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
        backends: List[str] = [s.strip() for s in args.backends.split(",") if s.strip()]
        model_repeats = _parse_model_repeats(args.model_repeats)
        if args.threads < 1 or args.repeats < 1 or args.warmup < 0:
            raise ValueError("--threads and --repeats must be >= 1, --warmup >= 0")
        report = run_benchmark(specs, sizes, backends, threads=args.threads,
                               repeats=args.repeats, warmup=args.warmup,
                               time_cap_s=args.time_cap, model_repeats=model_repeats,
                               reference=args.reference or None, isolate=not args.in_process,
                               channels_last=args.channels_last, compile=args.compile,
                               fp16=args.fp16, fuse_bn=args.fuse_bn,
                               ort_optimization=args.ort_optimization, onnx_dir=args.onnx_dir,
                               log=lambda line: print(line, flush=True))
    except ValueError as exc:
        print(f"dtp-stereo bench: {exc}", file=sys.stderr)
        return 2
    table = format_markdown(report)
    print(table)
    for path, text in ((args.output, json.dumps(report, indent=2)), (args.markdown, table)):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text + ("\n" if not text.endswith("\n") else ""))
            print(f"wrote {path}")
    return 0
