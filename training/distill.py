"""Teacher-student distillation: taps, adapters and the combined training loss.

A :class:`Distiller` holds a student, an optional teacher (frozen: eval mode, no gradients, unless
co-training) and one adapter per distillation point whose channel counts differ (1x1 Conv2d for
B×C×H×W taps, 1x1x1 Conv3d for B×C×D×H×W cost volumes). ``forward`` returns the total loss and
its unweighted terms, so the trainer (and DDP) need only call it.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dtp_stereo.models.modes import eval_mode
from dtp_stereo.models.output import StereoOutput
from training import losses
from training.config import DistillCfg, PointCfg

LOGIT_TAPS = ("logits",)
# Large negative logit used to pad missing disparity bins (softmax weight ~0).
_PAD_LOGIT = -1e4


@dataclass
class DistillStep:
    """One loss evaluation.

    Attributes:
        loss: scalar total (weighted) loss.
        terms: unweighted term values (floats) by name (``gt``, point names, ``teacher_gt``).
        student: the student's output.
        teacher: the teacher's output or ``None``.
    """

    loss: Tensor
    terms: Dict[str, float]
    student: StereoOutput
    teacher: Optional[StereoOutput]


def resolve_tap(out: StereoOutput, tap: str) -> Tensor:
    """The tensor named ``tap`` in a model output.

    ``disparity``, ``logits``, ``confidence``, ``aux.<i>`` or a key of ``out.intermediates``.

    Raises:
        KeyError: the tap does not exist (the message lists the available taps).
    """
    if tap in ("disparity", "logits", "confidence"):
        value = getattr(out, tap)
    elif tap.startswith("aux."):
        idx = int(tap.split(".", 1)[1])
        value = out.aux[idx] if -len(out.aux) <= idx < len(out.aux) else None
    else:
        value = out.intermediates.get(tap)
    if value is None:
        avail = ["disparity"] + [n for n in ("logits", "confidence")
                                 if getattr(out, n) is not None]
        avail += [f"aux.{i}" for i in range(len(out.aux))] + sorted(out.intermediates)
        raise KeyError(f"distillation tap {tap!r} not found; available: {', '.join(avail)}")
    return value


def align_logits(student: Tensor, teacher: Tensor) -> Tensor:
    """Bring B×Dt×Ht×Wt teacher logits to the student's B×Ds×Hs×Ws.

    Bins are 1 px of disparity, so extra teacher bins are dropped and missing ones padded with a
    large negative logit; a different H×W is bilinearly interpolated. (Disparity values are not
    rescaled: both models see the same input, so resolutions normally agree.)
    """
    if student.dim() != 4 or teacher.dim() != 4:
        raise ValueError(f"logits must be B×D×H×W, got {tuple(student.shape)} (student) and "
                         f"{tuple(teacher.shape)} (teacher)")
    d_s, d_t = student.shape[1], teacher.shape[1]
    if d_t > d_s:
        teacher = teacher[:, :d_s]
    elif d_t < d_s:
        pad = teacher.new_full((teacher.shape[0], d_s - d_t) + tuple(teacher.shape[2:]),
                               _PAD_LOGIT)
        teacher = torch.cat([teacher, pad], dim=1)
    if teacher.shape[2:] != student.shape[2:]:
        teacher = F.interpolate(teacher, size=student.shape[2:], mode="bilinear",
                                align_corners=False)
    return teacher


def _check_logit_planes(student: nn.Module, teacher: nn.Module, points) -> None:
    """Raise ValueError if a logit-loss point pairs models whose logit planes mean different
    disparities: :func:`align_logits` assumes 1-px planes, so a DTPnet with fewer
    ``disparity_planes`` only distils logits from a model with the same planes."""
    def planes(m: nn.Module) -> Tuple[int, float]:
        return int(getattr(m, "planes", m.max_disparity)), float(getattr(m, "plane_step", 1.0))

    if planes(student)[1] == planes(teacher)[1] == 1.0:
        return
    for p in points:
        if p.loss in losses.LOGIT_LOSSES and planes(student) != planes(teacher):
            raise ValueError(f"point {p.name!r}: student logits have {planes(student)[0]} "
                             f"planes of {planes(student)[1]:.3g} px, the teacher's "
                             f"{planes(teacher)[0]} of {planes(teacher)[1]:.3g} px; logit "
                             "distillation needs the same disparity planes")


def make_adapter(student_channels: int, teacher_channels: int, ndim: int) -> nn.Module:
    """A 1x1 (2D, ``ndim`` 4) or 1x1x1 (3D, ``ndim`` 5) conv from student to teacher channels."""
    if ndim == 4:
        return nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=True)
    if ndim == 5:
        return nn.Conv3d(student_channels, teacher_channels, kernel_size=1, bias=True)
    raise ValueError(f"adapters need 4-D or 5-D feature taps, got {ndim}-D")


def _match_spatial(student: Tensor, teacher: Tensor) -> Tensor:
    if student.shape[2:] == teacher.shape[2:]:
        return student
    mode = "bilinear" if student.dim() == 4 else "trilinear"
    return F.interpolate(student, size=teacher.shape[2:], mode=mode, align_corners=False)


class Distiller(nn.Module):
    """Student + (frozen or co-trained) teacher + adapters, computing the distillation loss.

    Args:
        student: the model being trained (a ``build_model`` model returning ``StereoOutput``).
        teacher: the teacher, or ``None`` for ground-truth-only training.
        cfg: loss configuration (supervision mode, points, temperature, decay).
        max_disparity: D of the ground-truth mask, pixels (default: ``student.max_disparity``).
        example: (left, right) B×3×H×W pair used once to size the adapters (needed when a
            feature point has ``adapter`` auto/conv).
    """

    def __init__(self, student: nn.Module, teacher: Optional[nn.Module], cfg: DistillCfg,
                 max_disparity: Optional[int] = None,
                 example: Optional[Tuple[Tensor, Tensor]] = None) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.cfg = cfg
        self.max_disparity = int(max_disparity or student.max_disparity)
        self.adapters = nn.ModuleDict()
        uses_teacher = cfg.supervision in ("teacher", "both") and bool(cfg.points)
        if uses_teacher and teacher is None:
            raise ValueError(f"supervision {cfg.supervision!r} with distillation points needs a "
                             "teacher")
        if cfg.supervision == "teacher" and not cfg.points:
            raise ValueError("supervision 'teacher' needs at least one distillation point")
        names = [p.name for p in cfg.points]
        if len(set(names)) != len(names):
            raise ValueError(f"distillation point names must be unique, got {names}")
        for p in cfg.points:
            if p.loss not in losses.POINT_LOSSES:
                raise ValueError(f"point {p.name!r}: unknown loss {p.loss!r}; valid: "
                                 f"{', '.join(losses.POINT_LOSSES)}")
        if uses_teacher:
            _check_logit_planes(student, teacher, cfg.points)
        self.uses_teacher = uses_teacher or (cfg.co_train and teacher is not None)
        if teacher is not None and not cfg.co_train:
            for prm in teacher.parameters():
                prm.requires_grad_(False)
        if uses_teacher and any(self._wants_adapter(p) for p in cfg.points):
            if example is None:
                raise ValueError("feature distillation points need an example input pair to "
                                 "size their adapters")
            self._build_adapters(*example)

    @staticmethod
    def _wants_adapter(p: PointCfg) -> bool:
        return p.adapter != "none" and p.loss in losses.FEATURE_LOSSES and \
            p.teacher_tap not in LOGIT_TAPS

    @torch.no_grad()
    def _build_adapters(self, left: Tensor, right: Tensor) -> None:
        with eval_mode(self.student), eval_mode(self.teacher):
            s_out, t_out = self.student(left, right), self.teacher(left, right)
        for p in self.cfg.points:
            if not self._wants_adapter(p):
                continue
            s, t = resolve_tap(s_out, p.student_tap), resolve_tap(t_out, p.teacher_tap)
            if s.dim() != t.dim():
                raise ValueError(f"point {p.name!r}: student tap is {s.dim()}-D, teacher tap "
                                 f"{t.dim()}-D")
            if s.dim() < 4:
                continue
            if s.shape[1] != t.shape[1] or p.adapter == "conv":
                self.adapters[p.name] = make_adapter(s.shape[1], t.shape[1], s.dim())

    def trainable_parameters(self) -> List[nn.Parameter]:
        """Student and adapter parameters (not the teacher's)."""
        return [p for m in (self.student, self.adapters) for p in m.parameters()
                if p.requires_grad]

    def teacher_parameters(self) -> List[nn.Parameter]:
        """Teacher parameters trained when co-training, else empty."""
        if self.teacher is None or not self.cfg.co_train:
            return []
        return [p for p in self.teacher.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> "Distiller":
        """Set the student/adapters mode; the teacher stays in eval mode unless co-training."""
        super().train(mode)
        if self.teacher is not None and not self.cfg.co_train:
            self.teacher.eval()
        return self

    def point_weight(self, point: PointCfg, epoch: int) -> float:
        """The point's weight after DSN step decay at ``epoch``."""
        return losses.step_decay_weight(point.weight, epoch, self.cfg.decay_epochs,
                                        self.cfg.decay_factor)

    def _teacher_forward(self, left: Tensor, right: Tensor) -> StereoOutput:
        if self.cfg.co_train:
            return self.teacher(left, right)
        with torch.no_grad():
            return self.teacher(left, right)

    def _point_term(self, p: PointCfg, s_out: StereoOutput, t_out: StereoOutput,
                    temperature: float) -> Tensor:
        s, t = resolve_tap(s_out, p.student_tap), resolve_tap(t_out, p.teacher_tap).detach()
        if p.loss in losses.LOGIT_LOSSES:
            return losses.point_loss(p.loss, s, align_logits(s, t), temperature)
        if p.name in self.adapters:
            s = self.adapters[p.name](s)
        elif s.dim() >= 4 and s.shape[1] != t.shape[1]:
            raise ValueError(f"point {p.name!r}: student has {s.shape[1]} channels, teacher "
                             f"{t.shape[1]}, and adapter is 'none'")
        if s.dim() >= 4:
            s = _match_spatial(s, t)
        return losses.point_loss(p.loss, s, t, temperature)

    def forward(self, left: Tensor, right: Tensor, gt: Optional[Tensor] = None,
                valid: Optional[Tensor] = None, epoch: int = 0,
                num_epochs: int = 1) -> DistillStep:
        """Total loss for one batch.

        Args:
            left, right: B×3×H×W images in [0, 1].
            gt: B×H×W ground-truth disparity, pixels (needed for ``gt``/``both``/co-training).
            valid: B×H×W bool mask of usable ground truth.
            epoch: current epoch (temperature schedule and step decay).
            num_epochs: epochs of the stage (temperature schedule).
        """
        cfg = self.cfg
        s_out: StereoOutput = self.student(left, right)
        t_out = self._teacher_forward(left, right) if self.uses_teacher else None
        terms: Dict[str, Tensor] = {}
        weights: Dict[str, float] = {}
        if cfg.supervision in ("gt", "both"):
            if gt is None:
                raise ValueError(f"supervision {cfg.supervision!r} needs ground truth")
            terms["gt"] = losses.multi_output_disparity_loss(
                list(s_out.aux) + [s_out.disparity], gt, valid, self.max_disparity,
                cfg.aux_weights, cfg.gt_loss)
            weights["gt"] = cfg.gt_weight
        if cfg.supervision in ("teacher", "both") and t_out is not None:
            temperature = losses.temperature_at(epoch, num_epochs, cfg.temperature_start,
                                                cfg.temperature_end, cfg.temperature_schedule)
            for p in cfg.points:
                terms[p.name] = self._point_term(p, s_out, t_out, temperature)
                weights[p.name] = self.point_weight(p, epoch)
        if cfg.co_train and t_out is not None:
            if gt is None:
                raise ValueError("co-training the teacher needs ground truth")
            terms["teacher_gt"] = losses.multi_output_disparity_loss(
                list(t_out.aux) + [t_out.disparity], gt, valid, self.max_disparity,
                cfg.aux_weights, cfg.gt_loss)
            weights["teacher_gt"] = cfg.teacher_gt_weight
        total, values = losses.weighted_sum(terms, weights)
        return DistillStep(loss=total, terms=values, student=s_out, teacher=t_out)


def gt_only_config(base: DistillCfg) -> DistillCfg:
    """``base`` with supervision switched to ground truth only (no points)."""
    from dataclasses import replace

    return replace(base, supervision="gt", points=(), co_train=False)


def describe_points(points: Sequence[PointCfg]) -> str:
    """One-line human summary of distillation points for logs."""
    return ", ".join(f"{p.name}:{p.student_tap}->{p.teacher_tap}[{p.loss}x{p.weight}]"
                     for p in points) or "none"
