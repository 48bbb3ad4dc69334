"""DepGraph structured pruning of the student (the only module that imports torch_pruning).

The target is a fraction of PARAMETERS removed. Torch-Pruning's ``pruning_ratio`` is a channel
ratio, so :func:`search_channel_ratio` bisects it: with local (per-group) pruning the remaining
channel counts depend only on the ratio, ``round_to`` and the number of steps, never on the
weights, so simulating the schedule on a copy gives the exact final parameter count.

The disparity head is never pruned: the channel-to-disparity output conv (D/4 planes) and the
D-logit conv go to ``ignored_layers``. After pruning, the model is rebuilt from
``config_from_module`` as a plain model, loaded strictly and checked to give the same outputs,
so the saved checkpoint needs no torch-pruning at run time.
"""

import copy
import dataclasses
import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch_pruning as tp
from torch import Tensor, nn

from dtp_stereo.complexity import count_macs, count_parameters
from dtp_stereo.models import build_model, eval_mode
from training.config import PruneCfg

_LOG = logging.getLogger(__name__)
Example = Tuple[Tensor, Tensor]


@dataclass
class PruneResult:
    """Outcome of :func:`prune_model`.

    Attributes:
        model: the rebuilt plain model (fresh ``build_model`` from ``config``, pruned weights).
        config: the model's config dataclass read back with ``config_from_module``.
        channel_ratio: the torch-pruning channel ratio used.
        params_before, params_after: parameter counts.
        macs_before, macs_after: conv-only MACs at the example size.
        max_abs_diff: max |pruned - rebuilt| disparity on the example input, pixels.
        steps: per-step ``{"step", "params", "macs"}`` records.
    """

    model: nn.Module
    config: Any
    channel_ratio: float
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    max_abs_diff: float
    steps: List[Dict[str, float]] = field(default_factory=list)

    @property
    def param_reduction(self) -> float:
        """Fraction of parameters removed."""
        return 1.0 - self.params_after / self.params_before

    def summary(self) -> Dict[str, Any]:
        """JSON-able provenance record."""
        return {"channel_ratio": self.channel_ratio, "params_before": self.params_before,
                "params_after": self.params_after, "macs_before": self.macs_before,
                "macs_after": self.macs_after, "param_reduction": self.param_reduction,
                "max_abs_diff_px": self.max_abs_diff, "steps": list(self.steps)}


def _convs(module: nn.Module) -> List[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]


def head_layers(model: nn.Module) -> List[nn.Module]:
    """The convs whose output widths are fixed by D: cost planes (D/4) and D logits.

    A model may define ``prune_ignored_layers()``; otherwise DTPnet's layout is used
    (the last conv of ``model.c2d`` and the last conv of ``model.classifier``).

    Raises:
        ValueError: the model exposes neither.
    """
    if hasattr(model, "prune_ignored_layers"):
        return list(model.prune_ignored_layers())
    if hasattr(model, "c2d") and hasattr(model, "classifier"):
        return [_convs(model.c2d)[-1], _convs(model.classifier)[-1]]
    raise ValueError(f"cannot find the disparity head of {type(model).__name__}: give it a "
                     "prune_ignored_layers() method")


def ignored_layers(model: nn.Module, names: Sequence[str] = ()) -> List[nn.Module]:
    """Head layers plus the modules named in ``names`` (dotted ``named_modules`` names).

    Raises:
        KeyError: a name that is not a module of ``model``.
    """
    modules = dict(model.named_modules())
    extra = []
    for name in names:
        if name not in modules:
            raise KeyError(f"prune.ignored: no module {name!r} in {type(model).__name__}")
        extra.append(modules[name])
    return head_layers(model) + extra


def _trace_output(out: Any) -> Tensor:
    """A tensor with a channel dim for DepGraph tracing (logits if present, else disparity)."""
    return out.logits if out.logits is not None else out.disparity.unsqueeze(1)


def make_importance(kind: str) -> tp.importance.Importance:
    """Group magnitude importance: ``l2`` (DTP paper) or ``l1``, mean group reduction."""
    if kind not in ("l1", "l2"):
        raise ValueError(f"prune.importance must be l1 or l2, got {kind!r}")
    return tp.importance.GroupMagnitudeImportance(p=2 if kind == "l2" else 1,
                                                  group_reduction="mean")


def build_pruner(model: nn.Module, example: Example, ratio: float, cfg: PruneCfg
                 ) -> tp.pruner.BasePruner:
    """A torch-pruning BasePruner over ``model`` (local pruning, head layers ignored)."""
    return tp.pruner.BasePruner(
        model, example, importance=make_importance(cfg.importance), pruning_ratio=ratio,
        iterative_steps=cfg.iterative_steps, ignored_layers=ignored_layers(model, cfg.ignored),
        round_to=cfg.round_to or None, output_transform=_trace_output)


def simulate_reduction(model: nn.Module, example: Example, ratio: float, cfg: PruneCfg) -> float:
    """Fraction of parameters the full iterative schedule at channel ``ratio`` removes."""
    if ratio <= 0:
        return 0.0
    trial = copy.deepcopy(model).eval()
    before = count_parameters(trial)
    pruner = build_pruner(trial, example, ratio, cfg)
    for _ in range(cfg.iterative_steps):
        pruner.step()
    return 1.0 - count_parameters(trial) / before


def search_channel_ratio(model: nn.Module, example: Example, cfg: PruneCfg,
                         iterations: int = 10) -> Tuple[float, float]:
    """Channel ratio whose schedule removes the fraction of parameters closest to the target.

    Bisection over [0, ``max_channel_ratio``]; ``round_to`` makes the reduction a step function,
    so the closest of all tried ratios is returned (ties go to the smaller ratio).

    Returns:
        (channel ratio, parameter reduction it achieves). If even ``max_channel_ratio`` falls
        short, that ratio and its reduction are returned (and a warning is logged).
    """
    target = cfg.target_param_reduction
    hi = cfg.max_channel_ratio
    hi_red = simulate_reduction(model, example, hi, cfg)
    if hi_red < target:
        _LOG.warning("pruning: even channel ratio %.2f removes only %.1f %% of parameters",
                     hi, 100 * hi_red)
        return hi, hi_red
    tried = [(hi, hi_red)]
    lo = 0.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        red = simulate_reduction(model, example, mid, cfg)
        tried.append((mid, red))
        if red >= target:
            hi = mid
        else:
            lo = mid
    return min(tried, key=lambda t: (abs(t[1] - target), t[0]))


def config_from_module(model: nn.Module) -> Any:
    """The architecture's ``config_from_module`` (defined next to the model class).

    Raises:
        TypeError: the architecture cannot read its widths back.
    """
    mod = importlib.import_module(type(model).__module__)
    fn = getattr(mod, "config_from_module", None)
    if fn is None:
        raise TypeError(f"{type(model).__name__} has no config_from_module in {mod.__name__}; "
                        "it cannot be rebuilt after pruning")
    return fn(model)


def rebuild_plain(model: nn.Module, example: Example, model_name: Optional[str] = None
                  ) -> Tuple[nn.Module, Any, float]:
    """Rebuild a fresh model from the pruned one's widths, load its weights strictly, compare.

    ``model_name`` is the registry name (default: ``model.model_name``).

    Returns:
        (fresh model in eval mode, its config, max |disparity difference| in pixels).
    """
    config = config_from_module(model)
    name = model_name or getattr(model, "model_name", None)
    if name is None:
        raise TypeError(f"{type(model).__name__} has no model_name; pass model_name=")
    fresh = build_model(name, **dataclasses.asdict(config))
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.eval()
    with eval_mode(model), torch.no_grad():
        a = model(*example).disparity
        b = fresh(*example).disparity
    return fresh, config, float((a - b).abs().max())


def prune_model(model: nn.Module, example: Example, cfg: PruneCfg,
                finetune: Optional[Callable[[nn.Module, int], None]] = None,
                atol: float = 1e-5, model_name: Optional[str] = None) -> PruneResult:
    """Prune ``model`` in place to remove ``cfg.target_param_reduction`` of its parameters.

    Args:
        model: a prunable model (``config_from_module`` available, head layers findable).
        example: (left, right) 1×3×H×W tracing pair (H, W multiples of ``size_divisor``).
        cfg: pruning settings (target, steps, importance, ``round_to``, extra ignored names).
        finetune: called as ``finetune(model, step)`` after every pruning step (e.g. a few
            distillation steps); it must not replace the model's modules.
        atol: allowed |pruned - rebuilt| disparity difference, pixels.
        model_name: registry name (default: ``model.model_name``).

    Returns:
        The :class:`PruneResult` with the rebuilt plain model.

    Raises:
        RuntimeError: the rebuilt model does not reproduce the pruned one, or a head conv lost
            channels.
    """
    height, width = example[0].shape[-2:]
    heads = [(m, m.out_channels) for m in head_layers(model)]
    params_before = count_parameters(model)
    macs_before = count_macs(model, height, width)
    ratio, expected = search_channel_ratio(model, example, cfg)
    _LOG.info("pruning: channel ratio %.4f -> %.1f %% parameters removed", ratio, 100 * expected)
    with eval_mode(model):  # trace the dependency graph without BatchNorm updates
        pruner = build_pruner(model, example, ratio, cfg)
    steps: List[Dict[str, float]] = []
    for step in range(cfg.iterative_steps):
        with eval_mode(model):
            pruner.step()
            steps.append({"step": step + 1, "params": count_parameters(model),
                          "macs": count_macs(model, height, width)})
        if finetune is not None:  # in the caller's mode
            finetune(model, step)
    for conv, width_before in heads:
        if conv.out_channels != width_before:
            raise RuntimeError(f"pruning changed a disparity-head conv ({width_before} -> "
                               f"{conv.out_channels} outputs)")
    fresh, config, diff = rebuild_plain(model, example, model_name)
    if not diff <= atol:
        raise RuntimeError(f"the rebuilt plain model differs from the pruned one by {diff:.3g} px")
    return PruneResult(model=fresh, config=config, channel_ratio=ratio,
                       params_before=params_before, params_after=count_parameters(fresh),
                       macs_before=macs_before, macs_after=count_macs(fresh, height, width),
                       max_abs_diff=diff, steps=steps)
