"""Where shipped files (the student checkpoint) live: source checkout, pip or ROS install."""

import sys
from pathlib import Path
from typing import Dict, List, Union

# The runtime default: the pruned student fine-tuned with the fast head (docs/results.md,
# "The runtime default"). models/dtpnet_pruned.pt is the claim-4 pipeline output (full head).
DEFAULT_MODEL_NAME = "dtpnet_pruned_fast.pt"
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
    """Path of the shipped runtime-default student checkpoint (``dtpnet_pruned_fast.pt``)."""
    return find_model(DEFAULT_MODEL_NAME)


# Operating points the node (``checkpoint`` parameter) and the CLIs (``--checkpoint``) select by
# name instead of a path; each maps to a shipped file in models/ (model cards: models/*.json).
OPERATING_POINTS: Dict[str, str] = {
    "default": DEFAULT_MODEL_NAME,
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
