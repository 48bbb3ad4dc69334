"""Shared building blocks: conv+BN, PSMNet residual blocks, normalisation, disparity regression.

Module/attribute names of ``convbn``, ``convbn_3d``, ``BasicBlock`` and ``make_layer`` follow the
published PSMNet code (JiaRenChang/PSMNet ``models/submodule.py``) so public checkpoints load
with identical state_dict keys.
"""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)


def convbn(in_planes: int, out_planes: int, kernel_size: int, stride: int, pad: int,
           dilation: int = 1) -> nn.Sequential:
    """2D conv (no bias) + BatchNorm; padding equals ``dilation`` when dilation > 1 (PSMNet)."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=stride,
                  padding=dilation if dilation > 1 else pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_planes))


def convbn_of_concat(seq: nn.Sequential, parts: Sequence[Tensor]) -> Tensor:
    """``seq`` (a :func:`convbn`) on the channel concatenation of ``parts``.

    While an eval-mode model is exported to ONNX, the concatenation is never built: the
    BatchNorm is folded into the conv (``torch.nn.utils.fusion.fuse_conv_bn_weights``, as
    :mod:`dtp_stereo.optimize` does) and the conv is written as the sum of one conv per part,
    each with its slice of the input channels: the same values to float rounding. ONNX Runtime's
    CPU convs work in a blocked channel layout (NCHWc) that a Concat leaves and re-enters (a
    Concat and two layout reorders per concatenation); convs and a fused Add stay in it. Eagerly
    (one conv is faster there, and training needs the batch statistics) it is plainly
    ``seq(torch.cat(parts, 1))``. B×C_i×H×W each -> B×C_out×H'×W'.
    """
    if seq.training or len(parts) == 1 or not torch.onnx.is_in_onnx_export():
        return seq(parts[0] if len(parts) == 1 else torch.cat(tuple(parts), dim=1))
    conv, bn = seq[0], seq[1]
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean,
                                        bn.running_var, bn.eps, bn.weight, bn.bias)
    out, start = None, 0
    for x in parts:
        stop = start + x.shape[1]
        y = F.conv2d(x, weight[:, start:stop], bias if out is None else None, conv.stride,
                     conv.padding, conv.dilation)
        out = y if out is None else out + y
        start = stop
    if start != conv.in_channels:
        raise ValueError(f"convbn_of_concat: parts have {start} channels, the conv takes "
                         f"{conv.in_channels}")
    return out


def convbn_3d(in_planes: int, out_planes: int, kernel_size: int, stride: int,
              pad: int) -> nn.Sequential:
    """3D conv (no bias) + BatchNorm3d."""
    return nn.Sequential(
        nn.Conv3d(in_planes, out_planes, kernel_size=kernel_size, padding=pad, stride=stride,
                  bias=False),
        nn.BatchNorm3d(out_planes))


class BasicBlock(nn.Module):
    """PSMNet residual block: conv-BN-ReLU, conv-BN, + identity/downsample (no final ReLU).

    Args:
        inplanes: input channels.
        planes: output channels (and, unless ``mid`` is given, the inner width).
        stride: stride of the first conv.
        downsample: module mapping the input to ``planes`` channels at the output stride.
        pad: padding for dilation 1.
        dilation: dilation of both convs.
        mid: inner width (output of ``conv1``); defaults to ``planes``. Pruning changes it.
    """

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: Optional[nn.Module],
                 pad: int, dilation: int, mid: Optional[int] = None) -> None:
        super().__init__()
        mid = planes if mid is None else mid
        self.conv1 = nn.Sequential(convbn(inplanes, mid, 3, stride, pad, dilation),
                                   nn.ReLU(inplace=True))
        self.conv2 = convbn(mid, planes, 3, 1, pad, dilation)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        if self.downsample is not None:
            x = self.downsample(x)
        return out + x


def make_layer(inplanes: int, planes: int, blocks: int, stride: int, pad: int, dilation: int,
               mids: Optional[Tuple[int, ...]] = None) -> nn.Sequential:
    """A stage of ``blocks`` BasicBlocks (PSMNet ``_make_layer``); ``mids`` gives inner widths."""
    if blocks < 1:
        raise ValueError(f"make_layer: blocks must be >= 1, got {blocks}")
    if mids is not None and len(mids) != blocks:
        raise ValueError(f"make_layer: {len(mids)} inner widths for {blocks} blocks")
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample, pad, dilation,
                         None if mids is None else mids[0])]
    for i in range(1, blocks):
        layers.append(BasicBlock(planes, planes, 1, None, pad, dilation,
                                 None if mids is None else mids[i]))
    return nn.Sequential(*layers)


class ResidualTrunk(nn.Module):
    """PSMNet / GwcNet residual backbone: ``firstconv`` (3 convs, stride 2), ``layer1..layer4``.

    Widths C, C, 2C (stride 2), 4C, 4C (dilation 2); the published attribute names, so
    subclasses that add their heads keep the public state_dict keys.

    Args:
        width: C, the stem width.
        blocks: BasicBlocks in layer1..layer4.
    """

    def __init__(self, width: int, blocks: Tuple[int, int, int, int]) -> None:
        super().__init__()
        c = width
        self.firstconv = nn.Sequential(
            convbn(3, c, 3, 2, 1, 1), nn.ReLU(inplace=True),
            convbn(c, c, 3, 1, 1, 1), nn.ReLU(inplace=True),
            convbn(c, c, 3, 1, 1, 1), nn.ReLU(inplace=True))
        self.layer1 = make_layer(c, c, blocks[0], 1, 1, 1)
        self.layer2 = make_layer(c, 2 * c, blocks[1], 2, 1, 1)
        self.layer3 = make_layer(2 * c, 4 * c, blocks[2], 1, 1, 1)
        self.layer4 = make_layer(4 * c, 4 * c, blocks[3], 1, 1, 2)

    def trunk(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """B×3×H×W -> (layer2 B×2C, layer3 B×4C, layer4 B×4C), all at H/4 × W/4."""
        l2 = self.layer2(self.layer1(self.firstconv(x)))
        l3 = self.layer3(l2)
        return l2, l3, self.layer4(l3)


def cost_regularizer_3d(in_planes: int, planes: int, final_relu: bool) -> nn.Sequential:
    """Two 3×3×3 convbn_3d with a ReLU between (PSMNet/GwcNet ``dres0``/``dres1``)."""
    layers = [convbn_3d(in_planes, planes, 3, 1, 1), nn.ReLU(inplace=True),
              convbn_3d(planes, planes, 3, 1, 1)]
    if final_relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def cost_classifier_3d(planes: int) -> nn.Sequential:
    """convbn_3d-ReLU then a 3×3×3 conv to one channel: B×C×D×H×W -> B×1×D×H×W cost."""
    return nn.Sequential(convbn_3d(planes, planes, 3, 1, 1), nn.ReLU(inplace=True),
                         nn.Conv3d(planes, 1, kernel_size=3, padding=1, stride=1, bias=False))


def upsample_cost(cost: Tensor, max_disparity: int, size: Tuple[int, int]) -> Tensor:
    """B×1×D/4×H/4×W/4 cost -> B×D×H×W logits (trilinear, ``align_corners=False``)."""
    up = F.interpolate(cost, size=(max_disparity, size[0], size[1]), mode="trilinear",
                       align_corners=False)
    return up.squeeze(1)


class ImageNormalize(nn.Module):
    """Map RGB in [0, 1] (B×3×H×W) to ImageNet-normalised values; buffers are not saved."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def check_input_pair(left: Tensor, right: Tensor, divisor: int) -> None:
    """Raise ValueError unless left/right are equal-size B×3×H×W with H, W multiples of divisor.

    Skipped while tracing/exporting (ONNX, torch.export), where shapes may be symbolic.
    """
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if left.dim() != 4 or left.shape[1] != 3:
        raise ValueError(f"left image must be B×3×H×W, got shape {tuple(left.shape)}")
    if right.shape != left.shape:
        raise ValueError(f"left/right shape mismatch: {tuple(left.shape)} vs {tuple(right.shape)}")
    h, w = int(left.shape[-2]), int(left.shape[-1])
    if h % divisor or w % divisor:
        raise ValueError(f"input size {h}x{w} is not a multiple of size_divisor {divisor}; "
                         "pad with dtp_stereo.preprocess.InputPadder")


def soft_argmax(prob: Tensor) -> Tensor:
    """Expected disparity ``sum_d p_d * d`` over dim 1 of a B×D×H×W probability volume -> B×H×W.

    Computed as one matrix product of the weights 0..D-1 with the B×D×(H·W) volume (2.6-12.6×
    faster on CPU than multiply-then-sum, docs/results/op-timings.json; a plain MatMul in
    ONNX/TensorRT), in float32 even under autocast: in float16 the products of up to D-1 would
    lose ~0.1 px.
    """
    b, num, h, w = prob.shape
    with torch.autocast(device_type=prob.device.type, enabled=False):
        p = prob if prob.dtype == torch.float32 else prob.float()
        weight = torch.arange(num, dtype=p.dtype, device=p.device).view(1, 1, num)
        disp = torch.matmul(weight, p.reshape(b, num, h * w)).view(b, h, w)
    return disp if prob.dtype == torch.float32 else disp.to(prob.dtype)


def window_confidence(prob: Tensor, radius: int = 2) -> Tensor:
    """Probability mass within ``radius`` disparities of the argmax: B×D×H×W -> B×H×W in [0, 1].

    Gathers the 2·radius+1 planes around the argmax (those inside 0..D-1) instead of masking
    all D planes.
    """
    peak = torch.max(prob, dim=1, keepdim=True)[1]  # B×1×H×W (2× faster than argmax on CPU)
    return _window_mass(prob, peak, radius)


def _window_mass(volume: Tensor, peak: Tensor, radius: int) -> Tensor:
    """Sum over the planes of B×D×H×W ``volume`` within ``radius`` of the B×1×H×W plane index
    ``peak`` (those inside 0..D-1) -> B×H×W."""
    num = volume.shape[1]
    offsets = torch.arange(-radius, radius + 1, device=volume.device).view(1, -1, 1, 1)
    index = peak + offsets  # B×(2r+1)×H×W
    inside = ((index >= 0) & (index < num)).to(volume.dtype)
    # Max/Min rather than clamp: clamp exports as an integer Clip, which TensorRT's parser may
    # not take; elementwise Max/Min on integers it does
    low = torch.zeros((), dtype=index.dtype, device=index.device)
    safe = torch.minimum(torch.maximum(index, low), low + (num - 1))
    window = torch.gather(volume, 1, safe)
    return torch.sum(window * inside, dim=1)


def regress(logits: Tensor, radius: int = 2) -> Tuple[Tensor, Tensor]:
    """Softmax over dim 1, then (soft-argmax disparity, window confidence), both B×H×W.

    In an ONNX export it is written as :func:`regress_unnormalised` (the same values to float
    rounding, and faster in ONNX Runtime on CPU); eager PyTorch normalises the volume first
    (its softmax kernel is fast, and the unnormalised form is not faster there). ONNX's own
    ``Softmax`` over a non-last axis of a 4-D tensor is very slow in ONNX Runtime (499 of 554 ms
    of a full-head student at 256×512, docs/results/ort-profile-plain-softmax.json).
    """
    if torch.onnx.is_in_onnx_export():
        return regress_unnormalised(logits, radius)
    prob = F.softmax(logits, dim=1)
    return soft_argmax(prob), window_confidence(prob, radius)


def regress_unnormalised(logits: Tensor, radius: int = 2) -> Tuple[Tensor, Tensor]:
    """:func:`regress` without normalising the B×D×H×W volume: the softmax's divisions happen
    on the B×H×W results instead.

    ``e = exp(logits - logits[argmax])``; one matrix product of the 2×D weights
    ``[0..D-1; 1..1]`` with the B×D×(H·W) volume gives ``sum_d d·e_d`` and ``sum_d e_d``
    together, so disparity = their ratio (pixels) and confidence = (mass of ``e`` within
    ``radius`` planes of the argmax) / ``sum_d e_d``. The maximum is gathered at the argmax
    rather than reduced again. Softmax-then-regress reduces over D four times and divides every
    plane: in the default's 640×480 graph its ReduceMax (2.5 ms), ReduceSum (2.4 ms) and Div
    (1.5 ms) are gone or shrink to 0.1 and 0.9 ms (docs/results/ort-profile-640x480-pruned*.json).
    """
    b, num, h, w = logits.shape
    peak = torch.argmax(logits, dim=1, keepdim=True)  # B×1×H×W
    expo = torch.exp(logits - torch.gather(logits, 1, peak).detach())  # B×D×H×W, max plane 1
    weights = torch.stack((torch.arange(num, dtype=expo.dtype, device=expo.device),
                           torch.ones(num, dtype=expo.dtype, device=expo.device))).view(1, 2, num)
    sums = torch.matmul(weights, expo.reshape(b, num, h * w)).view(b, 2, h, w)
    disparity = sums[:, 0] / sums[:, 1]
    return disparity, _window_mass(expo, peak, radius) / sums[:, 1]


class Hourglass2D(nn.Module):
    """2D encoder-decoder (PSMNet hourglass, 2D convs, explicit widths): 1/4 -> 1/16 -> 1/4.

    ``conv1`` (stride 2) -> ``conv2`` -> ``conv3`` (stride 2) -> ``conv4`` -> ``conv5``
    (ConvTranspose2d, + ``conv2`` skip) -> ``conv6`` (ConvTranspose2d, + input skip).
    Input and output are B×C×H×W with H and W multiples of 4.

    Args:
        channels: input/output width C (coupled by the residual add).
        widths: (h1, h2, h3, h4) output widths of conv1..conv4; conv5 outputs h2 (skip add).
    """

    def __init__(self, channels: int, widths: Tuple[int, int, int, int]) -> None:
        super().__init__()
        h1, h2, h3, h4 = widths
        self.conv1 = nn.Sequential(convbn(channels, h1, 3, 2, 1), nn.ReLU(inplace=True))
        self.conv2 = convbn(h1, h2, 3, 1, 1)
        self.conv3 = nn.Sequential(convbn(h2, h3, 3, 2, 1), nn.ReLU(inplace=True))
        self.conv4 = nn.Sequential(convbn(h3, h4, 3, 1, 1), nn.ReLU(inplace=True))
        self.conv5 = nn.Sequential(
            nn.ConvTranspose2d(h4, h2, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(h2))
        self.conv6 = nn.Sequential(
            nn.ConvTranspose2d(h2, channels, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        # in-place ReLUs on fresh tensors: no extra feature-map allocation, same gradients
        pre = F.relu(self.conv2(self.conv1(x)), inplace=True)
        post = F.relu(self.conv5(self.conv4(self.conv3(pre))) + pre, inplace=True)
        return F.relu(self.conv6(post) + x, inplace=True)
