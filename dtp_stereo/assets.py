"""Where shipped files (the student checkpoint) live: source checkout, pip or ROS install."""

import sys
from pathlib import Path
from typing import Dict, List, Union

# The runtime default: the real-scene recipe's student, distilled then pruned (D = 192, fast
# head, 0.30 M parameters), then trained on at 256x512 (stages pruned_s2 to pruned_s6, then
# pruned_s8 with thin slanted objects, then pruned_s10 grown by the convex upsampling, 0.31 M,
# then pruned_s11 on scenes with disparities up to D - 1 more often; docs/results.md, "Real
# scenes"); its unpruned parent is the larger operating point
# real_s1.
# models/dtpnet_pruned*.pt are the earlier D = 64 students (claim 4 and an earlier default),
# kept as named operating points.
DEFAULT_MODEL_NAME = "dtpnet_real_pruned_s11.pt"
PACKAGE = "dtp_stereo"


def model_search_dirs() -> List[Path]:
    """Folders searched for shipped checkpoints, in order.

    (a) ``<repo>/models`` next to the package (source checkout, editable install);
    (b) ``<sys.prefix>/share/dtp_stereo/models`` (pip / colcon install);
    (c) ``get_package_share_directory("dtp_stereo")/models`` when ``ament_index_python`` is
    importable and the package is in the ament index.
    """
    dirs = [Path(__file__).resolve().parent.parent / "models",
            Path(sys.prefix) / "share" / PACKAGE / "models"]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return dirs
    try:
        dirs.append(Path(get_package_share_directory(PACKAGE)) / "models")
    except (PackageNotFoundError, LookupError, ValueError, OSError):
        pass
    return dirs


def find_model(name: str = DEFAULT_MODEL_NAME) -> Path:
    """Path of the shipped checkpoint file ``name``.

    Raises:
        FileNotFoundError: not found; the message lists every place searched.
    """
    dirs = model_search_dirs()
    for folder in dirs:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    searched = "\n  ".join(str(d / name) for d in dirs)
    raise FileNotFoundError(f"shipped checkpoint {name!r} not found; searched:\n  {searched}\n"
                            "pass --checkpoint PATH to use another file")


def default_model_path() -> Path:
    """Path of the shipped runtime-default student checkpoint (:data:`DEFAULT_MODEL_NAME`)."""
    return find_model(DEFAULT_MODEL_NAME)


# Operating points the node (``checkpoint`` parameter) and the CLIs (``--checkpoint``) select by
# name instead of a path; each maps to a shipped file in models/ (model cards: models/*.json).
OPERATING_POINTS: Dict[str, str] = {
    "default": DEFAULT_MODEL_NAME,  # distilled + pruned real-scene student, D = 192, 0.31 M
    "real_pruned_s11": "dtpnet_real_pruned_s11.pt",  # the same file, by its stage name
    "real_pruned_s10": "dtpnet_real_pruned_s10.pt",  # the default of session 14, its parent
    "real_pruned_s8": "dtpnet_real_pruned_s8.pt",  # its parent, bilinear upsampling: faster
    "real_pruned_s6": "dtpnet_real_pruned_s6.pt",  # the default of sessions 10-13, its parent
    "real_pruned_s4": "dtpnet_real_pruned_s4.pt",  # the default of session 9
    "real_pruned_s3": "dtpnet_real_pruned_s3.pt",  # the default of sessions 7-8, its parent
    "real_pruned": "dtpnet_real_pruned.pt",  # the default until session 6: same widths, 128x256
    "real_s1": "dtpnet_real.pt",  # the larger operating point: unpruned stage 1, 0.67 M params
    "real_wide": "dtpnet_real_wide.pt",  # the distillation teacher: wide 2D DTPnet, 2.56 M params
    "real_s2": "dtpnet_real_s2.pt",  # stage 2 cut at 500 of 4000 steps: 256x512, edge refinement
    "legacy_d64": "dtpnet_pruned_fast.pt",  # previous default: pruned, D = 64, 0.27 M params
    "legacy_d64_full": "dtpnet_pruned.pt",  # claim-4 pipeline output (full head), D = 64
}


def resolve_model(spec: Union[None, str, Path]) -> Path:
    """A checkpoint path from a path, an operating-point name or nothing (the default).

    Args:
        spec: ``None`` or ``""`` (the runtime default), a name of :data:`OPERATING_POINTS`, or
            a checkpoint path.

    Raises:
        FileNotFoundError: a name's file is not installed, or ``spec`` is neither a known name
            nor an existing file (the message lists the names).
    """
    if spec is None or str(spec) == "":
        return default_model_path()
    text = str(spec)
    if text in OPERATING_POINTS:
        return find_model(OPERATING_POINTS[text])
    path = Path(text)
    if path.is_file():
        return path
    names = ", ".join(sorted(OPERATING_POINTS))
    raise FileNotFoundError(f"checkpoint {text!r}: no such file and not an operating-point "
                            f"name ({names})")
