"""GwcNet-g teacher (Guo et al., CVPR 2019) and a backbone-aligned 3D student.

GwcNet-g: PSMNet-style residual backbone (no SPP), the 1/4-resolution feature is the concat of
layer2/3/4 (2C + 4C + 4C = 10C channels, 320 at C = 32), a group-wise correlation volume
(``num_groups`` groups × D/4 disparities), 3D aggregation (dres0/dres1 + hourglasses with 1×1×1
redirections) and one classifier per stage. Backbone names follow xy-guo/GwcNet; the 3D stages
are ModuleLists (``hourglasses``, ``classifiers``) so their number is configurable.

``gwcnet_student`` follows "Distilling Stereo Networks" (DSN, IJCNN 2023): the SAME backbone
stage widths (so ``features`` and ``cost_volume`` match the teacher's shapes and feature
distillation needs no adapter) but fewer residual blocks (2/4/1/1), a narrower 3D aggregation
(16 channels) and 2 hourglasses.

The group-wise volume is built with pad + stack (no in-place slice writes), so it traces.
Inputs are RGB in [0, 1]; ImageNet normalisation happens inside ``forward``.
"""

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._registry import register_model
from .layers import (ImageNormalize, ResidualTrunk, check_input_pair, convbn_3d,
                     cost_classifier_3d, cost_regularizer_3d, regress, upsample_cost)
from .output import StereoOutput

__all__ = ["GwcNet", "GwcNetConfig", "GwcNetStudentConfig", "gwc_volume"]


@dataclass(frozen=True)
class GwcNetConfig:
    """GwcNet-g architecture; defaults are the published teacher."""

    max_disparity: int = 192  # D, pixels; a multiple of 16 (volume D/4 goes through 2 strides)
    base_width: int = 32  # C: stem/layer1 C, layer2 2C, layer3/4 4C; features are 10C channels
    blocks: Tuple[int, int, int, int] = (3, 16, 3, 3)  # residual blocks in layer1..layer4
    num_groups: int = 40  # correlation groups; 10C must be divisible by it
    agg_width: int = 32  # 3D aggregation width (hourglass inner widths 2× and 4×)
    num_hourglass: int = 3  # stacked hourglasses; one classifier each plus one for dres1

    def __post_init__(self) -> None:
        if isinstance(self.blocks, list):
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"{type(self).__name__}.blocks needs 4 counts >= 1, "
                             f"got {self.blocks}")
        if self.max_disparity < 16 or self.max_disparity % 16:
            raise ValueError(f"{type(self).__name__}.max_disparity must be a positive multiple "
                             f"of 16, got {self.max_disparity}")
        if self.base_width < 1 or self.agg_width < 1 or self.num_hourglass < 1:
            raise ValueError(f"{type(self).__name__}: widths and num_hourglass must be >= 1")
        if self.num_groups < 1 or (10 * self.base_width) % self.num_groups:
            raise ValueError(f"{type(self).__name__}.num_groups={self.num_groups} must divide the "
                             f"feature width 10*base_width={10 * self.base_width}")


@dataclass(frozen=True)
class GwcNetStudentConfig(GwcNetConfig):
    """DSN-style student: teacher's stage widths, fewer blocks, narrower/shallower 3D part."""

    blocks: Tuple[int, int, int, int] = (2, 4, 1, 1)
    agg_width: int = 16
    num_hourglass: int = 2


class GwcFeature(ResidualTrunk):
    """GwcNet-g feature network: B×3×H×W -> B×10C×H/4×W/4 (concat of layer2, layer3, layer4)."""

    def __init__(self, cfg: GwcNetConfig) -> None:
        super().__init__(cfg.base_width, cfg.blocks)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(self.trunk(x), dim=1)


class GwcHourglass(nn.Module):
    """GwcNet 3D hourglass: C -> 2C (1/8) -> 4C (1/16) -> back, with 1×1×1 ``redir`` skips."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(convbn_3d(c, 2 * c, 3, 2, 1), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(convbn_3d(2 * c, 2 * c, 3, 1, 1), nn.ReLU(inplace=True))
        self.conv3 = nn.Sequential(convbn_3d(2 * c, 4 * c, 3, 2, 1), nn.ReLU(inplace=True))
        self.conv4 = nn.Sequential(convbn_3d(4 * c, 4 * c, 3, 1, 1), nn.ReLU(inplace=True))
        self.conv5 = nn.Sequential(
            nn.ConvTranspose3d(4 * c, 2 * c, 3, padding=1, output_padding=1, stride=2,
                               bias=False),
            nn.BatchNorm3d(2 * c))
        self.conv6 = nn.Sequential(
            nn.ConvTranspose3d(2 * c, c, 3, padding=1, output_padding=1, stride=2, bias=False),
            nn.BatchNorm3d(c))
        self.redir1 = convbn_3d(c, c, 1, 1, 0)
        self.redir2 = convbn_3d(2 * c, 2 * c, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        conv2 = self.conv2(self.conv1(x))
        conv4 = self.conv4(self.conv3(conv2))
        conv5 = F.relu(self.conv5(conv4) + self.redir2(conv2))
        return F.relu(self.conv6(conv5) + self.redir1(x))


def gwc_volume(left: Tensor, right: Tensor, num_disp: int, num_groups: int) -> Tensor:
    """Group-wise correlation volume B×G×num_disp×H×W (mean over each group's channels).

    Plane i correlates left column x with right column x - i; columns x < i are zero, and planes
    with i >= W are all zero.
    """
    b, c, h, w = left.shape
    planes = []
    for i in range(num_disp):
        if i >= w:
            planes.append(left.new_zeros(b, num_groups, h, w))
            continue
        prod = left[..., i:] * right[..., : w - i]
        corr = prod.reshape(b, num_groups, c // num_groups, h, w - i).mean(dim=2)
        planes.append(F.pad(corr, (i, 0)) if i > 0 else corr)
    return torch.stack(planes, dim=2)


class GwcNet(nn.Module):
    """GwcNet-g / DSN student. ``forward(left, right)`` on B×3×H×W RGB in [0, 1] (H, W % 16 == 0).

    Returns :class:`StereoOutput`: ``disparity`` from the last classifier (B×H×W pixels),
    ``logits`` B×D×H×W (last classifier, trilinear upsampling, before softmax), ``confidence``,
    ``aux`` (the earlier classifiers' disparities, training mode only), ``intermediates``:
    ``features`` / ``features_right`` (B×10C×H/4×W/4) and ``cost_volume`` (B×G×D/4×H/4×W/4).
    """

    size_divisor = 16

    def __init__(self, config: GwcNetConfig) -> None:
        super().__init__()
        self.config = config
        self.max_disparity = int(config.max_disparity)
        a = config.agg_width
        self.normalize = ImageNormalize()
        self.feature_extraction = GwcFeature(config)
        self.dres0 = cost_regularizer_3d(config.num_groups, a, final_relu=True)
        self.dres1 = cost_regularizer_3d(a, a, final_relu=False)
        self.hourglasses = nn.ModuleList(GwcHourglass(a) for _ in range(config.num_hourglass))
        self.classifiers = nn.ModuleList(
            cost_classifier_3d(a) for _ in range(config.num_hourglass + 1))

    def _upsample(self, cost: Tensor, size: Tuple[int, int]) -> Tensor:
        return upsample_cost(cost, self.max_disparity, size)

    def forward(self, left: Tensor, right: Tensor) -> StereoOutput:
        check_input_pair(left, right, self.size_divisor)
        size = (int(left.shape[-2]), int(left.shape[-1]))
        feat_l = self.feature_extraction(self.normalize(left))
        feat_r = self.feature_extraction(self.normalize(right))
        volume = gwc_volume(feat_l, feat_r, self.max_disparity // 4, self.config.num_groups)
        cost0 = self.dres0(volume)
        outs = [self.dres1(cost0) + cost0]
        for hg in self.hourglasses:
            outs.append(hg(outs[-1]))
        logits = self._upsample(self.classifiers[-1](outs[-1]), size)
        disp, conf = regress(logits)
        aux: Tuple[Tensor, ...] = ()
        if self.training:
            aux = tuple(regress(self._upsample(clf(o), size))[0]
                        for clf, o in zip(self.classifiers[:-1], outs[:-1]))
        inter = {"features": feat_l, "features_right": feat_r, "cost_volume": volume}
        return StereoOutput(disp, logits, conf, aux, inter)


@register_model("gwcnet")
def _create_gwcnet(**cfg) -> GwcNet:
    return GwcNet(GwcNetConfig(**cfg))


@register_model("gwcnet_student")
def _create_gwcnet_student(**cfg) -> GwcNet:
    return GwcNet(GwcNetStudentConfig(**cfg))
