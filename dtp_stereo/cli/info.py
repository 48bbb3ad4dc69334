"""``dtp-stereo info``: describe a checkpoint (model, widths, parameters, MACs, provenance)."""

import argparse
import json
from pathlib import Path
from typing import Any, Dict, Tuple

from dtp_stereo.cli.args import parse_size

PROG = "dtp-stereo info"
MAC_COUNTER = ("conv-only: Conv/ConvTranspose/Linear multiply-accumulates "
               "(dtp_stereo.complexity.count_macs; BN, activations, softmax not counted)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo info``."""
    parser.add_argument("checkpoint", type=Path, help="dtp_stereo checkpoint")
    parser.add_argument("--size", type=parse_size, default=(256, 512),
                        help="input size HxW in pixels for the MAC count (default: 256x512)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def describe(path: Path, size: Tuple[int, int]) -> Dict[str, Any]:
    """Everything ``info`` reports about checkpoint ``path`` at input ``size`` (H, W).

    MACs use :func:`dtp_stereo.complexity.count_macs` (conv-only) at the size rounded up to the
    model's ``size_divisor``.

    Raises:
        CheckpointError: the checkpoint cannot be loaded.
        ValueError: the model cannot run at ``size``.
    """
    from dtp_stereo.checkpoint import build_from_checkpoint, load_checkpoint
    from dtp_stereo.complexity import count_macs, count_parameters

    ckpt = load_checkpoint(path)
    model = build_from_checkpoint(ckpt).eval()
    divisor = int(getattr(model, "size_divisor", 1))
    h, w = (-(-v // divisor) * divisor for v in size)
    try:
        macs = count_macs(model, h, w)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"cannot run {ckpt.model_name} at {h}x{w} to count MACs (try a larger "
                         f"--size; max disparity {ckpt.max_disparity} px): {exc}") from None
    return {
        "checkpoint": str(path),
        "model_name": ckpt.model_name,
        "model_config": ckpt.model_config,
        "max_disparity": ckpt.max_disparity,
        "size_divisor": divisor,
        "parameters": count_parameters(model),
        "macs_size": [h, w],
        "macs": macs,
        "mac_counter": MAC_COUNTER,
        "gmacs": macs / 1e9,
        "input": ckpt.input,
        "provenance": ckpt.provenance,
        "has_training_state": ckpt.training_state is not None,
        "file_bytes": path.stat().st_size,
    }


def _text(info: Dict[str, Any]) -> str:
    lines = [f"checkpoint     {info['checkpoint']} ({info['file_bytes'] / 1e6:.2f} MB)",
             f"model          {info['model_name']}",
             f"max disparity  {info['max_disparity']} px (size divisor {info['size_divisor']})",
             f"parameters     {info['parameters']:,} ({info['parameters'] / 1e6:.3f} M)",
             f"MACs           {info['gmacs']:.3f} G at {info['macs_size'][0]}x"
             f"{info['macs_size'][1]}",
             f"MAC counter    {info['mac_counter']}",
             f"training state {'yes' if info['has_training_state'] else 'no'}",
             "config:"]
    lines += [f"  {k}: {v}" for k, v in info["model_config"].items()]
    lines.append("provenance:")
    lines += [f"  {k}: {json.dumps(v)}" for k, v in info["provenance"].items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``dtp-stereo info``; returns the exit code."""
    from dtp_stereo.checkpoint import CheckpointError
    from dtp_stereo.cli.infer import fail

    try:
        info = describe(args.checkpoint, args.size)
    except (CheckpointError, ValueError) as exc:
        return fail(PROG, str(exc))
    except (RuntimeError, MemoryError) as exc:  # a model too large for this machine, ...
        return fail(PROG, f"{args.checkpoint}: cannot build the model: "
                          f"{type(exc).__name__}: {exc}")
    print(json.dumps(info, indent=2, default=str) if args.json else _text(info))
    return 0
