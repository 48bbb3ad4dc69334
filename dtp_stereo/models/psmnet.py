"""PSMNet stacked-hourglass teacher (Chang & Chen, CVPR 2018), public state_dict layout.

Module names, widths, bias flags and BatchNorms follow JiaRenChang/PSMNet
(``models/stackhourglass.py`` + ``models/submodule.py``), so the public checkpoints -- saved
from ``nn.DataParallel`` as ``{"state_dict": {"module.feature_extraction...": ...}}`` -- load
strictly after :func:`convert_public_psmnet_state_dict`.

Deviations that do not touch the key layout:
    * SPP average pools (k = 64/32/16/8, kernel = stride) keep kernel k along an axis whose
      1/4 feature size is >= k (identical to the original there) and use kernel
      max(1, size // 2) along a smaller axis (at least 2 pooled cells, so BatchNorm in training
      mode also works at batch size 1), so inputs smaller than 256 px work.
    * The concat cost volume is built with pad + stack (no in-place slice writes).
    * Normalisation (ImageNet mean/std) happens inside ``forward``; inputs are RGB in [0, 1].
    * Upsampling uses ``align_corners=False`` (the current PyTorch default the repo relies on).
"""

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._registry import register_model
from .layers import (ImageNormalize, ResidualTrunk, check_input_pair, convbn, convbn_3d,
                     cost_classifier_3d, cost_regularizer_3d, regress, upsample_cost)
from .output import StereoOutput

__all__ = ["PSMNet", "PSMNetConfig", "convert_public_psmnet_state_dict"]


@dataclass(frozen=True)
class PSMNetConfig:
    """PSMNet architecture. Defaults are the published model (5.225 M parameters)."""

    max_disparity: int = 192  # D, pixels (cost volume has D/4 planes)
    base_width: int = 32  # C: stem/layer1/branch/feature width; layer2 2C, layer3/4 4C, hg 2C
    layer1_blocks: int = 3  # BasicBlocks in layer1 (1/2 res)
    layer2_blocks: int = 16  # BasicBlocks in layer2 (1/4 res)
    layer3_blocks: int = 3  # BasicBlocks in layer3
    layer4_blocks: int = 3  # BasicBlocks in layer4 (dilation 2)

    def __post_init__(self) -> None:
        if self.max_disparity < 4 or self.max_disparity % 4:
            raise ValueError(f"PSMNetConfig.max_disparity must be a positive multiple of 4, "
                             f"got {self.max_disparity}")
        for name in ("base_width", "layer1_blocks", "layer2_blocks", "layer3_blocks",
                     "layer4_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"PSMNetConfig.{name} must be >= 1, got {getattr(self, name)}")


def _pool_kernel(kernel: int, size: int) -> int:
    return kernel if size >= kernel else max(1, size // 2)


class ClampedAvgPool2d(nn.Module):
    """Average pooling, kernel = stride = k per axis, or max(1, size // 2) where size < k."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = int(kernel)

    def forward(self, x: Tensor) -> Tensor:
        kh = _pool_kernel(self.kernel, int(x.shape[-2]))
        kw = _pool_kernel(self.kernel, int(x.shape[-1]))
        return F.avg_pool2d(x, (kh, kw), stride=(kh, kw))


class FeatureExtraction(ResidualTrunk):
    """PSMNet feature network with SPP: B×3×H×W -> B×C×H/4×W/4 (C = base width, 32)."""

    def __init__(self, cfg: PSMNetConfig) -> None:
        c = cfg.base_width
        super().__init__(c, (cfg.layer1_blocks, cfg.layer2_blocks, cfg.layer3_blocks,
                             cfg.layer4_blocks))
        for i, k in enumerate((64, 32, 16, 8), start=1):
            setattr(self, f"branch{i}", nn.Sequential(
                ClampedAvgPool2d(k), convbn(4 * c, c, 1, 1, 0, 1), nn.ReLU(inplace=True)))
        self.lastconv = nn.Sequential(
            convbn(10 * c, 4 * c, 3, 1, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(4 * c, c, kernel_size=1, padding=0, stride=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        out_raw, _, out_skip = self.trunk(x)
        size = out_skip.shape[-2:]
        branches = [F.interpolate(b(out_skip), size=size, mode="bilinear", align_corners=False)
                    for b in (self.branch4, self.branch3, self.branch2, self.branch1)]
        return self.lastconv(torch.cat([out_raw, out_skip] + branches, dim=1))


class Hourglass3D(nn.Module):
    """PSMNet 3D hourglass (``hourglass(inplanes)``): conv1..conv4, ConvTranspose3d conv5/conv6."""

    def __init__(self, inplanes: int) -> None:
        super().__init__()
        c2 = 2 * inplanes
        self.conv1 = nn.Sequential(convbn_3d(inplanes, c2, 3, 2, 1), nn.ReLU(inplace=True))
        self.conv2 = convbn_3d(c2, c2, 3, 1, 1)
        self.conv3 = nn.Sequential(convbn_3d(c2, c2, 3, 2, 1), nn.ReLU(inplace=True))
        self.conv4 = nn.Sequential(convbn_3d(c2, c2, 3, 1, 1), nn.ReLU(inplace=True))
        self.conv5 = nn.Sequential(
            nn.ConvTranspose3d(c2, c2, 3, padding=1, output_padding=1, stride=2, bias=False),
            nn.BatchNorm3d(c2))
        self.conv6 = nn.Sequential(
            nn.ConvTranspose3d(c2, inplanes, 3, padding=1, output_padding=1, stride=2,
                               bias=False),
            nn.BatchNorm3d(inplanes))

    def forward(self, x: Tensor, presqu: Any, postsqu: Any) -> Tuple[Tensor, Tensor, Tensor]:
        out = self.conv1(x)
        pre = self.conv2(out)
        pre = F.relu(pre + postsqu) if postsqu is not None else F.relu(pre)
        out = self.conv4(self.conv3(pre))
        post = F.relu(self.conv5(out) + (presqu if presqu is not None else pre))
        return self.conv6(post), pre, post


def concat_volume(left: Tensor, right: Tensor, num_disp: int) -> Tensor:
    """PSMNet concat volume B×2C×num_disp×H×W: plane i = [left, right shifted right by i].

    Columns x < i are zero in both halves, as in the original; planes with i >= W (a feature
    map narrower than the disparity range) are all zero.
    """
    width = left.shape[-1]
    planes = []
    for i in range(num_disp):
        if i == 0:
            planes.append(torch.cat((left, right), dim=1))
            continue
        if i >= width:
            planes.append(torch.zeros_like(planes[0]))
            continue
        l_i = F.pad(left[..., i:], (i, 0))
        r_i = F.pad(right[..., : width - i], (i, 0))
        planes.append(torch.cat((l_i, r_i), dim=1))
    return torch.stack(planes, dim=2)


class PSMNet(nn.Module):
    """PSMNet (stacked hourglass). ``forward(left, right)`` on B×3×H×W RGB in [0, 1].

    Returns :class:`StereoOutput`: ``disparity`` = pred3 (B×H×W pixels), ``logits`` = cost3
    trilinearly upsampled to B×D×H×W (before softmax), ``confidence`` (softmax mass within ±2
    of the argmax), ``aux`` = (pred1, pred2) in training mode, ``intermediates``:
    ``features`` / ``features_right`` (B×C×H/4×W/4), ``cost_volume`` (B×2C×D/4×H/4×W/4).
    """

    size_divisor = 16

    def __init__(self, config: PSMNetConfig) -> None:
        super().__init__()
        self.config = config
        self.max_disparity = int(config.max_disparity)
        c = config.base_width
        self.normalize = ImageNormalize()
        self.feature_extraction = FeatureExtraction(config)
        self.dres0 = cost_regularizer_3d(2 * c, c, final_relu=True)
        self.dres1 = cost_regularizer_3d(c, c, final_relu=False)
        self.dres2 = Hourglass3D(c)
        self.dres3 = Hourglass3D(c)
        self.dres4 = Hourglass3D(c)
        self.classif1 = cost_classifier_3d(c)
        self.classif2 = cost_classifier_3d(c)
        self.classif3 = cost_classifier_3d(c)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():  # He init as in the published code
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _upsample(self, cost: Tensor, size: Tuple[int, int]) -> Tensor:
        """B×1×D/4×H/4×W/4 -> B×D×H×W logits (trilinear)."""
        return upsample_cost(cost, self.max_disparity, size)

    def forward(self, left: Tensor, right: Tensor) -> StereoOutput:
        check_input_pair(left, right, self.size_divisor)
        size = (int(left.shape[-2]), int(left.shape[-1]))
        feat_l = self.feature_extraction(self.normalize(left))
        feat_r = self.feature_extraction(self.normalize(right))
        volume = concat_volume(feat_l, feat_r, self.max_disparity // 4)
        cost0 = self.dres0(volume)
        cost0 = self.dres1(cost0) + cost0
        out1, pre1, post1 = self.dres2(cost0, None, None)
        out1 = out1 + cost0
        out2, _, post2 = self.dres3(out1, pre1, post1)
        out2 = out2 + cost0
        out3, _, _ = self.dres4(out2, pre1, post2)
        out3 = out3 + cost0
        cost1 = self.classif1(out1)
        cost2 = self.classif2(out2) + cost1
        cost3 = self.classif3(out3) + cost2
        logits = self._upsample(cost3, size)
        disp, conf = regress(logits)
        aux: Tuple[Tensor, ...] = ()
        if self.training:
            aux = tuple(regress(self._upsample(c, size))[0] for c in (cost1, cost2))
        inter = {"features": feat_l, "features_right": feat_r, "cost_volume": volume}
        return StereoOutput(disp, logits, conf, aux, inter)


def convert_public_psmnet_state_dict(obj: Mapping[str, Any]) -> Dict[str, Tensor]:
    """Convert a public PSMNet checkpoint object to a state_dict for :class:`PSMNet` (full width).

    Accepts ``{"state_dict": {...}}`` (the published format, keys prefixed ``module.`` by
    ``nn.DataParallel``) or a bare state_dict with or without the prefix. Other top-level keys
    (e.g. ``epoch``, ``train_loss``) are ignored. BatchNorm ``num_batches_tracked`` counters
    absent from old (PyTorch 0.4.0) checkpoints are filled with 0.

    Raises:
        ValueError: not a mapping of tensors, or missing / unexpected / mis-shaped keys compared
            with the published architecture (the message lists them).
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"PSMNet checkpoint: expected a dict, got {type(obj).__name__}")
    sd = obj["state_dict"] if "state_dict" in obj else obj
    if not isinstance(sd, Mapping):
        raise ValueError("PSMNet checkpoint: 'state_dict' is not a dict")
    out: Dict[str, Tensor] = {}
    for key, value in sd.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"PSMNet checkpoint: entry {key!r} is not a tensor")
        out[key[len("module."):] if key.startswith("module.") else key] = value
    with torch.device("meta"):  # shapes only, no allocation
        expected = {k: tuple(v.shape) for k, v in PSMNet(PSMNetConfig()).state_dict().items()}
    for key in expected:  # checkpoints saved by PyTorch 0.4.0 predate num_batches_tracked
        if key.endswith(".num_batches_tracked") and key not in out:
            out[key] = torch.tensor(0, dtype=torch.long)
    missing = sorted(set(expected) - set(out))
    unexpected = sorted(set(out) - set(expected))
    bad = sorted(k for k in set(expected) & set(out) if tuple(out[k].shape) != expected[k])
    if missing or unexpected or bad:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("mis-shaped", bad)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:5])})")
        raise ValueError("PSMNet checkpoint does not match the published architecture: "
                         + "; ".join(parts))
    return out


@register_model("psmnet")
def _create_psmnet(**cfg) -> PSMNet:
    return PSMNet(PSMNetConfig(**cfg))
