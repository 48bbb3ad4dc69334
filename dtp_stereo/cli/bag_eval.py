"""``dtp-stereo bag-eval``: run a model offline over a rosbag2; metrics and latency.

Camera-info topics default to the image topic's sibling ``camera_info`` (``/left/image_rect`` ->
``/left/camera_info``) when the bag has it; they are needed for ``/points2`` in ``--output-bag``.
"""

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, Optional

PROG = "dtp-stereo bag-eval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo bag-eval``."""
    parser.add_argument("bag", type=Path, help="rosbag2 directory (sqlite3 or mcap)")
    parser.add_argument("--left", default="/left/image_rect", help="left image topic")
    parser.add_argument("--right", default="/right/image_rect", help="right image topic")
    parser.add_argument("--gt", default=None, help="ground-truth disparity topic (32FC1 pixels)")
    parser.add_argument("--left-info", default=None, help="left camera_info topic")
    parser.add_argument("--right-info", default=None, help="right camera_info topic")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="dtp_stereo checkpoint (default: the shipped student)")
    parser.add_argument("--onnx", type=Path, default=None, help="exported ONNX file")
    parser.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                        default="auto", help="inference backend (default auto, as the node)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    parser.add_argument("--max-width", type=int, default=None,
                        help="downscale wider images to this width px (the node's max_width)")
    parser.add_argument("--input-size", default=None, metavar="HxW",
                        help="fixed network input size px (the node's input_height/width)")
    parser.add_argument("--head", choices=("checkpoint", "full", "fast"), default="checkpoint",
                        help="DTPnet regression head (the node's head parameter)")
    parser.add_argument("--image-bit-depth", type=int, default=16,
                        help="significant bits of mono16 images (the node's image_bit_depth)")
    parser.add_argument("--min-disparity", type=float, default=0.0,
                        help="output bag: disparities below this are invalid, px")
    parser.add_argument("--max-depth", type=float, default=0.0,
                        help="output bag: points farther than this are NaN, m (0 = no limit)")
    parser.add_argument("--confidence-threshold", type=float, default=0.0,
                        help="output bag: pixels less confident than this are invalid (0 = off)")
    parser.add_argument("--keep-left-band", action="store_true",
                        help="output bag: keep estimates where x < d (invalid by default)")
    parser.add_argument("--no-color", action="store_true", help="output bag: points2 without rgb")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--slop", type=float, default=0.0,
                        help="pair left/right stamps up to this many seconds apart, as the "
                             "node's approximate_sync (default 0 = exact stamps)")
    parser.add_argument("--output-bag", type=Path, default=None,
                        help="write /disparity and /points2 to this new bag")
    parser.add_argument("--output-storage", choices=("sqlite3", "mcap"), default="sqlite3")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON")


def _sibling_info(image_topic: str, topics: Dict[str, str]) -> Optional[str]:
    """``/ns/image_rect`` -> ``/ns/camera_info`` if the bag has it as a CameraInfo topic."""
    candidate = image_topic.rsplit("/", 1)[0] + "/camera_info"
    return candidate if topics.get(candidate) == "sensor_msgs/msg/CameraInfo" else None


def _fmt(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    """Evaluate and print metrics and latency; optionally write JSON and an output bag."""
    from dtp_stereo.backends import BackendError, create_backend
    from dtp_stereo.bag import bag_eval, bag_topics

    try:
        topics = bag_topics(str(args.bag))
        left_info = args.left_info or _sibling_info(args.left, topics)
        right_info = args.right_info or _sibling_info(args.right, topics)
        checkpoint = None
        if args.checkpoint is not None or args.onnx is None:
            from dtp_stereo.assets import resolve_model

            checkpoint = resolve_model(args.checkpoint)
        from dtp_stereo.backends import BackendOptions
        from dtp_stereo.preprocess import SizeError, StereoPreprocessor, parse_size

        try:
            input_size = parse_size(args.input_size) if args.input_size else None
        except SizeError as exc:
            raise ValueError(f"--input-size must be HxW in pixels: {exc}") from None
        from dtp_stereo.ros.outputs import OutputOptions

        options = BackendOptions(device=args.device, fp16=args.fp16, threads=args.threads,
                                 input_size=input_size,
                                 head=None if args.head == "checkpoint" else args.head)
        backend = create_backend(args.backend, None if checkpoint is None else str(checkpoint),
                                 onnx=None if args.onnx is None else str(args.onnx),
                                 options=options)
        outputs = OutputOptions(min_disparity=args.min_disparity, max_depth=args.max_depth,
                                use_color=not args.no_color,
                                confidence_threshold=args.confidence_threshold,
                                keep_left_band=args.keep_left_band)
        prep = StereoPreprocessor(backend.size_divisor,
                                  getattr(backend, "input_size", None) or input_size,
                                  args.max_width)
        report = bag_eval(str(args.bag), backend, preprocessor=prep, left_topic=args.left,
                          right_topic=args.right, gt_topic=args.gt, left_info_topic=left_info,
                          right_info_topic=right_info,
                          output_bag=None if args.output_bag is None else str(args.output_bag),
                          output_storage=args.output_storage, max_frames=args.max_frames,
                          slop_s=args.slop, options=outputs, bit_depth=args.image_bit_depth)
    except (BackendError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    lat, inf = report["latency_ms"], report["infer_ms"]
    print(f"{report['frames']} frames from {args.bag} with {report['backend']} "
          f"({report['device']})")
    print(f"latency ms (pre + infer + post): p50 {_fmt(lat['p50'])}  p90 {_fmt(lat['p90'])}  "
          f"p99 {_fmt(lat['p99'])};  infer only p50 {_fmt(inf['p50'])}")
    if report["metrics"] is not None:
        m = report["metrics"]
        print(f"EPE {_fmt(m['epe'])} px  D1 {_fmt(m['d1'])} %  bad-1 {_fmt(m['bad_1'])} %  "
              f"bad-3 {_fmt(m['bad_3'])} %  ({m['n_images']} images)")
    if report["frames_without_camera"]:
        print(f"warning: {report['frames_without_camera']} frame(s) had no camera_info on "
              f"{left_info} / {right_info} yet: no /points2 for them", file=sys.stderr)
    if report["output_bag"]:
        print(f"wrote {report['output_bag']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0
