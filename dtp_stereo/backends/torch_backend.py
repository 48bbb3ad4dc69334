"""PyTorch backend: runs the model module directly on CPU or CUDA."""

import logging
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from dtp_stereo.backends.base import BackendError, InferenceResult, check_pair, pair_to_nchw

__all__ = ["TorchBackend"]

_LOG = logging.getLogger(__name__)


class TorchBackend:
    """Run a stereo model with PyTorch.

    Args:
        model: a dtp_stereo model (``forward(left, right) -> StereoOutput``) with
            ``max_disparity`` and ``size_divisor`` attributes; it is moved to ``device`` and
            put in eval mode.
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"`` accepted).
        fp16: run under float16 autocast; only on CUDA (ignored with a warning on CPU).
        channels_last: convert the model and inputs to channels-last memory format.
        threads: number of CPU intra-op threads (``torch.set_num_threads``); ``None`` keeps
            the current setting.
        fuse_bn: fold BatchNorm into the preceding convolutions
            (:func:`dtp_stereo.optimize.fuse_conv_bn`; same outputs up to float rounding).
        compile: wrap the model in ``torch.compile`` (the first inference then compiles, which
            takes tens of seconds on a small CPU).
    """

    name = "torch"

    def __init__(self, model: nn.Module, *, device: str = "cpu", fp16: bool = False,
                 channels_last: bool = False, threads: Optional[int] = None,
                 fuse_bn: bool = True, compile: bool = False) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("torch backend: device 'cuda' requested but CUDA is not "
                               "available; use device='cpu'")
        if not device.startswith(("cpu", "cuda")):
            raise BackendError(f"torch backend: unknown device {device!r}; use 'cpu' or 'cuda'")
        for attr in ("max_disparity", "size_divisor"):
            if not hasattr(model, attr):
                raise BackendError(f"torch backend: model {type(model).__name__} has no "
                                   f"{attr!r} attribute (see the model contract)")
        if threads is not None:
            if threads <= 0:
                raise BackendError(f"torch backend: threads must be positive, got {threads}")
            torch.set_num_threads(int(threads))
        if fp16 and not device.startswith("cuda"):
            _LOG.warning("torch backend: fp16 needs CUDA; running float32 on %s", device)
            fp16 = False
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        self._torch_device = torch.device(device)
        self.fp16 = fp16
        if channels_last and any(p.dim() > 4 for p in model.parameters()):
            # 3D convs (PSMNet, GwcNet) have 5-D weights: channels_last does not apply to them
            _LOG.warning("channels_last ignored: %s has 5-D (3D conv) weights",
                         type(model).__name__)
            channels_last = False
        self.channels_last = channels_last
        self.model = model.to(self._torch_device).eval()
        self.fuse_bn = bool(fuse_bn)
        if self.fuse_bn:
            from dtp_stereo.optimize import fuse_conv_bn

            self.model = fuse_conv_bn(self.model)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.compiled = bool(compile)
        if self.compiled:
            self.model = torch.compile(self.model)
        self.model_name = str(getattr(model, "model_name", type(model).__name__))
        self.max_disparity = int(model.max_disparity)
        self.size_divisor = int(model.size_divisor)
        self.input_size: Optional[Tuple[int, int]] = None

    @classmethod
    def from_checkpoint(cls, path: str, *, device: str = "cpu", fp16: bool = False,
                        channels_last: bool = False, threads: Optional[int] = None,
                        fuse_bn: bool = True, compile: bool = False,
                        head: Optional[str] = None) -> "TorchBackend":
        """Load a dtp_stereo checkpoint (``checkpoint.load_model``) and wrap it; ``head``
        (``"full"``/``"fast"``) replaces a DTPnet checkpoint's head, ``None`` keeps it."""
        from dtp_stereo.checkpoint import load_model

        map_device = "cuda" if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
        model, _ = load_model(path, device=map_device,
                              overrides={"head": head} if head else None)
        return cls(model, device=device, fp16=fp16, channels_last=channels_last,
                   threads=threads, fuse_bn=fuse_bn, compile=compile)

    def _to_tensor(self, arr: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(arr).to(self._torch_device, non_blocking=True)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def infer(self, left: np.ndarray, right: np.ndarray) -> InferenceResult:
        """Run the model on one pair.

        Args:
            left, right: H×W×3 float32 RGB in [0, 1], H and W multiples of ``size_divisor``.

        Returns:
            H×W float32 disparity (network pixels) and H×W confidence or ``None``.
        """
        check_pair(left, right, self.size_divisor, self.input_size, self.name)
        l_np, r_np = pair_to_nchw(left, right)
        l_t, r_t = self._to_tensor(l_np), self._to_tensor(r_np)
        with torch.inference_mode(), torch.autocast(device_type=self._torch_device.type,
                                                    dtype=torch.float16, enabled=self.fp16):
            out = self.model(l_t, r_t)
        disp = out.disparity[0].float().cpu().numpy()
        conf = getattr(out, "confidence", None)
        conf_np = None if conf is None else conf[0].float().cpu().numpy()
        return InferenceResult(disparity=np.ascontiguousarray(disp, dtype=np.float32),
                               confidence=conf_np)
