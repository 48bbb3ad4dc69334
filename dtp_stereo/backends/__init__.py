"""Inference backends behind one protocol, chosen by name with :func:`create_backend`.

Backend modules import their heavy dependency (onnxruntime, tensorrt) only when created.
"""

import dataclasses
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from dtp_stereo.backends.base import BackendError, InferenceResult, StereoBackend

__all__ = ["BACKENDS", "BackendError", "BackendOptions", "InferenceResult", "StereoBackend",
           "create_backend"]

_LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs: the one options object of :func:`create_backend`, the node's
    parameters and the pipeline (:meth:`dtp_stereo.pipeline.StereoPipeline.from_checkpoint`).

    Attributes:
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"`` for torch).
        fp16: half precision (torch autocast on CUDA; TensorRT FP16 flag).
        threads: CPU intra-op threads (torch, onnxruntime); ``None`` = library default.
        input_size: fixed network input (H, W) in pixels (TensorRT engines, on-demand
            exports); ``None`` for a dynamic graph where possible.
        head: replace the checkpoint's DTPnet head (``"full"`` or ``"fast"``); ``None`` keeps
            it. Applies to the checkpoint (torch, on-demand exports), not to a given ONNX file.
        engine_cache_dir: directory for TensorRT engines and on-demand ONNX exports.
        channels_last, fuse_bn, compile: torch backend options (see
            :class:`dtp_stereo.backends.torch_backend.TorchBackend`).

    Raises:
        BackendError: an option out of its range (the message names it).
    """

    device: str = "cpu"
    fp16: bool = False
    threads: Optional[int] = None
    input_size: Optional[Tuple[int, int]] = None
    head: Optional[str] = None
    engine_cache_dir: Optional[str] = None
    channels_last: bool = False
    fuse_bn: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if not (self.device == "cpu" or str(self.device).startswith("cuda")):
            raise BackendError(f"backend option device must be cpu or cuda, got {self.device!r}")
        if self.threads is not None and int(self.threads) <= 0:
            raise BackendError(f"backend option threads must be positive or None, got "
                               f"{self.threads}")
        if self.input_size is not None:
            size = tuple(int(v) for v in self.input_size)
            if len(size) != 2 or min(size) <= 0:
                raise BackendError(f"backend option input_size must be (H, W) > 0, got "
                                   f"{self.input_size}")
            object.__setattr__(self, "input_size", size)
        if self.head not in (None, "full", "fast"):
            raise BackendError(f"backend option head must be full, fast or None, got "
                               f"{self.head!r}")


def create_backend(name: str, checkpoint: Optional[str] = None, *, onnx: Optional[str] = None,
                   options: Optional[BackendOptions] = None, **overrides: Any) -> StereoBackend:
    """Create a backend by name.

    Args:
        name: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``. ``"auto"`` picks
            tensorrt when it imports, CUDA is present and the network input size is fixed
            (``input_size``, or a fixed-size ONNX file), else onnxruntime when an ONNX file
            is given or the checkpoint can be exported (onnx + onnxruntime installed), else
            torch; each fallback, and a TensorRT engine that fails to build or load, is
            logged as a warning and falls through to the next choice.
        checkpoint: dtp_stereo checkpoint (needed by torch; exported to ONNX on demand for
            onnxruntime/tensorrt when ``onnx`` is not given).
        onnx: exported ONNX file (see :func:`dtp_stereo.export.export_onnx`).
        options: how it runs (:class:`BackendOptions`; default: CPU, library threads).
        **overrides: single :class:`BackendOptions` fields replacing those of ``options``
            (``device="cuda"``, ``threads=2``, ...).

    Raises:
        BackendError: unknown name, missing files, or the chosen backend cannot run here.
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    try:
        opts = dataclasses.replace(options or BackendOptions(), **overrides)
    except TypeError as exc:  # an unknown keyword
        raise BackendError(f"create_backend: {exc}") from None
    device, fp16, threads, head = opts.device, opts.fp16, opts.threads, opts.head
    input_size, engine_cache_dir = opts.input_size, opts.engine_cache_dir
    if checkpoint is None and onnx is None:
        raise BackendError(f"backend {name!r} needs a checkpoint or an ONNX file")
    for label, path in (("checkpoint", checkpoint), ("ONNX file", onnx)):
        if path is not None and not os.path.isfile(path):
            raise BackendError(f"backend {name}: {label} {path} does not exist")
    if head and onnx is not None and name != "torch":
        _LOG.warning("head %r ignored: the given ONNX file %s has its head baked in "
                     "(export the checkpoint with that head instead)", head, onnx)
    if name == "auto":
        name = _pick_auto(checkpoint, onnx, input_size)
        if name == "tensorrt":
            try:
                return create_backend("tensorrt", checkpoint, onnx=onnx, options=opts)
            except BackendError as exc:
                name = _pick_auto(checkpoint, onnx, input_size, tensorrt_reason=str(exc))
    if name == "torch":
        if checkpoint is None:
            raise BackendError("torch backend needs a checkpoint (got only an ONNX file); "
                               "use backend onnxruntime")
        from dtp_stereo.backends.torch_backend import TorchBackend

        return TorchBackend.from_checkpoint(checkpoint, device=device, fp16=fp16,
                                            threads=threads, head=head,
                                            channels_last=opts.channels_last,
                                            fuse_bn=opts.fuse_bn, compile=opts.compile)
    if onnx is None:
        from dtp_stereo.export import ensure_onnx

        try:
            onnx = ensure_onnx(checkpoint, engine_cache_dir, input_size,
                               {"head": head} if head else None)
        except PermissionError as exc:  # a cache folder others can write
            raise BackendError(f"backend {name}: {exc}") from exc
    if name == "onnxruntime":
        from dtp_stereo.backends.onnx_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx, device=device, threads=threads)
    from dtp_stereo.backends.tensorrt_backend import TensorRTBackend, import_tensorrt

    import_tensorrt()
    return TensorRTBackend(onnx, input_size=input_size, fp16=fp16,
                           engine_cache_dir=engine_cache_dir)


def _onnx_fixed_size(onnx: Optional[str]) -> bool:
    """Whether ``onnx`` carries the ``dtp_stereo.input_size`` metadata of a fixed-shape export."""
    if onnx is None or not _has_module("onnx"):
        return False
    from dtp_stereo.onnx_metadata import read_onnx_metadata

    try:
        return read_onnx_metadata(onnx).input_size is not None
    except (OSError, ValueError, RuntimeError):  # unreadable here: the backend will say why
        return False


def _pick_auto(checkpoint: Optional[str], onnx: Optional[str],
               input_size: Optional[Tuple[int, int]] = None, *,
               tensorrt_reason: Optional[str] = None) -> str:
    """Resolve ``"auto"`` to a concrete backend name, logging why it fell back.

    ``tensorrt_reason`` (why a TensorRT backend just failed) rules TensorRT out.
    """
    from dtp_stereo.backends.tensorrt_backend import tensorrt_available

    exportable = checkpoint is not None and _has_module("onnx")
    can_ort = _has_module("onnxruntime") and (onnx is not None or exportable)
    reason = tensorrt_reason
    if reason is None:
        if not tensorrt_available():
            reason = "TensorRT with CUDA is not available"
        elif onnx is None and not exportable:
            reason = "TensorRT needs an ONNX file or an exportable checkpoint (install onnx)"
        elif input_size is None and not _onnx_fixed_size(onnx):
            reason = ("TensorRT needs a fixed network input size (set input_height and "
                      "input_width, or pass a fixed-shape ONNX file)")
        else:
            return "tensorrt"
    if can_ort:
        _LOG.warning("backend auto: %s; using onnxruntime", reason)
        return "onnxruntime"
    if checkpoint is None:
        raise BackendError("backend auto: only an ONNX file was given but onnxruntime is not "
                           "installed; install onnxruntime or pass a checkpoint")
    _LOG.warning("backend auto: %s and onnxruntime is not usable; using torch", reason)
    return "torch"
