"""ONNX export of a stereo model and a parity check against PyTorch.

The exported graph has inputs ``left``, ``right`` (B×3×H×W float32 RGB in [0, 1]; the model
normalises inside) and outputs ``disparity``, ``confidence`` (B×H×W; confidence is zeros when
the model gives none). ``dtp_stereo.*`` metadata records ``max_disparity``, ``size_divisor``,
``model_name`` and, for fixed-shape graphs, ``input_size`` ("HxW") for the backends.

Exporter: torch 2.13 still ships the TorchScript-based exporter, so ``dynamo=False`` is used
(checked: it exports DTPnet with opset 17 and matches onnxruntime to < 1e-4 px); the dynamo
exporter (onnxscript) is the fallback only if the legacy path raises ImportError/NotImplemented.
"""

import logging
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from dtp_stereo.backends.base import INPUT_NAMES, OUTPUT_NAMES
from dtp_stereo.files import atomic_path, private_dir, untrusted_reason
from dtp_stereo.models.modes import eval_mode
from dtp_stereo.onnx_metadata import OnnxMetadata, write_onnx_metadata

__all__ = ["StereoOnnxWrapper", "export_onnx", "check_onnx_against_torch", "ensure_onnx",
           "EXPORT_REVISION"]

_LOG = logging.getLogger(__name__)

# Part of the on-demand export cache key (ensure_onnx): bump it whenever the exported graph of the
# same checkpoint changes, so robots do not keep running a stale cached file. 2: plane softmax
# written out as exp/sum (ONNX Runtime's axis-1 Softmax was 5x slower), soft-argmax as a MatMul,
# confidence by GatherElements, correlation by slices. 3: gather indices bounded by Max/Min, not
# an integer Clip (TensorRT). 4: regression without normalising the volume (one MatMul for the
# soft-argmax's numerator and denominator), correlation by one row-wise MatMul and a reshape.
# 5: DTPnet's convs over channel concatenations as sums of per-part convs, BatchNorm folded
# (layers.convbn_of_concat): no Concat or layout reorders around them.
EXPORT_REVISION = 5


class StereoOnnxWrapper(nn.Module):
    """Expose a stereo model as ``(left, right) -> (disparity, confidence)`` tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, left: Tensor, right: Tensor) -> Tuple[Tensor, Tensor]:
        """B×3×H×W inputs -> B×H×W disparity (pixels) and B×H×W confidence."""
        out = self.model(left, right)
        disp = out.disparity
        conf = getattr(out, "confidence", None)
        if conf is None:
            conf = torch.zeros_like(disp)
        return disp, conf


def _example_inputs(height: int, width: int, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """A textured 1×3×H×W pair where the right view is the left shifted by a few pixels."""
    gen = torch.Generator().manual_seed(seed)
    left = torch.rand(1, 3, height, width, generator=gen)
    left = torch.nn.functional.avg_pool2d(left, 3, stride=1, padding=1)
    right = torch.roll(left, shifts=-4, dims=3)
    return left.contiguous(), right.contiguous()


def _export_graph(wrapper: nn.Module, path: str, height: int, width: int, dynamic: bool,
                  opset: int, divisor: int) -> None:
    """torch.onnx.export of ``wrapper`` (legacy exporter, dynamo as the fallback) to ``path``."""
    example = _example_inputs(height, width)
    dynamic_axes = None
    if dynamic:
        image_axes = {0: "batch", 2: "height", 3: "width"}
        out_axes = {0: "batch", 1: "height", 2: "width"}
        dynamic_axes = {**{n: image_axes for n in INPUT_NAMES},
                        **{n: out_axes for n in OUTPUT_NAMES}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # shape checks in forward are traced as constants; harmless for named dynamic axes
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # legacy exporter notice
            torch.onnx.export(wrapper, example, path, input_names=list(INPUT_NAMES),
                              output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
                              opset_version=opset, do_constant_folding=True, dynamo=False)
    except (ImportError, NotImplementedError) as exc:
        _LOG.warning("legacy ONNX exporter unavailable (%s); using dynamo=True", exc)
        dyn_shapes = None
        if dynamic:
            dim = torch.export.Dim
            axes = {0: dim("batch", max=64), 2: dim("height", min=divisor, max=4096),
                    3: dim("width", min=divisor, max=4096)}
            dyn_shapes = {"left": axes, "right": axes}
        with torch.no_grad():
            prog = torch.onnx.export(wrapper, example, input_names=list(INPUT_NAMES),
                                     output_names=list(OUTPUT_NAMES), opset_version=opset,
                                     dynamic_shapes=dyn_shapes, dynamo=True)
        prog.save(path)


def export_onnx(model: nn.Module, path: str, height: int, width: int, dynamic: bool = False,
                opset: int = 17) -> str:
    """Export ``model`` to an ONNX file.

    Args:
        model: a dtp_stereo model (``max_disparity``, ``size_divisor`` attributes); it is
            exported on CPU in eval mode (its device and mode are restored afterwards).
        path: output ``.onnx`` file (parent directories are created).
        height, width: example input size in pixels, multiples of ``model.size_divisor``;
            the graph's fixed size when ``dynamic`` is False.
        dynamic: make batch, height and width dynamic axes.
        opset: ONNX opset version.

    Returns:
        ``path``.

    Raises:
        ValueError: height/width not multiples of ``model.size_divisor``.
        onnx.checker.ValidationError: the written graph is invalid.
    """
    import onnx

    divisor = int(getattr(model, "size_divisor", 1))
    if height <= 0 or width <= 0 or height % divisor or width % divisor:
        raise ValueError(f"export_onnx: size {height}x{width} must be positive multiples of "
                         f"the model's size_divisor {divisor}")
    with eval_mode(model, "cpu"):
        _export_graph(StereoOnnxWrapper(model).eval(), path, height, width, dynamic, opset,
                      divisor)
    proto = onnx.load(path)
    write_onnx_metadata(proto, OnnxMetadata(
        model_name=str(getattr(model, "model_name", type(model).__name__)),
        max_disparity=int(getattr(model, "max_disparity", 192)), size_divisor=divisor,
        input_size=None if dynamic else (height, width)))
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return path


def check_onnx_against_torch(model: nn.Module, onnx_path: str, height: int, width: int,
                             seed: int = 0) -> float:
    """Max absolute disparity difference (pixels) between torch and onnxruntime on CPU.

    Args:
        model: the exported model (evaluated on CPU in float32, eval mode).
        onnx_path: ONNX file from :func:`export_onnx`.
        height, width: test input size in pixels (the graph's size when it is fixed).
        seed: seed of the textured test pair.
    """
    import onnxruntime as ort

    left, right = _example_inputs(height, width, seed=seed + 1)
    with eval_mode(model, "cpu"), torch.inference_mode():
        ref = model(left, right).disparity.numpy()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(["disparity"], {"left": left.numpy(), "right": right.numpy()})[0]
    if got.shape != ref.shape:
        raise ValueError(f"check_onnx_against_torch: {onnx_path} gives disparity of shape "
                         f"{got.shape}, torch gives {ref.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))


def _cached_export_problem(path: Path, model: nn.Module,
                           input_size: Optional[Tuple[int, int]]) -> Optional[str]:
    """Why a cached export cannot be reused for ``model``, or None (trusted and matching)."""
    from dtp_stereo.onnx_metadata import read_onnx_metadata

    reason = untrusted_reason(path)
    if reason:
        return reason
    try:
        meta = read_onnx_metadata(str(path))
    except Exception as exc:  # onnx raises DecodeError and others on garbage
        return f"{path} is not a readable ONNX file ({type(exc).__name__})"
    expected = (str(getattr(model, "model_name", type(model).__name__)),
                int(model.max_disparity), int(model.size_divisor),
                None if input_size is None else tuple(input_size))
    found = (meta.model_name, meta.max_disparity, meta.size_divisor, meta.input_size)
    if found != expected:
        return f"{path} has metadata {found}, expected {expected}"
    return None


def ensure_onnx(checkpoint: str, cache_dir: Optional[str] = None,
                input_size: Optional[Tuple[int, int]] = None,
                overrides: Optional[Dict[str, Any]] = None) -> str:
    """Export ``checkpoint`` to ONNX once and reuse it (keyed by checkpoint hash,
    :data:`EXPORT_REVISION`, size and overrides).

    Args:
        checkpoint: dtp_stereo checkpoint file.
        cache_dir: directory for the ONNX file (default: the engine cache directory).
        input_size: fixed (H, W) pixels; ``None`` exports a dynamic graph.
        overrides: model_config entries replaced before export, e.g. ``{"head": "fast"}``.

    Returns:
        Path of the ONNX file.
    """
    from dtp_stereo.backends.tensorrt_backend import default_engine_cache_dir, file_sha256
    from dtp_stereo.checkpoint import load_model

    root = Path(cache_dir) if cache_dir else default_engine_cache_dir()
    size_tag = "dyn" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    size_tag += "".join(f"_{k}-{v}" for k, v in sorted((overrides or {}).items()))
    out = root / (f"{Path(checkpoint).stem}_{file_sha256(checkpoint)[:16]}_r{EXPORT_REVISION}_"
                  f"{size_tag}.onnx")
    private_dir(root)  # raises PermissionError if others can write the cache
    model, _ = load_model(checkpoint, device="cpu", overrides=overrides)
    if out.is_file():
        reason = _cached_export_problem(out, model, input_size)
        if reason is None:
            return str(out)
        _LOG.warning("ONNX export cache: %s; exporting again", reason)
    if input_size is None:
        d = int(model.size_divisor)
        h, w = d * max(1, 64 // d), d * max(1, 128 // d)
    else:
        h, w = input_size
    with atomic_path(out, private=True) as tmp:  # a cache entry: only its owner may write it
        export_onnx(model, str(tmp), h, w, dynamic=input_size is None)
    return str(out)
