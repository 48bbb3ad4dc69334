"""``dtp-train``: run the distill-then-prune pipeline from a YAML config, or plot reports.

Usage::

    dtp-train --config configs/tiny.yaml [--stages distill,prune] [--run-dir D] [--resume]
              [--max-steps N] [key.path=value ...]
    dtp-train report RUN_DIR [RUN_DIR ...] [--out DIR]
    dtp-train textures [--from DIR ...] [--no-defaults] [--out data/textures]
                       (photo texture bank for the photo_layers / single_image datasets)
    dtp-train quantize --onnx IN.onnx --output OUT.onnx [--calib-samples N] [--compare [N]]
                       [--json OUT.json]          (INT8 post-training quantization, see --help)
    dtp-train adapt --checkpoint C (--pairs DIR | --bag PATH --left T --right T) --output OUT.pt
                    [--onnx OUT.onnx] [--steps N] ...   (adapt to a camera without GT, --help)
    torchrun --nproc_per_node 2 -m training.cli --config ...   (data-parallel training)
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from training.config import STAGES, ConfigError, load_config


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dtp-train", description="Distill-then-prune stereo training pipeline "
        "(teacher -> distill -> prune -> finetune -> eval -> export). "
        "Use 'dtp-train report RUN_DIR' to plot results, 'dtp-train quantize --help' for "
        "INT8 ONNX quantization and 'dtp-train textures --help' to collect photo textures.")
    p.add_argument("--config", required=True, help="pipeline YAML file (see configs/)")
    p.add_argument("--stages", default=None,
                   help=f"comma-separated subset of {','.join(STAGES)} (default: config stages)")
    p.add_argument("--run-dir", default=None, help="output folder (overrides run_dir)")
    p.add_argument("--resume", action="store_true",
                   help="continue training stages from their last.pt")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop training stages at this global step (checkpointed; for testing)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="config overrides, values parsed as YAML (e.g. distill.optim.lr=1e-4)")
    return p


def _report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dtp-train report",
                                description="Learning curves and EPE-vs-latency Pareto plot")
    p.add_argument("run_dirs", nargs="+", help="run folders (with <stage>/metrics.csv and "
                   "eval/results.json)")
    p.add_argument("--out", default=None, help="plot folder (default: <first run>/plots)")
    return p


def _textures_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dtp-train textures",
        description="Collect a bank of photographs (deduplicated, resized, with a manifest of "
        "sources and licences) for the photo_layers and single_image datasets. By default "
        "reads /usr/share/backgrounds, /usr/share/wallpapers and the photos of "
        "/usr/share/doc/opencv-doc/examples/data (never its stereo/calibration files).")
    p.add_argument("--from", dest="sources", action="append", default=[], metavar="DIR",
                   help="extra folder of photographs, searched recursively (repeatable)")
    p.add_argument("--no-defaults", action="store_true",
                   help="read only the --from folders, not the Debian ones")
    p.add_argument("--out", default="data/textures", help="bank folder (default: %(default)s)")
    p.add_argument("--min-side", type=int, default=256,
                   help="skip images with a side below this, pixels (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=1024,
                   help="longer side of the stored photos, pixels (default: %(default)s)")
    p.add_argument("--max-hamming", type=int, default=6,
                   help="perceptual-hash distance (bits) up to which photos are duplicates "
                   "(default: %(default)s)")
    p.add_argument("--min-detail", type=float, default=0.0,
                   help="skip images with less textured area than this fraction (8x8 blocks "
                   "with grey std > 3; flat vector art scores low; default: %(default)s = keep "
                   "all)")
    return p


def _textures(argv: Sequence[str]) -> int:
    """``dtp-train textures``: build the texture bank, print its counts as JSON."""
    from training.data.textures import DEFAULT_SOURCES, build_texture_bank

    args = _textures_parser().parse_args(argv)
    try:
        manifest = build_texture_bank(
            args.out, args.sources, default_sources=() if args.no_defaults else DEFAULT_SOURCES,
            min_side=args.min_side, max_side=args.max_side, max_hamming=args.max_hamming,
            min_detail=args.min_detail, log=lambda msg: print(msg, file=sys.stderr))
    except OSError as exc:
        print(f"dtp-train textures: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"out": args.out, **manifest["counts"]}, indent=2))
    return 0 if manifest["counts"]["kept"] else 1


def _adapt_parser() -> argparse.ArgumentParser:
    from training.adapt import PROXY_SOURCES, AdaptCfg

    d = AdaptCfg()
    p = argparse.ArgumentParser(
        prog="dtp-train adapt",
        description="Adapt a trained student to your own camera without ground truth: "
        "confidence-filtered SGBM proxy labels, photometric reconstruction, edge-aware "
        "smoothness and an anchor to the starting model (training/adapt.py). The output is an "
        "ordinary checkpoint of the same architecture and widths.")
    p.add_argument("--checkpoint", required=True,
                   help="starting checkpoint (file or operating-point name, e.g. default)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", type=Path, help="folder with left/NAME and right/NAME images")
    src.add_argument("--bag", type=Path, help="rosbag2 with the two image topics")
    p.add_argument("--left", default="/left/image_rect", help="left image topic (--bag)")
    p.add_argument("--right", default="/right/image_rect", help="right image topic (--bag)")
    p.add_argument("--max-pairs", type=int, default=None, help="use at most N pairs")
    p.add_argument("--slop", type=float, default=0.0,
                   help="--bag: pair stamps up to this many seconds apart (default 0 = exact)")
    p.add_argument("--output", type=Path, required=True, help="adapted checkpoint to write")
    p.add_argument("--onnx", type=Path, default=None, help="also export it to this ONNX file")
    p.add_argument("--force", action="store_true", help="overwrite --output / --onnx")
    p.add_argument("--resume", action="store_true", help="continue a cut run of these settings")
    p.add_argument("--steps", type=int, default=d.steps, help="optimisation steps (%(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (%(default)s)")
    p.add_argument("--lr-schedule", choices=("cosine", "constant"), default=d.lr_schedule,
                   help="cosine decay from --lr to 0 over --steps, or constant (%(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="(%(default)s)")
    p.add_argument("--crop", default=f"{d.crop[0]}x{d.crop[1]}", help="HxW crops (%(default)s)")
    p.add_argument("--max-width", type=int, default=d.max_width,
                   help="scale wider images down to this width first, px (%(default)s)")
    p.add_argument("--proxy", choices=PROXY_SOURCES, default=d.proxy,
                   help="proxy-label source: SGBM, a frozen teacher network (--proxy-teacher), "
                   "SGBM with the teacher where SGBM has no label, or none (%(default)s)")
    p.add_argument("--proxy-teacher", default=d.proxy_teacher,
                   help="the teacher of --proxy teacher / sgbm+teacher: a checkpoint file or "
                   "an operating-point name")
    for name in ("proxy", "photometric", "smoothness", "anchor", "synthetic"):
        p.add_argument(f"--{name}-weight", type=float, default=getattr(d, f"{name}_weight"),
                       help=f"weight of the {name} loss, 0 = off (%(default)s)")
    p.add_argument("--anchor-on", choices=("all", "unlabelled"), default=d.anchor_on,
                   help="anchor every pixel, or only those without a proxy label (%(default)s)")
    p.add_argument("--lr-check-px", type=float, default=d.lr_check_px,
                   help="left-right consistency of the proxy labels, px (%(default)s)")
    p.add_argument("--proxy-blocks", default="+".join(map(str, d.proxy_blocks)),
                   help="SGBM block sizes of the proxy labels, px, e.g. 3+5+7: with several, "
                   "a label is kept only where all agree (%(default)s)")
    p.add_argument("--proxy-pad", action=argparse.BooleanOptionalAction, default=d.proxy_pad,
                   help="SGBM proxies on images padded on the left, so that the left border "
                   "columns, which OpenCV leaves invalid, are labelled too (%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (%(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _block_sizes(text: str) -> Tuple[int, ...]:
    """``--proxy-blocks`` ``3+5+7`` -> (3, 5, 7); AdaptCfg checks the values."""
    from training.adapt import AdaptError

    try:
        return tuple(int(v) for v in text.split("+"))
    except ValueError:
        raise AdaptError(f"adapt: --proxy-blocks {text!r} is not block sizes joined by '+', "
                         "e.g. 5 or 3+5+7") from None


def _adapt(argv: Sequence[str]) -> int:
    """``dtp-train adapt``: adapt, print the summary as JSON."""
    import torch

    from dtp_stereo.assets import resolve_model
    from dtp_stereo.checkpoint import CheckpointError
    from dtp_stereo.preprocess import SizeError, parse_size
    from training.adapt import (AdaptCfg, AdaptError, adapt, load_bag_pairs,
                                load_folder_pairs)

    args = _adapt_parser().parse_args(argv)
    try:
        cfg = AdaptCfg(steps=args.steps, lr=args.lr, lr_schedule=args.lr_schedule,
                       batch_size=args.batch_size,
                       crop=parse_size(args.crop), max_width=args.max_width, proxy=args.proxy,
                       proxy_weight=args.proxy_weight, photometric_weight=args.photometric_weight,
                       smoothness_weight=args.smoothness_weight,
                       anchor_weight=args.anchor_weight, anchor_on=args.anchor_on,
                       synthetic_weight=args.synthetic_weight, lr_check_px=args.lr_check_px,
                       proxy_blocks=_block_sizes(args.proxy_blocks), proxy_pad=args.proxy_pad,
                       proxy_teacher=args.proxy_teacher, seed=args.seed)
        checkpoint = resolve_model(args.checkpoint)
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        pairs = (load_folder_pairs(args.pairs, args.max_pairs) if args.pairs is not None else
                 load_bag_pairs(args.bag, args.left, args.right, args.max_pairs,
                                args.slop))
        summary = adapt(checkpoint, pairs, args.output, cfg, onnx=args.onnx, force=args.force,
                        resume=args.resume, progress=not args.quiet)
    except (AdaptError, SizeError, CheckpointError, FileNotFoundError) as exc:
        print(f"dtp-train adapt: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def _split_stages(text: Optional[str]) -> Optional[List[str]]:
    if text is None:
        return None
    stages = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ConfigError(f"--stages: unknown stage(s) {', '.join(bad)} "
                          f"(valid: {', '.join(STAGES)})")
    return stages


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``dtp-train``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "quantize":
        from training.quantize import main as quantize_main

        return quantize_main(argv[1:])
    if argv and argv[0] == "report":
        from training.plots import report

        args = _report_parser().parse_args(argv[1:])
        out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "plots"
        written = report([Path(r) for r in args.run_dirs], out)
        print(json.dumps(written, indent=2))
        return 0 if written else 1
    if argv and argv[0] == "textures":
        return _textures(argv[1:])
    if argv and argv[0] == "adapt":
        return _adapt(argv[1:])
    args = _train_parser().parse_intermixed_args(argv)  # options may follow overrides
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    if args.quiet:
        overrides.append("progress=false")
    try:
        cfg = load_config(args.config, overrides)
        stages = _split_stages(args.stages)
    except ConfigError as exc:
        print(f"dtp-train: {exc}", file=sys.stderr)
        return 2
    from training import distributed
    from training.stages import run_pipeline
    from training.trainer import TrainingDiverged

    distributed.init_from_env(cfg.device)
    try:
        results = run_pipeline(cfg, stages, resume=args.resume, max_steps=args.max_steps)
    except (TrainingDiverged, FileNotFoundError) as exc:
        print(f"dtp-train: {exc}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
    if distributed.current().is_main:
        print(json.dumps({k: _brief(v) for k, v in results.items()}, indent=2, default=str))
    return 0


def _brief(summary: object) -> object:
    if not isinstance(summary, dict):
        return summary
    keep = ("finished", "step", "best_epe", "param_reduction", "params_before", "params_after",
            "max_abs_diff_px", "onnx", "best")
    out = {k: summary[k] for k in keep if k in summary}
    if "models" in summary:
        out["models"] = {k: {m: v.get(m) for m in ("epe", "d1", "bad_2", "params", "latency_ms")}
                         for k, v in summary["models"].items()}
    if "sgbm" in summary:
        out["sgbm"] = {m: summary["sgbm"].get(m) for m in ("epe", "d1", "bad_2")}
    return out


if __name__ == "__main__":
    sys.exit(main())
