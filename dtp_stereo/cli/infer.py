"""``dtp-stereo infer``: run a checkpoint on one stereo pair; write PFM, 16-bit PNG and colour PNG.

Outputs in ``--output-dir`` (named after the left image's stem):
``<stem>_disp.pfm`` (float32 pixels), ``<stem>_disp.png`` (KITTI 16-bit: ``round(d·256)``) and
``<stem>_disp_color.png`` (colour-coded, 0..max disparity).
"""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import cv2
import numpy as np

from dtp_stereo.timing import LatencyStats, timer

if TYPE_CHECKING:
    from dtp_stereo.pipeline import StereoPipeline

PROG = "dtp-stereo infer"
MIN_IMAGE_SIDE = 32  # px: a smaller pair has too few columns to match anything


class CliError(Exception):
    """A user-facing error: printed as ``<prog>: error: <message>`` with a non-zero exit code."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo infer``."""
    parser.add_argument("left", type=Path, help="left image (PNG/JPEG/...)")
    parser.add_argument("right", type=Path, help="right image, same size as the left one")
    add_model_arguments(parser)
    parser.add_argument("--output-dir", type=Path, default=Path("."),
                        help="folder for <stem>_disp.pfm/.png/_color.png (default: .)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint``, ``--device``, ``--max-width``, ``--threads`` (shared with ``eval``)."""
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="dtp_stereo checkpoint file or a shipped operating-point name "
                             "(dtp_stereo.assets.OPERATING_POINTS; default: 'default')")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--max-width", type=int, default=None,
                        help="downscale wider images to this width (pixels, aspect kept); "
                             "disparity is mapped back to the original resolution")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def resolve_checkpoint(path: Optional[Path]) -> Path:
    """The ``--checkpoint`` path or operating-point name, or the shipped default when none."""
    from dtp_stereo.assets import resolve_model

    return resolve_model(path)


def load_pipeline(checkpoint: Path, device: str = "cpu", max_width: Optional[int] = None,
                  threads: Optional[int] = None) -> "StereoPipeline":
    """The torch pipeline the ``infer`` and ``eval`` commands run (``--checkpoint`` etc.)."""
    from dtp_stereo.pipeline import StereoPipeline

    return StereoPipeline.from_checkpoint(checkpoint, backend="torch", device=device,
                                          threads=threads, max_width=max_width)


def read_pair(left_path: Path, right_path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Read a stereo pair as H×W×3 uint8 RGB and check the sizes match.

    Raises:
        CliError: a file is missing/unreadable or the sizes differ (both files are named).
    """
    from dtp_stereo.data.formats import read_image_rgb

    images = []
    for label, path in (("left", left_path), ("right", right_path)):
        if not Path(path).is_file():
            raise CliError(f"{label} image {path}: file not found")
        try:
            images.append(read_image_rgb(path))
        except (OSError, ValueError) as exc:
            raise CliError(f"{label} image {path}: cannot read: {exc}") from None
    left, right = images
    for label, path, img in (("left", left_path, left), ("right", right_path, right)):
        if min(img.shape[:2]) < MIN_IMAGE_SIDE:
            raise CliError(f"{label} image {path}: {img.shape[1]}x{img.shape[0]} (WxH) is too "
                           f"small for stereo matching (at least {MIN_IMAGE_SIDE} px a side)")
    if left.shape != right.shape:
        raise CliError(f"image sizes differ: left {left_path} is {left.shape[1]}x{left.shape[0]} "
                       f"(WxH), right {right_path} is {right.shape[1]}x{right.shape[0]}")
    return left, right


def prepare_output_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` and check that files can be written there, before any inference.

    Raises:
        CliError: it is a file, cannot be created or is not writable (named).
    """
    import os

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CliError(f"output folder {out_dir}: exists and is not a folder") from None
    except OSError as exc:
        raise CliError(f"output folder {out_dir}: cannot create it: {exc.strerror}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise CliError(f"output folder {out_dir}: not writable")
    return out_dir


def write_outputs(out_dir: Path, stem: str, disparity: np.ndarray,
                  max_disparity: float) -> Dict[str, Path]:
    """Write ``<stem>_disp.pfm``, ``<stem>_disp.png`` (16-bit KITTI) and ``<stem>_disp_color.png``.

    Returns:
        ``{"pfm": path, "png16": path, "color": path}``.
    """
    from dtp_stereo.data.formats import colorize_disparity, write_disparity_png16, write_pfm

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"pfm": out_dir / f"{stem}_disp.pfm", "png16": out_dir / f"{stem}_disp.png",
             "color": out_dir / f"{stem}_disp_color.png"}
    write_pfm(paths["pfm"], disparity.astype(np.float32))
    write_disparity_png16(paths["png16"], disparity)
    color_bgr = colorize_disparity(disparity, max_disparity)
    if not cv2.imwrite(str(paths["color"]), color_bgr):
        raise OSError(f"{paths['color']}: cannot write PNG")
    return paths


def fail(prog: str, message: str, code: int = 1) -> int:
    """Print ``<prog>: error: <message>`` to stderr and return ``code``."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Run ``dtp-stereo infer``; returns the exit code."""
    from dtp_stereo.checkpoint import CheckpointError

    try:
        left, right = read_pair(args.left, args.right)
        prepare_output_dir(args.output_dir)
        predictor = load_pipeline(resolve_checkpoint(args.checkpoint), args.device,
                                  args.max_width, args.threads)
        stats = LatencyStats()
        with timer(args.device, stats):
            disparity = predictor(left, right)
        paths = write_outputs(args.output_dir, Path(args.left).stem, disparity,
                              predictor.max_disparity)
    except (CliError, CheckpointError, FileNotFoundError) as exc:
        return fail(PROG, str(exc))
    except (OSError, ValueError, RuntimeError) as exc:
        return fail(PROG, f"{type(exc).__name__}: {exc}")
    h, w = disparity.shape
    print(f"{predictor.backend.model_name} on {args.device}: {w}x{h} pair in "
          f"{stats.mean:.1f} ms (first call, includes warm-up)")
    print(f"disparity range {np.nanmin(disparity):.2f}..{np.nanmax(disparity):.2f} px")
    for path in paths.values():
        print(f"wrote {path}")
    return 0
