"""``dtp-stereo export``: export a checkpoint to ONNX and check it against PyTorch."""

import argparse
import sys
from pathlib import Path

from dtp_stereo.cli.args import parse_size

PROG = "dtp-stereo export"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo export``."""
    parser.add_argument("checkpoint", type=Path, help="dtp_stereo checkpoint (.pt)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output .onnx file")
    parser.add_argument("--size", type=parse_size, default=(256, 512),
                        help="network input HxW in pixels (default 256x512); multiples of the "
                             "model's size divisor")
    parser.add_argument("--dynamic", action="store_true",
                        help="dynamic batch/height/width axes (TensorRT then needs a size)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="max allowed |torch - onnxruntime| disparity, pixels (default 1e-3)")


def run(args: argparse.Namespace) -> int:
    """Export, then compare onnxruntime with torch; exit 1 if the difference is too large."""
    from dtp_stereo.checkpoint import CheckpointError, load_model
    from dtp_stereo.export import check_onnx_against_torch, export_onnx

    try:
        model, _ = load_model(args.checkpoint, device="cpu")
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    h, w = args.size
    try:
        export_onnx(model, str(args.output), h, w, dynamic=args.dynamic, opset=args.opset)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    diff = check_onnx_against_torch(model, str(args.output), h, w)
    shape = "dynamic" if args.dynamic else f"{h}x{w}"
    print(f"wrote {args.output} ({shape}, opset {args.opset}); "
          f"max |torch - onnxruntime| = {diff:.3g} px")
    if not diff <= args.tolerance:
        print(f"{PROG}: error: max abs diff {diff:.3g} px exceeds tolerance "
              f"{args.tolerance:g} px", file=sys.stderr)
        return 1
    return 0
