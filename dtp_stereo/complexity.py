"""Parameter and multiply-accumulate (MAC) counting for stereo models.

The MAC counter is conv-only: it counts Conv2d/Conv3d/ConvTranspose2d/ConvTranspose3d/Linear
multiplies (bias adds, BatchNorm, activations, interpolation, softmax and regression are not
counted). A transposed convolution is counted over its INPUT grid, i.e. every input element is
multiplied by ``C_out/groups × prod(kernel)`` weights -- the true multiply count. (thop-style
counters charge it over the output grid, 2^d × too much for stride 2 in d dimensions.)
"""

from typing import List

import torch
from torch import Tensor, nn

from dtp_stereo.models.modes import eval_mode

__all__ = ["count_macs", "count_parameters", "module_macs"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def module_macs(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    """MACs of one call of a conv/transposed-conv/linear ``module``: input ``inp``, output ``out``.

    Conv: ``numel(out) × C_in/groups × prod(kernel)``. Transposed conv:
    ``numel(inp) × C_out/groups × prod(kernel)``. Linear: ``numel(out) × in_features``.
    Other modules count 0.
    """
    if isinstance(module, _CONVT):
        k = int(torch.tensor(module.kernel_size).prod())
        return inp.numel() * (module.out_channels // module.groups) * k
    if isinstance(module, _CONV):
        k = int(torch.tensor(module.kernel_size).prod())
        return out.numel() * (module.in_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


def count_macs(model: nn.Module, height: int, width: int, batch: int = 1) -> int:
    """Conv-only MACs of one ``model(left, right)`` call on B×3×height×width inputs.

    The model is run once in eval mode under ``torch.no_grad`` on zero images (training mode
    is restored afterwards). ``height`` and ``width`` must be multiples of the model's
    ``size_divisor`` when it has one.

    Returns:
        total multiply-accumulates for the whole batch (both images' feature passes included).
    """
    divisor = int(getattr(model, "size_divisor", 1))
    if height <= 0 or width <= 0 or height % divisor or width % divisor:
        raise ValueError(f"count_macs: input {height}x{width} must be positive multiples of "
                         f"the model's size_divisor {divisor}")
    total: List[int] = [0]

    def hook(mod: nn.Module, inputs, output) -> None:
        total[0] += module_macs(mod, inputs[0], output)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, _CONV + _CONVT + (nn.Linear,))]
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(batch, 3, height, width, device=device)
        with eval_mode(model), torch.no_grad():
            model(x, x.clone())
    finally:
        for h in handles:
            h.remove()
    return total[0]
