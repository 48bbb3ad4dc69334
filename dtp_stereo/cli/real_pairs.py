"""``dtp-stereo real-pairs``: write the real stereo pairs with ground truth found on this machine
(Aloe from ``opencv-doc``, Motorcycle from a scikit-image wheel) in Middlebury 2014 layout, for
``dtp-stereo eval --dataset middlebury2014 --root DIR --split all``. Evaluation data only."""

import argparse
import json
from pathlib import Path

from dtp_stereo.cli.infer import fail

PROG = "dtp-stereo real-pairs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo real-pairs``."""
    from dtp_stereo.data.real_pairs import OPENCV_DOC_DATA

    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--opencv-doc", default=OPENCV_DOC_DATA,
                        help=f"opencv-doc example data folder (default: {OPENCV_DOC_DATA})")
    parser.add_argument("--skimage", default=None,
                        help="scikit-image wheel or folder of wheels holding the Motorcycle pair "
                             "(default: an installed scikit-image, if any)")


def run(args: argparse.Namespace) -> int:
    """Run ``dtp-stereo real-pairs``; returns the exit code."""
    from dtp_stereo.data.real_pairs import prepare_real_pairs

    try:
        args.out.mkdir(parents=True, exist_ok=True)
        manifest = prepare_real_pairs(str(args.out), args.opencv_doc, args.skimage)
    except (FileNotFoundError, ValueError, OSError) as exc:
        return fail(PROG, str(exc))
    for pair in manifest["pairs"]:
        print(f"{pair['name']}: {pair['size'][0]}x{pair['size'][1]}, GT max "
              f"{pair['gt_max_px']:.1f} px, {100 * pair['gt_known_fraction']:.1f} % known "
              f"({pair['source']})")
    for name, why in manifest["missing"].items():
        print(f"{name}: skipped: {why}")
    print(json.dumps({"out": str(args.out), "pairs": [p["name"] for p in manifest["pairs"]]}))
    return 0
