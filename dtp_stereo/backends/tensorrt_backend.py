"""TensorRT 10 backend: builds (or loads a cached) engine from the exported ONNX graph.

The engine cache key is the sha256 of (ONNX file sha256, precision, input shape, TensorRT version,
GPU name), so a changed model, precision, size, TensorRT release or GPU never loads a stale plan
(TensorRT plans are not portable across versions or GPUs). Cache-key and path logic are plain
functions, tested without TensorRT; buffers are torch CUDA tensors (no pycuda).
"""

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from dtp_stereo.backends.base import (
    INPUT_NAMES,
    BackendError,
    InferenceResult,
    check_pair,
    pair_to_nchw,
)
from dtp_stereo.files import atomic_write_bytes, private_dir, untrusted_reason
from dtp_stereo.onnx_metadata import read_onnx_metadata

__all__ = [
    "TensorRTBackend",
    "import_tensorrt",
    "tensorrt_available",
    "file_sha256",
    "engine_cache_key",
    "engine_cache_path",
    "default_engine_cache_dir",
    "cached_engine",
]

_LOG = logging.getLogger(__name__)
_PRECISIONS = ("fp32", "fp16")


def import_tensorrt():
    """Import the ``tensorrt`` module or raise a :class:`BackendError` saying what to do."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError("TensorRT backend needs the tensorrt Python package (TensorRT 10, "
                           "e.g. from JetPack or `pip install tensorrt`) and a CUDA GPU; "
                           "not found here: use backend onnxruntime/torch") from exc
    return trt


def tensorrt_available() -> bool:
    """True if ``tensorrt`` imports and torch sees a CUDA device."""
    try:
        import_tensorrt()
    except BackendError:
        return False
    import torch

    return bool(torch.cuda.is_available())


def file_sha256(path: str, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_cache_key(onnx_sha256: str, precision: str, input_shape: Tuple[int, int],
                     trt_version: str, gpu_name: str) -> str:
    """Deterministic engine cache key.

    Args:
        onnx_sha256: hex sha256 of the ONNX file (:func:`file_sha256`).
        precision: ``"fp32"`` or ``"fp16"``.
        input_shape: network input (H, W) in pixels the engine is built for.
        trt_version: ``tensorrt.__version__``.
        gpu_name: ``torch.cuda.get_device_name()``.

    Returns:
        64-character hex sha256 over a canonical JSON of the fields.
    """
    if precision not in _PRECISIONS:
        raise BackendError(f"tensorrt: precision must be one of {_PRECISIONS}, got {precision!r}")
    h, w = (int(v) for v in input_shape)
    fields = {"onnx": onnx_sha256, "precision": precision, "shape": [h, w],
              "tensorrt": str(trt_version), "gpu": str(gpu_name)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode("utf-8")).hexdigest()


def default_engine_cache_dir() -> Path:
    """``$DTP_STEREO_CACHE`` or ``$XDG_CACHE_HOME/dtp_stereo`` (``~/.cache/dtp_stereo``)."""
    env = os.environ.get("DTP_STEREO_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dtp_stereo"


def engine_cache_path(cache_dir: Optional[str], key: str, stem: str = "model") -> Path:
    """Engine file for ``key``: ``<cache_dir>/<stem>_<key[:16]>.engine``."""
    if len(key) < 16:
        raise BackendError(f"tensorrt: engine cache key {key!r} is too short")
    root = Path(cache_dir) if cache_dir else default_engine_cache_dir()
    return root / f"{stem}_{key[:16]}.engine"


def cached_engine(engine_path: Path, deserialize: Callable[[bytes], Any],
                  build: Callable[[], bytes], source: str = "the ONNX file") -> Any:
    """The engine cached at ``engine_path`` if it may be trusted and loads, else a new one.

    A cached engine is code the GPU runs, so it is loaded only if it belongs to this user (or
    root) and nobody else can write it (:func:`dtp_stereo.files.untrusted_reason`), in a
    folder nobody else can write. Otherwise, or when it fails to deserialize (garbage, another
    TensorRT version), the engine is rebuilt with ``build()`` and written back atomically,
    mode 0600.

    Args:
        engine_path: the cache file.
        deserialize: bytes -> engine, or None on failure (``Runtime.deserialize_cuda_engine``).
        build: -> serialized engine bytes.
        source: named in errors.

    Raises:
        BackendError: the cache folder is shared, or the fresh engine does not deserialize.
    """
    try:
        private_dir(engine_path.parent)
    except PermissionError as exc:
        raise BackendError(f"tensorrt: {exc}") from exc
    engine = None
    distrust = untrusted_reason(engine_path) if engine_path.is_file() else None
    if distrust:
        _LOG.warning("tensorrt: not loading cached engine: %s; rebuilding", distrust)
    elif engine_path.is_file():
        _LOG.info("tensorrt: loading cached engine %s", engine_path)
        engine = deserialize(engine_path.read_bytes())
        if engine is None:
            _LOG.warning("tensorrt: cached engine %s failed to load; rebuilding", engine_path)
    if engine is None:
        plan = build()
        atomic_write_bytes(engine_path, plan, private=True)
        engine = deserialize(plan)
        if engine is None:
            raise BackendError(f"tensorrt: cannot deserialize the engine built from {source!r}")
    return engine


class TensorRTBackend:
    """Run the exported ONNX graph as a TensorRT 10 engine on CUDA.

    Args:
        onnx_path: ONNX file from :func:`dtp_stereo.export.export_onnx`.
        input_size: network (H, W) in pixels; required for a dynamic-shape ONNX file,
            must match a fixed-shape one.
        fp16: allow FP16 kernels (``BuilderFlag.FP16``).
        engine_cache_dir: where engines are cached (default :func:`default_engine_cache_dir`).
        max_disparity, size_divisor: override the ONNX metadata values.
        workspace_mb: builder workspace limit in MiB.

    Raises:
        BackendError: tensorrt or CUDA missing, ONNX parse or engine build failure.
    """

    name = "tensorrt"

    def __init__(self, onnx_path: str, *, input_size: Optional[Tuple[int, int]] = None,
                 fp16: bool = True, engine_cache_dir: Optional[str] = None,
                 max_disparity: Optional[int] = None, size_divisor: Optional[int] = None,
                 workspace_mb: int = 1024) -> None:
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise BackendError("TensorRT backend needs a CUDA GPU visible to torch; "
                               "use backend onnxruntime/torch")
        if not os.path.isfile(onnx_path):
            raise BackendError(f"tensorrt backend: ONNX file {onnx_path!r} does not exist")
        self._torch = torch
        self.device = "cuda"
        try:
            meta = read_onnx_metadata(onnx_path)
        except (OSError, ValueError) as exc:
            raise BackendError(f"tensorrt backend: {exc}") from exc
        self.model_name = meta.model_name
        self.max_disparity = int(max_disparity or meta.max_disparity or 192)
        self.size_divisor = int(size_divisor or meta.size_divisor or 32)
        fixed_hw = meta.input_size
        if input_size is None:
            if fixed_hw is None:
                raise BackendError(f"tensorrt backend: {onnx_path!r} has dynamic H/W; pass "
                                   "input_size=(H, W) to build an engine")
            input_size = fixed_hw
        elif fixed_hw is not None and tuple(input_size) != fixed_hw:
            raise BackendError(f"tensorrt backend: {onnx_path!r} is fixed at {fixed_hw}, "
                               f"input_size {tuple(input_size)} differs")
        self.input_size: Optional[Tuple[int, int]] = (int(input_size[0]), int(input_size[1]))
        precision = "fp16" if fp16 else "fp32"
        key = engine_cache_key(file_sha256(onnx_path), precision, self.input_size,
                               trt.__version__, torch.cuda.get_device_name())
        self.engine_path = engine_cache_path(engine_cache_dir, key, Path(onnx_path).stem)
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        engine = cached_engine(self.engine_path, runtime.deserialize_cuda_engine,
                               lambda: self._build(trt, onnx_path, fp16, workspace_mb),
                               source=onnx_path)
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream()
        self._buffers = self._allocate(trt)

    def _build(self, trt, onnx_path: str, fp16: bool, workspace_mb: int) -> bytes:
        """Parse the ONNX file and build a serialized engine for ``self.input_size``."""
        _LOG.info("tensorrt: building engine for %s at %s (fp16=%s); this takes a while",
                  onnx_path, self.input_size, fp16)
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, self._logger)
        with open(onnx_path, "rb") as f:
            ok = parser.parse(f.read())
        if not ok:
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"tensorrt: cannot parse {onnx_path!r}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        h, w = self.input_size
        profile = builder.create_optimization_profile()
        for name in INPUT_NAMES:
            shape = (1, 3, h, w)
            profile.set_shape(name, shape, shape, shape)
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError(f"tensorrt: engine build failed for {onnx_path!r} "
                               "(see TensorRT log above)")
        return bytes(plan)

    def _allocate(self, trt) -> Dict[str, "object"]:
        """Set input shapes and allocate one torch CUDA tensor per I/O tensor."""
        torch = self._torch
        h, w = self.input_size
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        buffers = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._context.set_input_shape(name, (1, 3, h, w))
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = dtypes.get(self._engine.get_tensor_dtype(name))
            if dtype is None:
                raise BackendError(f"tensorrt: tensor {name!r} has unsupported dtype "
                                   f"{self._engine.get_tensor_dtype(name)}")
            shape = tuple(self._context.get_tensor_shape(name))
            buf = torch.empty(shape, dtype=dtype, device="cuda")
            self._context.set_tensor_address(name, buf.data_ptr())
            buffers[name] = buf
        if "disparity" not in buffers:
            raise BackendError("tensorrt: engine has no 'disparity' output")
        return buffers

    def infer(self, left: np.ndarray, right: np.ndarray) -> InferenceResult:
        """Run the engine on one pair of H×W×3 float32 RGB images in [0, 1] at ``input_size``."""
        torch = self._torch
        check_pair(left, right, self.size_divisor, self.input_size, self.name)
        l_np, r_np = pair_to_nchw(left, right)
        with torch.cuda.stream(self._stream):
            for name, arr in (("left", l_np), ("right", r_np)):
                buf = self._buffers[name]
                buf.copy_(torch.from_numpy(arr).to(buf.dtype), non_blocking=False)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("tensorrt: execute_async_v3 failed")
        self._stream.synchronize()
        disp = self._buffers["disparity"][0].float().cpu().numpy()
        conf_buf = self._buffers.get("confidence")
        conf = None if conf_buf is None else conf_buf[0].float().cpu().numpy()
        return InferenceResult(disparity=np.ascontiguousarray(disp, dtype=np.float32),
                               confidence=conf)
