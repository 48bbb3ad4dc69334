"""The typed output every stereo model returns."""

from typing import Dict, NamedTuple, Optional, Tuple

from torch import Tensor


class StereoOutput(NamedTuple):
    """What a stereo model returns, in training and in eval mode alike.

    Attributes:
        disparity: B×H×W float32, left-referenced disparity in pixels at input resolution.
        logits: B×D×H×W matching logits before the softmax over D disparities (D = max
            disparity), at input resolution, or ``None`` when the model's head does not
            form them (e.g. the fast head regresses at 1/4 resolution).
        confidence: B×H×W in [0, 1], the softmax probability mass near the chosen
            disparity, or ``None``.
        aux: training-only intermediate disparities (B×H×W each), e.g. PSMNet's first two
            hourglass outputs; empty in eval mode.
        intermediates: named tensors for distillation (``"features"`` B×C×H/4×W/4 of the
            left image, ``"cost_volume"`` as the architecture builds it, ...).
    """

    disparity: Tensor
    logits: Optional[Tensor] = None
    confidence: Optional[Tensor] = None
    aux: Tuple[Tensor, ...] = ()
    intermediates: Dict[str, Tensor] = {}
