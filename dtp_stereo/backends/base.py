"""The backend contract: one ``infer`` call per stereo pair, whatever runs the network.

A backend takes H×W×3 float32 RGB images in [0, 1] that are already resized and padded to a
valid network size (see :class:`dtp_stereo.preprocess.StereoPreprocessor`) and returns the
disparity in network pixels. The ONNX graph every non-torch backend runs has inputs ``left``,
``right`` (B×3×H×W float32 RGB in [0, 1]) and outputs ``disparity``, ``confidence`` (B×H×W).
"""

from dataclasses import dataclass
from typing import Optional, Protocol, Tuple, runtime_checkable

import numpy as np

__all__ = [
    "BackendError",
    "InferenceResult",
    "StereoBackend",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "check_pair",
    "pair_to_nchw",
]

INPUT_NAMES: Tuple[str, str] = ("left", "right")
OUTPUT_NAMES: Tuple[str, str] = ("disparity", "confidence")


class BackendError(RuntimeError):
    """A backend cannot be created or cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class InferenceResult:
    """What ``StereoBackend.infer`` returns.

    Attributes:
        disparity: H×W float32, left-referenced disparity in network pixels.
        confidence: H×W float32 in [0, 1], or ``None`` when the model gives none.
    """

    disparity: np.ndarray
    confidence: Optional[np.ndarray] = None


@runtime_checkable
class StereoBackend(Protocol):
    """What every backend provides (torch, onnxruntime, tensorrt).

    Attributes:
        name: backend name (``"torch"``, ``"onnxruntime"``, ``"tensorrt"``).
        device: ``"cpu"`` or ``"cuda"``.
        max_disparity: largest disparity the network can output, pixels.
        size_divisor: network input H and W must be multiples of it.
        input_size: fixed network input (H, W), or ``None`` if any multiple of
            ``size_divisor`` is accepted.

    The built-in backends also set ``model_name`` (registered model name, from the checkpoint
    or the ONNX metadata; ``"unknown"`` without it), which the node reports in diagnostics.
    """

    name: str
    device: str
    max_disparity: int
    size_divisor: int
    input_size: Optional[Tuple[int, int]]

    def infer(self, left: np.ndarray, right: np.ndarray) -> InferenceResult:
        """Run the network on one pair of H×W×3 float32 RGB images in [0, 1]."""


def check_pair(left: np.ndarray, right: np.ndarray, size_divisor: int,
               input_size: Optional[Tuple[int, int]], backend: str) -> Tuple[int, int]:
    """Validate an ``infer`` input pair and return its (H, W) in pixels.

    Raises:
        BackendError: wrong type, shape or dtype; H or W not a multiple of ``size_divisor``;
            size different from a fixed ``input_size``.
    """
    for label, img in (("left", left), ("right", right)):
        if not isinstance(img, np.ndarray):
            raise BackendError(f"{backend}: {label} image must be a numpy array, "
                               f"got {type(img).__name__}")
        if img.ndim != 3 or img.shape[2] != 3:
            raise BackendError(f"{backend}: {label} image must be H×W×3, got shape {img.shape}")
        if img.dtype != np.float32:
            raise BackendError(f"{backend}: {label} image must be float32 RGB in [0, 1], "
                               f"got dtype {img.dtype}")
    if left.shape != right.shape:
        raise BackendError(f"{backend}: left image {left.shape} and right image {right.shape} "
                           "differ in size")
    h, w = int(left.shape[0]), int(left.shape[1])
    if input_size is not None and (h, w) != tuple(input_size):
        raise BackendError(f"{backend}: the network input is fixed at {input_size[0]}x"
                           f"{input_size[1]}, got {h}x{w}; resize/pad with StereoPreprocessor")
    if h % size_divisor or w % size_divisor:
        raise BackendError(f"{backend}: input {h}x{w} is not a multiple of size_divisor "
                           f"{size_divisor}; pad with StereoPreprocessor")
    return h, w


def pair_to_nchw(left: np.ndarray, right: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Convert two H×W×3 images to contiguous 1×3×H×W float32 arrays."""
    def conv(img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)

    return conv(left), conv(right)
