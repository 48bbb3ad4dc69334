"""``eval_mode``: run a model in eval mode (optionally on another device) and put it back."""

from contextlib import contextmanager
from typing import Iterator, Optional, Union

import torch
from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(model: nn.Module, device: Optional[Union[str, torch.device]] = None
              ) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (and on ``device`` if given) for the ``with`` block.

    Its training flag (and its device, when moved) are restored afterwards, also when the
    block raises. Yields the model.
    """
    param = next(model.parameters(), None)
    original = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        if device is not None:
            model.to(device)
        model.eval()
        yield model
    finally:
        if device is not None:
            model.to(original)
        model.train(was_training)
