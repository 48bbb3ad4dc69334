"""``dtp-stereo make-sample-bag``: write a synthetic stereo rosbag2 with ground truth."""

import argparse
import sys
from pathlib import Path

from dtp_stereo.cli.args import parse_size

PROG = "dtp-stereo make-sample-bag"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo make-sample-bag``."""
    parser.add_argument("output", type=Path, help="bag directory to create (must not exist)")
    parser.add_argument("--frames", type=int, default=20, help="number of frames (default 20)")
    parser.add_argument("--size", type=parse_size, default=(128, 256),
                        help="image HxW in pixels (default 128x256)")
    parser.add_argument("--rate", type=float, default=10.0, help="frame rate, Hz (default 10)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3",
                        help="rosbag2 storage plugin (default sqlite3)")
    parser.add_argument("--max-disparity", type=int, default=64,
                        help="largest synthetic disparity, pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")


def run(args: argparse.Namespace) -> int:
    """Write the bag and print its topics."""
    from dtp_stereo.bag import DEFAULT_TOPICS
    from dtp_stereo.tools.sample_bag import write_sample_bag

    h, w = args.size
    try:
        write_sample_bag(str(args.output), n_frames=args.frames, height=h, width=w,
                         rate_hz=args.rate, storage=args.storage, seed=args.seed,
                         max_disparity=args.max_disparity)
    except (ValueError, FileExistsError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({args.storage}, {args.frames} frames {h}x{w} at "
          f"{args.rate:g} Hz); topics: {', '.join(DEFAULT_TOPICS.values())}")
    return 0
