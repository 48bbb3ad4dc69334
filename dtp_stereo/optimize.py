"""Inference-time graph rewrites for the torch backend (no training packages needed).

:func:`fuse_conv_bn` folds every eval-mode BatchNorm that directly follows a convolution into
that convolution's weight and bias (``w' = w·γ/σ``, ``b' = (b - μ)·γ/σ + β`` per output
channel, ``σ = sqrt(var + eps)``), and replaces the BatchNorm with ``nn.Identity``. The outputs
are those of the unfused model up to float32 rounding; each BatchNorm pass over a feature map
(memory-bound on CPU) disappears. The ONNX exporter folds Conv+BN itself (and ONNX Runtime fuses
Conv+BatchNormalization), but not ConvTranspose+BN: DTPnet exports keep the hourglass's two.

The fused model is for inference: its state_dict has conv biases and no BatchNorm entries, so
it is not a dtp_stereo checkpoint; keep saving the unfused model.
"""

import copy
from typing import Tuple

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fuse_conv_bn", "count_batchnorms"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _foldable(conv: nn.Module, bn: nn.Module) -> Tuple[bool, bool]:
    """(can fold, conv is transposed) for a conv immediately followed by ``bn``."""
    if not isinstance(bn, _BATCHNORMS) or not bn.track_running_stats or bn.running_mean is None:
        return False, False
    if isinstance(conv, _TRANSPOSED):
        return conv.groups == 1 and conv.out_channels == bn.num_features, True
    if isinstance(conv, _CONVS):
        return conv.out_channels == bn.num_features, False
    return False, False


def count_batchnorms(model: nn.Module) -> int:
    """Number of BatchNorm modules left in ``model``."""
    return sum(isinstance(m, _BATCHNORMS) for m in model.modules())


def fuse_conv_bn(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold BatchNorm into the preceding convolution wherever a ``nn.Sequential`` holds a
    convolution immediately followed by a BatchNorm (dtp_stereo's ``convbn`` blocks, PSMNet's
    3D ones, the hourglass's transposed convs).

    Args:
        model: any module; it is put in eval mode (folding uses the running statistics).
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        The fused model in eval mode. BatchNorms not directly after a convolution inside a
        Sequential are left as they are (see :func:`count_batchnorms`).
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules.keys())
        for first, second in zip(names, names[1:]):
            conv, bn = seq._modules[first], seq._modules[second]
            ok, transposed = _foldable(conv, bn)
            if ok:
                seq._modules[first] = fuse_conv_bn_eval(conv, bn, transpose=transposed)
                seq._modules[second] = nn.Identity()
    return model
