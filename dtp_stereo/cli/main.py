"""Entry point of ``dtp-stereo``: dispatches to one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their subcommand runs, so ``dtp-stereo info`` does not import onnxruntime or
rclpy.
"""

import argparse
import importlib
import sys
from typing import Dict, List, Optional, Tuple

# name -> (module, one-line help)
SUBCOMMANDS: Dict[str, Tuple[str, str]] = {
    "infer": ("dtp_stereo.cli.infer",
              "run a checkpoint on one stereo pair; write PFM, 16-bit PNG, colour PNG"),
    "eval": ("dtp_stereo.cli.evaluate",
             "evaluate a checkpoint on a dataset; print and write JSON metrics"),
    "real-pairs": ("dtp_stereo.cli.real_pairs",
                   "write the real pairs with ground truth found here in Middlebury layout"),
    "info": ("dtp_stereo.cli.info",
             "describe a checkpoint: model, widths, params, MACs, provenance"),
    "import-psmnet": ("dtp_stereo.cli.import_psmnet",
                      "convert a public PSMNet checkpoint to dtp_stereo format"),
    "export": ("dtp_stereo.cli.export", "export a checkpoint to ONNX and check it against torch"),
    "bag-eval": ("dtp_stereo.cli.bag_eval",
                 "run a model offline over a rosbag2; metrics and latency"),
    "bag-play": ("dtp_stereo.cli.bag_play", "publish a rosbag2's topics live through rclpy"),
    "make-sample-bag": ("dtp_stereo.cli.make_sample_bag",
                        "write a synthetic stereo rosbag2 with ground truth"),
    "bench": ("dtp_stereo.cli.bench", "benchmark models and backends side by side"),
    "demo": ("dtp_stereo.tools.demo",
             "the main job: shipped student through the real node on the sample bag"),
}


def build_parser() -> Tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="dtp-stereo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser, sub


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, sub = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"dtp-stereo: unknown command {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}",
                  file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    cmd_parser = sub.choices[argv[0]]
    module.add_arguments(cmd_parser)
    args = parser.parse_args(argv)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
