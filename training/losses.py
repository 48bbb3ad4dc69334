"""Pure, shape-checked losses for stereo training and distillation.

Conventions: disparities are B×H×W in pixels, logits are B×D×H×W (D disparity bins of 1 px at
input resolution), features are B×C×H×W (2D) or B×C×D×H×W (3D cost volumes). Every loss returns
a scalar tensor; masked losses return a zero that keeps the graph when no pixel is valid.
"""

import math
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_same(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def _masked_mean(values: Tensor, mask: Optional[Tensor]) -> Tensor:
    if mask is None:
        return values.mean()
    _check_same(values, mask, "mask")
    mask = mask.to(torch.bool)
    if not bool(mask.any()):
        return values.sum() * 0.0
    return values[mask].mean()


def gt_mask(gt: Tensor, valid: Optional[Tensor], max_disparity: int) -> Tensor:
    """Valid ground-truth pixels: finite, 0 < gt < max_disparity, and ``valid`` (B×H×W bool)."""
    mask = torch.isfinite(gt) & (gt > 0) & (gt < max_disparity)
    if valid is not None:
        _check_same(gt, valid, "valid")
        mask = mask & valid.to(torch.bool)
    return mask


def disparity_loss(pred: Tensor, gt: Tensor, valid: Optional[Tensor], max_disparity: int,
                   kind: str = "smooth_l1") -> Tensor:
    """Masked disparity regression loss against ground truth.

    Args:
        pred: B×H×W predicted disparity, pixels.
        gt: B×H×W ground-truth disparity, pixels (non-finite allowed where invalid).
        valid: B×H×W bool mask or ``None``; combined with 0 < gt < max_disparity.
        max_disparity: D, pixels.
        kind: ``smooth_l1`` (PSMNet) or ``l1``.
    """
    if pred.dim() != 3:
        raise ValueError(f"disparity_loss: pred must be B×H×W, got {tuple(pred.shape)}")
    _check_same(pred, gt, "disparity_loss")
    mask = gt_mask(gt, valid, max_disparity)
    if not bool(mask.any()):
        return pred.sum() * 0.0
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred[mask], gt[mask], reduction="mean")
    if kind == "l1":
        return (pred[mask] - gt[mask]).abs().mean()
    raise ValueError(f"disparity_loss: unknown kind {kind!r} (smooth_l1 | l1)")


def multi_output_disparity_loss(preds: Sequence[Tensor], gt: Tensor, valid: Optional[Tensor],
                                max_disparity: int, weights: Sequence[float] = (0.5, 0.7, 1.0),
                                kind: str = "smooth_l1") -> Tensor:
    """Weighted sum of :func:`disparity_loss` over several outputs (PSMNet aux + final).

    ``preds`` is ordered earliest first and ends with the final disparity; the last
    ``len(preds)`` entries of ``weights`` are used, so a single output gets weight ``weights[-1]``.
    """
    if not preds:
        raise ValueError("multi_output_disparity_loss: no predictions")
    if len(preds) > len(weights):
        raise ValueError(f"multi_output_disparity_loss: {len(preds)} outputs but only "
                         f"{len(weights)} weights (set loss.aux_weights)")
    used = list(weights)[len(weights) - len(preds):]
    return sum(w * disparity_loss(p, gt, valid, max_disparity, kind) for w, p in zip(used, preds))


def soft_argmax(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Expected disparity ``sum_d d * softmax(logits / T)_d`` of B×D×H×W logits -> B×H×W pixels."""
    if logits.dim() != 4:
        raise ValueError(f"soft_argmax: logits must be B×D×H×W, got {tuple(logits.shape)}")
    prob = torch.softmax(logits / temperature, dim=1)
    bins = torch.arange(logits.shape[1], dtype=prob.dtype, device=prob.device)
    return (prob * bins.view(1, -1, 1, 1)).sum(dim=1)


def disparity_l1(student: Tensor, teacher: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Mean |student - teacher| of two B×H×W disparity maps (pixels); teacher is detached."""
    _check_same(student, teacher, "disparity_l1")
    return _masked_mean((student - teacher.detach()).abs(), mask)


def logits_l1(student: Tensor, teacher: Tensor, temperature: float = 1.0,
              mask: Optional[Tensor] = None) -> Tensor:
    """DTP logits distillation: L1 between soft-argmax disparities at temperature T.

    Args:
        student: B×D×H×W student logits.
        teacher: B×D×H×W teacher logits (detached).
        temperature: T > 0 softening both distributions.
        mask: optional B×H×W bool pixels to average over.
    """
    _check_same(student, teacher, "logits_l1")
    return _masked_mean((soft_argmax(student, temperature)
                         - soft_argmax(teacher.detach(), temperature)).abs(), mask)


def logits_kl(student: Tensor, teacher: Tensor, temperature: float = 1.0,
              mask: Optional[Tensor] = None) -> Tensor:
    """Hinton KL(softmax(t/T) || softmax(s/T)) over D, mean over pixels, times T^2.

    Args:
        student: B×D×H×W student logits.
        teacher: B×D×H×W teacher logits (detached).
        temperature: T > 0.
        mask: optional B×H×W bool pixels to average over.
    """
    _check_same(student, teacher, "logits_kl")
    if student.dim() != 4:
        raise ValueError(f"logits_kl: logits must be B×D×H×W, got {tuple(student.shape)}")
    log_p_t = F.log_softmax(teacher.detach() / temperature, dim=1)
    log_p_s = F.log_softmax(student / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return _masked_mean(kl, mask) * (temperature ** 2)


def cosine_feature_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean over pixels of 1 - cos(student, teacher) along channels (dim 1), B×C×... maps."""
    _check_same(student, teacher, "cosine_feature_loss")
    return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=1, eps=1e-8)).mean()


def mse_feature_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared error between feature maps of equal shape."""
    _check_same(student, teacher, "mse_feature_loss")
    return F.mse_loss(student, teacher.detach())


def smooth_l1_feature_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Smooth-L1 (Huber, beta 1) between tensors of equal shape."""
    _check_same(student, teacher, "smooth_l1_feature_loss")
    return F.smooth_l1_loss(student, teacher.detach())


def l1_feature_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean absolute difference between tensors of equal shape."""
    _check_same(student, teacher, "l1_feature_loss")
    return (student - teacher.detach()).abs().mean()


FEATURE_LOSSES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cosine": cosine_feature_loss,
    "mse": mse_feature_loss,
    "smooth_l1": smooth_l1_feature_loss,
    "l1": l1_feature_loss,
}
LOGIT_LOSSES = ("logits_l1", "kl")
POINT_LOSSES = tuple(FEATURE_LOSSES) + LOGIT_LOSSES


def point_loss(kind: str, student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """Dispatch a distillation-point loss by name (see :data:`POINT_LOSSES`).

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind == "logits_l1":
        return logits_l1(student, teacher, temperature)
    if kind == "kl":
        return logits_kl(student, teacher, temperature)
    if kind in FEATURE_LOSSES:
        return FEATURE_LOSSES[kind](student, teacher)
    raise ValueError(f"unknown distillation loss {kind!r}; valid: {', '.join(POINT_LOSSES)}")


def temperature_at(epoch: float, num_epochs: float, start: float, end: float,
                   schedule: str = "linear") -> float:
    """Distillation temperature at ``epoch`` growing from ``start`` (epoch 0) to ``end``.

    Progress is ``epoch / (num_epochs - 1)`` clamped to [0, 1] (``end`` at the last epoch).
    ``linear`` interpolates T; ``exponential`` interpolates log T (both T must be > 0).
    """
    if start <= 0 or end <= 0:
        raise ValueError(f"temperatures must be > 0, got {start} -> {end}")
    progress = 1.0 if num_epochs <= 1 else min(max(epoch / (num_epochs - 1), 0.0), 1.0)
    if schedule == "linear":
        return start + (end - start) * progress
    if schedule == "exponential":
        return math.exp(math.log(start) + (math.log(end) - math.log(start)) * progress)
    raise ValueError(f"unknown temperature schedule {schedule!r} (linear | exponential)")


def step_decay_weight(base: float, epoch: int, decay_epochs: Sequence[int],
                      factor: float = 10.0) -> float:
    """DSN adaptive weighting: ``base / factor**k`` with k the decay epochs already reached."""
    reached = sum(1 for e in decay_epochs if epoch >= e)
    return base / (factor ** reached)


def weighted_sum(terms: Mapping[str, Tensor],
                 weights: Mapping[str, float]) -> Tuple[Tensor, Dict[str, float]]:
    """Total ``sum_k weights[k] * terms[k]`` and the unweighted term values as floats.

    Raises:
        KeyError: a term without a weight.
        ValueError: no terms.
    """
    if not terms:
        raise ValueError("weighted_sum: no loss terms")
    missing = [k for k in terms if k not in weights]
    if missing:
        raise KeyError(f"weighted_sum: no weight for terms {missing}")
    total = sum(weights[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}
