"""ONNX Runtime backend: runs an exported graph (in: left, right; out: disparity, confidence)."""

import logging
import os
from typing import List, Optional, Tuple

import numpy as np

from dtp_stereo.backends.base import (
    INPUT_NAMES,
    BackendError,
    InferenceResult,
    check_pair,
    pair_to_nchw,
)
from dtp_stereo.onnx_metadata import session_metadata

__all__ = ["OnnxRuntimeBackend", "DEFAULT_MAX_DISPARITY",
           "DEFAULT_SIZE_DIVISOR", "OPT_LEVELS"]

_LOG = logging.getLogger(__name__)

# Used only for ONNX files that do not carry dtp_stereo metadata (written by export_onnx).
DEFAULT_MAX_DISPARITY = 192
DEFAULT_SIZE_DIVISOR = 32

# onnxruntime.GraphOptimizationLevel member for each ``optimization`` value
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendError("onnxruntime backend needs the onnxruntime Python package "
                           "(pip install onnxruntime or onnxruntime-gpu); or use backend torch"
                           ) from exc
    return ort


def _fixed_hw(shape: List) -> Optional[Tuple[int, int]]:
    """(H, W) of a B×3×H×W ONNX input shape if both are fixed integers, else ``None``."""
    if len(shape) != 4:
        return None
    h, w = shape[2], shape[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return h, w
    return None


class OnnxRuntimeBackend:
    """Run an exported stereo ONNX graph with ONNX Runtime.

    Args:
        onnx_path: ONNX file with inputs ``left``/``right`` (B×3×H×W float32 RGB in [0, 1]) and
            output ``disparity`` (B×H×W pixels), optionally ``confidence`` (B×H×W).
        device: ``"cpu"``, or ``"cuda"`` to use the CUDA execution provider when it is
            available (falls back to CPU with a warning otherwise).
        threads: intra-op threads; ``None`` lets ONNX Runtime decide.
        max_disparity, size_divisor: override the values stored in the file's metadata
            (``export_onnx`` writes them); defaults 192 and 32 when neither exists.
        optimization: ONNX Runtime graph optimisation level, one of :data:`OPT_LEVELS`
            (``"all"``, the default, adds layout transformations to the basic and extended
            fusions).

    The network input size is fixed when the graph's H and W are fixed (``input_size``),
    otherwise any multiple of ``size_divisor`` is accepted.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str, *, device: str = "cpu", threads: Optional[int] = None,
                 max_disparity: Optional[int] = None,
                 size_divisor: Optional[int] = None, optimization: str = "all") -> None:
        if optimization not in OPT_LEVELS:
            raise BackendError(f"onnxruntime backend: optimization must be one of "
                               f"{', '.join(OPT_LEVELS)}, got {optimization!r}")
        ort = _import_ort()
        if not os.path.isfile(onnx_path):
            raise BackendError(f"onnxruntime backend: ONNX file {onnx_path!r} does not exist")
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        self.device = "cpu"
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" in available:
                providers.insert(0, "CUDAExecutionProvider")
                self.device = "cuda"
            else:
                _LOG.warning("onnxruntime backend: CUDAExecutionProvider is not available "
                             "(providers: %s); running on CPU", ", ".join(available))
        elif device != "cpu":
            raise BackendError(f"onnxruntime backend: unknown device {device!r}; "
                               "use 'cpu' or 'cuda'")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                OPT_LEVELS[optimization])
        self.optimization = optimization
        if threads is not None:
            if threads <= 0:
                raise BackendError(f"onnxruntime backend: threads must be positive, got {threads}")
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(onnx_path, sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendError(f"onnxruntime backend: cannot load {onnx_path!r}: {exc}") from exc
        self.onnx_path = onnx_path
        active = self.session.get_providers()  # what ORT kept: CUDA may fail to initialise
        if self.device == "cuda" and (not active or active[0] != "CUDAExecutionProvider"):
            _LOG.warning("onnxruntime backend: the CUDA execution provider did not initialise "
                         "(session providers: %s); running on CPU", ", ".join(active))
            self.device = "cpu"
        inputs = {i.name: i for i in self.session.get_inputs()}
        missing = [n for n in INPUT_NAMES if n not in inputs]
        if missing:
            raise BackendError(f"onnxruntime backend: {onnx_path!r} lacks input(s) {missing}; "
                               f"it has {sorted(inputs)} (export with dtp-stereo export)")
        outputs = [o.name for o in self.session.get_outputs()]
        if "disparity" not in outputs:
            raise BackendError(f"onnxruntime backend: {onnx_path!r} has no 'disparity' output; "
                               f"outputs are {outputs}")
        self._outputs = [n for n in ("disparity", "confidence") if n in outputs]
        try:
            meta = session_metadata(self.session, onnx_path)
        except ValueError as exc:
            raise BackendError(f"onnxruntime backend: {exc}") from exc
        self.model_name = meta.model_name
        self.max_disparity = int(max_disparity or meta.max_disparity or DEFAULT_MAX_DISPARITY)
        self.size_divisor = int(size_divisor or meta.size_divisor or DEFAULT_SIZE_DIVISOR)
        if meta.size_divisor is None and size_divisor is None:
            _LOG.warning("onnxruntime backend: %s has no dtp_stereo metadata; assuming "
                         "size_divisor=%d, max_disparity=%d", onnx_path, self.size_divisor,
                         self.max_disparity)
        self.input_size: Optional[Tuple[int, int]] = _fixed_hw(list(inputs["left"].shape))
        self.providers = self.session.get_providers()

    def infer(self, left: np.ndarray, right: np.ndarray) -> InferenceResult:
        """Run the graph on one pair.

        Args:
            left, right: H×W×3 float32 RGB in [0, 1]; H and W multiples of ``size_divisor``
                (and equal to ``input_size`` when the graph is fixed-size).

        Returns:
            H×W float32 disparity (network pixels) and H×W confidence or ``None``.
        """
        check_pair(left, right, self.size_divisor, self.input_size, self.name)
        l_np, r_np = pair_to_nchw(left, right)
        results = self.session.run(self._outputs, {"left": l_np, "right": r_np})
        disp = np.ascontiguousarray(results[0][0], dtype=np.float32)
        conf = None
        if len(results) > 1:
            conf = np.ascontiguousarray(results[1][0], dtype=np.float32)
        return InferenceResult(disparity=disp, confidence=conf)
