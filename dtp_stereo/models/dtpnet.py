"""DTPnet: the 2D-only lightweight student of "Distill-Then-Prune" (arXiv 2405.11809).

Pipeline (all 2D ops, so it exports to ONNX/TensorRT without Conv3d or 5-D tensors):

1. Siamese feature extractor: a 3-conv stem (1/2), two residual stages (1/4, 1/8), the 1/8 map
   upsampled ×2 and concatenated with the 1/4 map (2-level pyramid, no SPP), fused to
   ``fuse[1]`` channels at 1/4 resolution.
2. Channel-to-disparity: concat(left, right) along channels, then conv-BN-ReLU layers (first 1×1,
   then 3×3) to ``c2d[-1]`` planes (default D/4) -- one shot, no per-disparity loop or shifting.
   Optional (``correlation > 0``, off by default): D/4 correlation planes of features projected to
   ``correlation`` channels are concatenated to the c2d input (:class:`ShiftCorrelation`; exported
   as one row-wise matrix product and a reshape, so the graph stays static, with no Loop or 3D
   op); it makes matching much easier to learn (see docs/results.md: the pure c2d student
   stayed at a constant-predictor EPE on a CPU budget).
3. 2D aggregation: conv-BN-ReLU layers, one 2D hourglass, a conv to D logits at 1/4 resolution.
4. Head ``"full"``: logits upsampled ×4 (bilinear) to B×D×H×W, softmax over D, soft-argmax.
   Head ``"fast"``: softmax + soft-argmax at 1/4 resolution, then the B×H/4×W/4 disparity is
   upsampled ×4 (bilinear). In both heads logit plane ``d`` (d = 0..D-1) means a full-resolution
   disparity of ``d`` pixels (unless item 6 sets fewer planes), so the two heads differ only in
   where the bilinear upsampling happens and the fast head's values need no rescaling.
5. Optional (``refine`` widths, fast head only, off by default): :class:`EdgeRefine`, a light
   image-guided residual at 1/2 resolution (StereoNet-style): the fast head's disparity is
   upsampled ×2, a few conv-BN-ReLU layers see it with the half-size left image and add a
   correction (pixels), then it is upsampled ×2 again. Its last conv starts at zero, so adding
   it to a trained model changes nothing until it is trained; it sharpens depth edges that the
   1/4-resolution regression blurs.
6. Optional (``disparity_planes`` < D, fast head only): the quarter-resolution logits hold
   fewer planes, evenly spaced over 0..D-1 pixels (plane j means ``j·(D-1)/(P-1)`` pixels), so
   the logit conv, the correlation-to-logit conv and every op of the regression over the
   volume (ArgMax, Exp, the matrix product) shrink by D/P; the soft-argmax still gives
   sub-plane disparities. At D/4 planes the volume has one plane per correlation shift.
7. Optional (``upsample`` widths, fast head only, off by default; not with ``refine``):
   :class:`ConvexUpsample`, a learned ×4 convex upsampling (RAFT / RAFT-Stereo): each
   full-resolution pixel is a softmax-weighted mix of the 3×3 quarter-resolution disparities
   around it, the weights predicted from the left features and the aggregated volume. It starts
   as bilinear upsampling, so adding it to a trained model changes (almost) nothing until it is
   trained; trained, a pixel beside a depth edge can take its own side's disparity instead of
   bilinear's mix of both sides. With ``upsample_offset`` it also adds a learned per-pixel
   correction (pixels, zero at first), which can place a pixel between the coarse planes.

Every conv width lives in :class:`DTPNetConfig`; :func:`config_from_module` reads them back
from a (pruned) model so it can be rebuilt from its checkpoint config alone.
"""

from dataclasses import dataclass, fields
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._registry import register_model
from .layers import (Hourglass2D, ImageNormalize, check_input_pair, convbn, convbn_of_concat,
                     make_layer, regress)
from .output import StereoOutput

__all__ = ["ConvexUpsample", "DTPNet", "DTPNetConfig", "EdgeRefine", "ShiftCorrelation",
           "bilinear_mask_logits", "config_from_module", "sheared_correlation"]

_HEADS = ("full", "fast")


@dataclass(frozen=True)
class DTPNetConfig:
    """DTPnet architecture; every conv output width is explicit (widths in channels)."""

    max_disparity: int = 192  # D, pixels; number of logit planes
    head: str = "full"  # "full" (upsample logits) or "fast" (regress at 1/4, upsample disparity)
    stem: Tuple[int, ...] = (32, 32, 32)  # stem conv widths; the first conv has stride 2
    layer1_mids: Tuple[int, ...] = (32,)  # inner width of each residual block of stage 1 (1/4)
    layer1_out: int = 32  # stage-1 output width (shared by its blocks via residual adds)
    layer2_mids: Tuple[int, ...] = (64,)  # inner widths of stage-2 blocks (1/8)
    layer2_out: int = 64  # stage-2 output width
    fuse: Tuple[int, int] = (32, 32)  # 3×3 conv-BN-ReLU width, then 1×1 conv = feature width
    c2d: Tuple[int, ...] = (48, 48)  # channel-to-disparity widths; last = cost planes (D/4)
    pre: Tuple[int, ...] = (48,)  # conv-BN-ReLU widths before the hourglass; last = C
    hourglass: Tuple[int, int, int, int] = (96, 96, 96, 96)  # hourglass conv1..conv4 widths
    classifier: int = 32  # conv-BN-ReLU width before the final conv to D logits
    correlation: int = 0  # channels correlated over D/4 shifts into the c2d input; 0 = off
    # correlate unit-length features (parameter-free L2 normalisation over the ``correlation``
    # channels): each plane is then a cosine similarity in [-1, 1]
    correlation_norm: bool = False
    refine: Tuple[int, ...] = ()  # EdgeRefine conv widths at 1/2 resolution (fast head); () = off
    upsample: Tuple[int, ...] = ()  # ConvexUpsample conv widths at 1/4 (fast head); () = bilinear
    # logit planes P at 1/4 resolution, evenly spaced over 0..D-1 px (fast head); 0 = D planes
    disparity_planes: int = 0
    # ConvexUpsample also predicts a per-pixel additive correction (pixels) of its convex mix
    upsample_offset: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):  # JSON gives lists: normalise to tuples of ints
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(int(x) for x in v))
        if self.head not in _HEADS:
            raise ValueError(f"DTPNetConfig.head must be one of {_HEADS}, got {self.head!r}")
        if self.max_disparity < 4:
            raise ValueError(f"DTPNetConfig.max_disparity must be >= 4, got {self.max_disparity}")
        if self.refine and self.head != "fast":
            raise ValueError("DTPNetConfig.refine needs head='fast' (it refines the fast head's "
                             "disparity)")
        if self.upsample and self.head != "fast":
            raise ValueError("DTPNetConfig.upsample needs head='fast' (it upsamples the fast "
                             "head's disparity)")
        if self.disparity_planes and self.head != "fast":
            raise ValueError("DTPNetConfig.disparity_planes needs head='fast' (the full head "
                             "upsamples one logit plane per pixel of disparity)")
        if self.disparity_planes and not 2 <= self.disparity_planes <= self.max_disparity:
            raise ValueError(f"DTPNetConfig.disparity_planes must be 0 (= max_disparity) or in "
                             f"2..{self.max_disparity}, got {self.disparity_planes}")
        if self.upsample and self.refine:
            raise ValueError("DTPNetConfig: upsample and refine are alternatives; set one")
        if self.upsample_offset and not self.upsample:
            raise ValueError("DTPNetConfig.upsample_offset needs upsample widths (it corrects "
                             "the convex upsampling)")
        for name in ("stem", "layer1_mids", "layer2_mids", "c2d", "pre"):
            if len(getattr(self, name)) < 1:
                raise ValueError(f"DTPNetConfig.{name} needs at least one width")
        if self.correlation < 0:
            raise ValueError(f"DTPNetConfig.correlation must be >= 0, got {self.correlation}")
        for name in ("correlation_norm", "upsample_offset"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"DTPNetConfig.{name} must be true or false, got "
                                 f"{getattr(self, name)!r}")
        if self.correlation_norm and not self.correlation:
            raise ValueError("DTPNetConfig.correlation_norm needs correlation > 0")
        if len(self.fuse) != 2 or len(self.hourglass) != 4:
            raise ValueError("DTPNetConfig: fuse needs 2 widths and hourglass 4 widths")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("correlation_norm", "upsample_offset"):
                continue
            scalar_ok = f.name in ("head", "correlation", "refine", "upsample",
                                   "disparity_planes")
            ws = v if isinstance(v, tuple) else () if scalar_ok else (v,)
            if any(int(w) < 1 for w in ws):
                raise ValueError(f"DTPNetConfig.{f.name}: widths must be >= 1, got {v}")


class DTPFeature(nn.Module):
    """Siamese 2-level pyramid feature extractor: B×3×H×W -> B×fuse[1]×H/4×W/4."""

    def __init__(self, cfg: DTPNetConfig) -> None:
        super().__init__()
        stem, cin = [], 3
        for i, w in enumerate(cfg.stem):
            stem += [convbn(cin, w, 3, 2 if i == 0 else 1, 1), nn.ReLU(inplace=True)]
            cin = w
        self.stem = nn.Sequential(*stem)
        self.layer1 = make_layer(cin, cfg.layer1_out, len(cfg.layer1_mids), 2, 1, 1,
                                 cfg.layer1_mids)
        self.layer2 = make_layer(cfg.layer1_out, cfg.layer2_out, len(cfg.layer2_mids), 2, 1, 1,
                                 cfg.layer2_mids)
        self.fuse = nn.Sequential(
            convbn(cfg.layer1_out + cfg.layer2_out, cfg.fuse[0], 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(cfg.fuse[0], cfg.fuse[1], 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        x4 = self.layer1(self.stem(x))
        x8 = self.layer2(x4)
        up = F.interpolate(x8, scale_factor=2.0, mode="bilinear", align_corners=False)
        if torch.onnx.is_in_onnx_export():  # no concatenation in the graph (convbn_of_concat)
            return self.fuse[1:](convbn_of_concat(self.fuse[0], (F.relu(x4), F.relu(up))))
        return self.fuse(F.relu(_cat(x4, up), inplace=True))  # eagerly: one in-place ReLU


def _cat(a: Tensor, b: Tensor) -> Tensor:
    return torch.cat((a, b), dim=1)


class ShiftCorrelation(nn.Module):
    """Correlation planes of two feature maps over ``shifts`` horizontal shifts.

    ``forward(left, right)``: B×C×h×w each -> B×n×h×w where plane i is
    ``mean_c left_c(x) * right_c(x - i)`` (zero where x < i), i = 0..n-1 (pixels at this scale).

    Eager PyTorch zero-pads the right features by n-1 columns once; each shift is then a slice
    (a view) of that padded map, a product and a channel mean, unrolled over the n shifts. An
    ONNX export writes :func:`sheared_correlation` instead (a row-wise matrix product and a
    reshape; no Loop, no 3D op): the unrolled form costs 3n nodes, each copying or reducing a
    B×C×h×w map (the default's 640×480 graph, C = 16, n = 48: 14.0 ms of Slice/Mul/ReduceMean
    against a 3.7 ms MatMul and a 1.0 ms slice, docs/results/ort-profile-640x480-pruned*.json),
    while eagerly the views make it the faster one. Both replace an earlier formulation with
    fixed-weight convolutions (a one-hot depthwise 1×n conv, a depthwise 1×1 repeat and a 1×1
    sum over C·n channels): same values, but 16× slower on CPU (docs/results/op-timings.json).
    It has no parameters, so checkpoints are unaffected.
    """

    def __init__(self, channels: int, shifts: int) -> None:
        super().__init__()
        self.channels, self.shifts = int(channels), int(shifts)

    def forward(self, left: Tensor, right: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            return sheared_correlation(left, right, self.shifts)
        n, width = self.shifts, left.shape[3]
        padded = F.pad(right, (n - 1, 0))  # column n-1+x of padded = column x of right
        planes = [torch.mean(left * padded[..., n - 1 - i:n - 1 - i + width], dim=1, keepdim=True)
                  for i in range(n)]
        return torch.cat(planes, dim=1)


def sheared_correlation(left: Tensor, right: Tensor, shifts: int) -> Tensor:
    """:class:`ShiftCorrelation`'s planes from one matrix product per image row.

    With ``W = w + n - 1`` and ``q`` the right features zero-padded to W columns and mirrored
    (``q[k] = right[W-1-k]``), the row product ``a[x, k] = mean_c left[x]·q[k]`` holds every
    correlation; the wanted ``left[x]·right[x-i] = a[x, W-1-x+i]`` lies at flat offset
    ``(x+1)·(W-1) + i`` of the row's flattened ``a``. Giving ``left`` n-2 zero columns first
    makes ``a`` (w+n-2)×W, which reads exactly as (w+n-1) rows of W-1, so shift i of column x is
    entry (x+1, i) of that view: one slice of the small B×h×w×n result, no copy of ``a`` (entries
    with x < i read zeros of the padding). B×C×h×w each -> B×n×h×w; needs ``w >= 2``.
    """
    n = int(shifts)
    if n < 2:
        return torch.mean(left * right, dim=1, keepdim=True)
    b, c, h, w = left.shape
    full = w + n - 1
    rows = F.pad(left * (1.0 / c), (0, n - 2)).permute(0, 2, 3, 1)  # B×h×(w+n-2)×C
    mirrored = torch.flip(F.pad(right, (0, n - 1)), dims=[3]).permute(0, 2, 1, 3)  # B×h×C×W
    view = torch.matmul(rows, mirrored).reshape(b, h, full, full - 1)
    return view[..., :n][:, :, 1:w + 1].permute(0, 3, 1, 2)  # columns first: smaller copies


class EdgeRefine(nn.Module):
    """Image-guided disparity residual at 1/2 resolution (fast head only).

    ``forward(disp_q, image)``: B×H/4×W/4 disparity (pixels) and the B×3×H×W normalised left
    image -> B×H×W refined disparity (pixels, >= 0). The disparity is upsampled ×2 (bilinear),
    concatenated (divided by D) with the 2×2-average-pooled image, passed through conv-BN-ReLU
    layers of ``widths`` (the second and later dilated by 2) and a zero-initialised 3×3 conv to
    one residual plane (pixels); the sum is upsampled ×2 to the input size.
    """

    def __init__(self, widths: Tuple[int, ...], max_disparity: int) -> None:
        super().__init__()
        layers, cin = [], 4
        for i, w in enumerate(widths):
            layers += [convbn(cin, w, 3, 1, 1, dilation=2 if i else 1), nn.ReLU(inplace=True)]
            cin = w
        self.body = nn.Sequential(*layers)
        self.residual = nn.Conv2d(cin, 1, 3, 1, 1, bias=False)
        nn.init.zeros_(self.residual.weight)
        self.inv_scale = 1.0 / float(max_disparity)

    def forward(self, disp_q: Tensor, image: Tensor) -> Tensor:
        half = F.interpolate(disp_q[:, None], scale_factor=2.0, mode="bilinear",
                             align_corners=False)
        guide = F.avg_pool2d(image, 2)
        x = self.body(_cat(half * self.inv_scale, guide))
        refined = F.relu(half + self.residual(x))
        return F.interpolate(refined, scale_factor=2.0, mode="bilinear",
                             align_corners=False)[:, 0]


def bilinear_mask_logits(factor: int = 4, floor: float = 1e-3) -> Tensor:
    """Mask logits (9·factor² values, neighbour-major) that make :class:`ConvexUpsample` a
    bilinear ×``factor`` upsampling (``align_corners=False``) up to ``floor``.

    Entry ``k·factor² + sy·factor + sx`` is ``log(w + floor)`` of the bilinear weight ``w`` that
    sub-pixel (sy, sx) gives neighbour k = 3·(dy+1) + (dx+1) of its quarter-resolution pixel;
    ``floor`` keeps every weight positive (the softmax of these logits is ``(w + floor) /
    (1 + 9·floor)``), so a neighbour bilinear ignores can still learn a weight.
    """
    offsets = (torch.arange(factor, dtype=torch.float64) + 0.5) / factor - 0.5  # sub-pixel
    taps = torch.arange(-1, 2, dtype=torch.float64)
    w1 = (1.0 - (offsets[None, :] - taps[:, None]).abs()).clamp(min=0.0)  # 3 taps × factor
    w2 = w1[:, None, :, None] * w1[None, :, None, :]  # dy, dx, sy, sx
    return torch.log(w2 + floor).reshape(9 * factor * factor).float()


class ConvexUpsample(nn.Module):
    """Learned ×4 convex upsampling of the fast head's disparity (RAFT, Teed & Deng 2020).

    ``forward(disp_q, *context)``: B×H/4×W/4 disparity (pixels) and B×C_i×H/4×W/4 context
    features (concatenated over channels, C = ΣC_i) -> B×H×W disparity (pixels). Conv-BN-ReLU
    layers of ``widths`` (3×3) and a 1×1 conv give 9 mask logits per full-resolution pixel
    (B×144×H/4×W/4, neighbour-major); their softmax over the 9 neighbours weights the 3×3
    quarter-resolution disparities around the pixel (edge
    replicated at the borders), so every output is a convex mix of nearby values: it never
    overshoots. The 1×1 conv starts with zero weights and :func:`bilinear_mask_logits` as bias:
    bilinear upsampling to within about 1e-3 of the local disparity spread. Written with
    slices, elementwise ops and ``pixel_shuffle`` (ONNX DepthToSpace): 4-D tensors only.

    With ``offset=True`` a second 1×1 conv on the same features adds a correction (pixels) to
    each full-resolution pixel's convex mix (B×16×h×w before ``pixel_shuffle``), and the sum
    is clipped at 0: it can place a pixel between the quarter-resolution values, which coarse
    ``disparity_planes`` quantise. It starts at zero (weights and bias), so adding it to a
    trained model changes nothing until it is trained.
    """

    factor = 4

    def __init__(self, in_channels: int, widths: Tuple[int, ...], offset: bool = False) -> None:
        super().__init__()
        self.body = _convbn_relu_stack(in_channels, widths, 3)
        cin = widths[-1] if widths else in_channels
        self.mask = nn.Conv2d(cin, 9 * self.factor ** 2, 1, bias=True)
        nn.init.zeros_(self.mask.weight)
        with torch.no_grad():
            self.mask.bias.copy_(bilinear_mask_logits(self.factor))
        self.offset = nn.Conv2d(cin, self.factor ** 2, 1, bias=True) if offset else None
        if self.offset is not None:
            nn.init.zeros_(self.offset.weight)
            nn.init.zeros_(self.offset.bias)

    def forward(self, disp_q: Tensor, *context: Tensor) -> Tensor:
        hidden = self.body[1:](convbn_of_concat(self.body[0], context)) if len(self.body) else \
            (context[0] if len(context) == 1 else torch.cat(context, dim=1))
        logits = self.mask(hidden)  # B×(9·16)×h×w
        h, w = disp_q.shape[-2:]
        padded = F.pad(disp_q[:, None], (1, 1, 1, 1), mode="replicate")  # B×1×(h+2)×(w+2)
        s2 = self.factor ** 2
        groups = [logits[:, k * s2:(k + 1) * s2] for k in range(9)]  # 9 × B×16×h×w
        peak = groups[0]
        for g in groups[1:]:
            peak = torch.maximum(peak, g)
        num = torch.zeros_like(peak)
        den = torch.zeros_like(peak)
        for k, g in enumerate(groups):
            dy, dx = divmod(k, 3)
            e = torch.exp(g - peak)
            num = num + e * padded[:, :, dy:dy + h, dx:dx + w]
            den = den + e
        mixed = num / den  # B×16×h×w, sub-pixel-major: one value per full-resolution pixel
        if self.offset is not None:
            mixed = F.relu(mixed + self.offset(hidden))
        return F.pixel_shuffle(mixed, self.factor)[:, 0]


def _convbn_relu_stack(cin: int, widths: Tuple[int, ...], first_kernel: int) -> nn.Sequential:
    mods = []
    for i, w in enumerate(widths):
        k = first_kernel if i == 0 else 3
        mods += [convbn(cin, w, k, 1, k // 2), nn.ReLU(inplace=True)]
        cin = w
    return nn.Sequential(*mods)


class DTPNet(nn.Module):
    """DTPnet student. ``forward(left, right)`` takes B×3×H×W RGB in [0, 1], H, W multiples of 16.

    Returns a :class:`StereoOutput`: ``disparity`` B×H×W (pixels, in [0, D-1]), ``logits``
    B×D×H×W (full head) or ``None`` (fast head), ``confidence`` B×H×W (softmax mass within ±2
    disparities of the argmax; with coarser ``disparity_planes``, within the planes nearest
    ±2 pixels, at least ±1 plane), ``intermediates``: ``features`` / ``features_right``
    (B×fuse[1]×H/4×W/4), ``cost_volume`` (B×c2d[-1]×H/4×W/4), ``logits_quarter``
    (B×P×H/4×W/4, P = ``planes``).
    """

    size_divisor = 16

    def __init__(self, config: DTPNetConfig) -> None:
        super().__init__()
        self.config = config
        self.max_disparity = int(config.max_disparity)
        self.planes = int(config.disparity_planes or config.max_disparity)  # P logit planes
        self.plane_step = (self.max_disparity - 1) / (self.planes - 1)  # pixels per plane
        self.confidence_radius = max(1, round(2.0 / self.plane_step))  # planes
        self.normalize = ImageNormalize()
        self.feature = DTPFeature(config)
        n_corr = config.max_disparity // 4 if config.correlation > 0 else 0
        if n_corr:
            # BN keeps the projected features at unit scale, so products (correlations) are O(1)
            self.corr_proj = convbn(config.fuse[1], config.correlation, 1, 1, 0)
            self.correlate = ShiftCorrelation(config.correlation, n_corr)
            # learnable 1×1 conv from the D/4 correlation planes (shift i = 4i pixels) to the P
            # logits, initialised to copy to each logit plane the shift at or below its
            # disparity (D planes: plane i to logits 4i..4i+3): the 2D net then learns a
            # residual over matching
            self.corr_logits = nn.Conv2d(n_corr, self.planes, 1, bias=False)
            with torch.no_grad():
                shift = torch.floor(torch.arange(self.planes) * self.plane_step / 4.0 + 1e-6)
                init = torch.zeros(self.planes, n_corr)
                init[torch.arange(self.planes), shift.long().clamp(max=n_corr - 1)] = 1.0
                self.corr_logits.weight.copy_(init.view(self.planes, n_corr, 1, 1))
        self.c2d = _convbn_relu_stack(2 * config.fuse[1] + n_corr, config.c2d, 1)
        self.pre = _convbn_relu_stack(config.c2d[-1], config.pre, 3)
        self.hourglass = Hourglass2D(config.pre[-1], config.hourglass)
        self.classifier = nn.Sequential(
            convbn(config.pre[-1], config.classifier, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(config.classifier, self.planes, 3, 1, 1, bias=False))
        self.refine = EdgeRefine(config.refine, config.max_disparity) if config.refine else None
        self.upsample = ConvexUpsample(config.fuse[1] + config.pre[-1], config.upsample,
                                       config.upsample_offset) if config.upsample else None

    def prune_ignored_layers(self) -> list:
        """Convs whose output widths are fixed by the architecture, never to be pruned: the
        channel-to-disparity output (D/4 planes), the P-logit conv, the correlation projection,
        the refinement's one-plane residual conv and the upsampling's 144-logit mask conv (and
        its 16-plane offset conv).
        """
        convs = [m for m in self.c2d.modules() if isinstance(m, nn.Conv2d)]
        layers = [convs[-1], self.classifier[2]]
        if self.config.correlation > 0:
            layers += [self.corr_proj[0], self.corr_logits]
        if self.refine is not None:
            layers.append(self.refine.residual)
        if self.upsample is not None:
            layers.append(self.upsample.mask)
            if self.upsample.offset is not None:
                layers.append(self.upsample.offset)
        return layers

    def forward(self, left: Tensor, right: Tensor) -> StereoOutput:
        check_input_pair(left, right, self.size_divisor)
        left_n = self.normalize(left)
        feat_l = self.feature(left_n)
        feat_r = self.feature(self.normalize(right))
        pair = [feat_l, feat_r]  # the c2d input, concatenated over channels
        corr = None
        if self.config.correlation > 0:  # optional correlation planes, B×D/4×H/4×W/4
            proj_l, proj_r = self.corr_proj(feat_l), self.corr_proj(feat_r)
            if self.config.correlation_norm:  # unit length × sqrt(C): channel mean = cosine
                scale = float(self.config.correlation) ** 0.5
                proj_l = F.normalize(proj_l, dim=1, eps=1e-6) * scale
                proj_r = F.normalize(proj_r, dim=1, eps=1e-6) * scale
            corr = self.correlate(proj_l, proj_r)
            pair.append(corr)
        volume = self.c2d[1:](convbn_of_concat(self.c2d[0], pair))  # B×c2d[-1]×H/4×W/4
        aggregated = self.hourglass(self.pre(volume))  # B×pre[-1]×H/4×W/4
        logits_q = self.classifier(aggregated)  # B×P×H/4×W/4
        if corr is not None:
            logits_q = logits_q + self.corr_logits(corr)
        inter = {"features": feat_l, "features_right": feat_r, "cost_volume": volume,
                 "logits_quarter": logits_q}
        if self.config.head == "full":
            logits = F.interpolate(logits_q, scale_factor=4.0, mode="bilinear",
                                   align_corners=False)
            disp, conf = regress(logits)
            return StereoOutput(disp, logits, conf, (), inter)
        disp_q, conf_q = regress(logits_q, self.confidence_radius)  # disparity in plane units
        if self.planes != self.max_disparity:  # plane j = j·step full-resolution pixels
            disp_q = disp_q * self.plane_step
        if self.refine is not None or self.upsample is not None:  # a learned full-size disparity
            conf = F.interpolate(conf_q[:, None], scale_factor=4.0, mode="bilinear",
                                 align_corners=False)[:, 0]
            disp = self.refine(disp_q, left_n) if self.refine is not None else \
                self.upsample(disp_q, feat_l, aggregated)
            return StereoOutput(disp, None, conf, (), inter)
        both = F.interpolate(torch.stack((disp_q, conf_q), dim=1), scale_factor=4.0,
                             mode="bilinear", align_corners=False)  # one resize for both maps
        return StereoOutput(both[:, 0], None, both[:, 1], (), inter)


def _width(seq: nn.Module) -> int:
    """Output width of a convbn Sequential (its first module is the conv)."""
    return int(seq[0].out_channels)


def config_from_module(model: DTPNet) -> DTPNetConfig:
    """Read the current conv widths of a (possibly pruned) DTPNet into a new config."""
    if not isinstance(model, DTPNet):
        raise TypeError(f"config_from_module expects a DTPNet, got {type(model).__name__}")
    f = model.feature
    stem = tuple(_width(m) for m in f.stem if isinstance(m, nn.Sequential))
    hg = model.hourglass
    logits_conv = model.classifier[2]
    if logits_conv.out_channels != model.planes:
        raise ValueError(f"the logit conv has {logits_conv.out_channels} outputs but the model "
                         f"has {model.planes} disparity planes: it must not be pruned")
    return DTPNetConfig(
        max_disparity=model.max_disparity,
        head=model.config.head,
        stem=stem,
        layer1_mids=tuple(_width(b.conv1[0]) for b in f.layer1),
        layer1_out=_width(f.layer1[0].conv2),
        layer2_mids=tuple(_width(b.conv1[0]) for b in f.layer2),
        layer2_out=_width(f.layer2[0].conv2),
        fuse=(_width(f.fuse[0]), int(f.fuse[2].out_channels)),
        c2d=tuple(_width(m) for m in model.c2d if isinstance(m, nn.Sequential)),
        pre=tuple(_width(m) for m in model.pre if isinstance(m, nn.Sequential)),
        hourglass=(_width(hg.conv1[0]), _width(hg.conv2), _width(hg.conv3[0]),
                   _width(hg.conv4[0])),
        classifier=_width(model.classifier[0]),
        correlation=model.config.correlation,
        correlation_norm=model.config.correlation_norm,
        refine=() if model.refine is None else tuple(
            _width(m) for m in model.refine.body if isinstance(m, nn.Sequential)),
        upsample=() if model.upsample is None else tuple(
            _width(m) for m in model.upsample.body if isinstance(m, nn.Sequential)),
        disparity_planes=model.config.disparity_planes,
        upsample_offset=model.upsample is not None and model.upsample.offset is not None,
    )


@register_model("dtpnet")
def _create_dtpnet(**cfg) -> DTPNet:
    return DTPNet(DTPNetConfig(**cfg))
