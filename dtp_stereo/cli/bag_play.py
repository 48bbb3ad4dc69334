"""``dtp-stereo bag-play``: publish a rosbag2's topics live through rclpy (no ros2 CLI needed)."""

import argparse
import sys
from pathlib import Path

PROG = "dtp-stereo bag-play"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo bag-play``."""
    parser.add_argument("bag", type=Path, help="rosbag2 directory (sqlite3 or mcap)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="speed factor (default 1.0 = recorded rate; 0 = as fast as possible)")
    parser.add_argument("--topics", nargs="+", default=None, help="only these topics")
    parser.add_argument("--loop", action="store_true", help="play again at the end (Ctrl-C)")
    parser.add_argument("--wait", type=float, default=1.0,
                        help="seconds to wait for subscribers before publishing (default 1)")
    parser.add_argument("--restamp", action="store_true",
                        help="stamp headers with the current time instead of the recorded "
                             "stamps (messages that shared a stamp share the new one)")
    parser.add_argument("--clock", action="store_true",
                        help="publish /clock with the recorded time (for use_sim_time nodes)")


def run(args: argparse.Namespace) -> int:
    """Play the bag; print how many messages were published."""
    from dtp_stereo.bag import play_bag

    try:
        count = play_bag(str(args.bag), rate=args.rate, topics=args.topics, loop=args.loop,
                         wait_for_subscribers=args.wait, restamp=args.restamp,
                         clock=args.clock)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"published {count} messages from {args.bag}")
    return 0
