"""Typed, frozen configuration of the distill-then-prune pipeline, loaded from YAML.

One :func:`from_dict` builds every dataclass and rejects unknown keys with a message that names
the dotted key path and the file. Dotted overrides (``distill.optim.lr=1e-4``) are applied to the
raw mapping before it is validated, so an override of a misspelt key fails the same way.
"""

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

import yaml

T = TypeVar("T")
STAGES = ("teacher", "distill", "prune", "finetune", "eval", "export")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the file."""


@dataclass(frozen=True)
class DatasetCfg:
    """One dataset: the keys of ``training.data.datasets.build_dataset`` (see its docstring for
    their meaning and defaults), typed. ``None`` = not set (the builder's default applies)."""

    name: str  # reader name (SceneFlow, KITTI, ...) or generator (synthetic, photo_layers, ...)
    root: Optional[str] = None  # dataset folder
    split: Optional[str] = None  # train | val | test
    size: Optional[int] = None  # number of samples (generators) / first N (real)
    height: Optional[int] = None  # generated image height, pixels
    width: Optional[int] = None  # generated image width, pixels
    max_disparity: Optional[int] = None  # disparity range, pixels (cross-checked with models)
    seed: Optional[int] = None  # generator base seed / hold-out seed
    augment: Any = None  # None/false, true (defaults) or a dict of AugmentConfig fields
    augment_seed: Optional[int] = None  # fixed augmentation stream
    render_pass: Optional[str] = None  # SceneFlow cleanpass | finalpass
    gt_root: Optional[str] = None  # ETH3D ground-truth folder
    val_fraction: Optional[float] = None  # hold-out fraction of real training data
    synthetic: Optional[Dict[str, Any]] = None  # extra generator keyword arguments
    fresh: Optional[bool] = None  # generators: an unbounded stream of new scenes
    textures: Optional[str] = None  # photo_layers / single_image: texture-bank folder
    photo_prob: Optional[float] = None  # photo_layers: share of photo-textured surfaces
    sources: Optional[Tuple[Dict[str, Any], ...]] = None  # mix: [{name, weight, ...}] generators

    def spec(self) -> Dict[str, Any]:
        """The ``build_dataset`` spec: the keys that are set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _dataset(value: Any) -> Optional[DatasetCfg]:
    if value is None or isinstance(value, DatasetCfg):
        return value
    return from_dict(DatasetCfg, value, "<dataset spec>")


@dataclass(frozen=True)
class DataCfg:
    """Datasets and batching (each dataset a :class:`DatasetCfg`)."""

    train: DatasetCfg = field(default_factory=lambda: DatasetCfg(name="synthetic",
                                                                 split="train"))
    val: Optional[DatasetCfg] = None  # validation spec (best.pt selection); None: no val
    # more validation splits by name (e.g. a smaller size with small disparities): each is
    # reported as ``<name>_epe`` etc., and best.pt is picked on the mean EPE of val and these
    val_extra: Dict[str, DatasetCfg] = field(default_factory=dict)
    test: Optional[DatasetCfg] = None  # test spec for the eval stage; None: use val
    num_workers: int = 0  # DataLoader worker processes (0: load in the main process)
    val_samples: int = 8  # validation images per evaluation (first N of the split)
    test_samples: int = 16  # test images in the eval stage (first N of the split)

    def __post_init__(self) -> None:  # plain dicts (built in code) become DatasetCfg
        for name in ("train", "val", "test"):
            object.__setattr__(self, name, _dataset(getattr(self, name)))
        object.__setattr__(self, "val_extra",
                           {str(k): _dataset(v) for k, v in (self.val_extra or {}).items()})
        if self.val_extra and self.val is None:
            raise ConfigError("data.val_extra needs data.val: the extra validation splits "
                              "add to the main one")


@dataclass(frozen=True)
class ModelCfg:
    """An architecture from the registry, optionally initialised from a checkpoint."""

    name: str = "dtpnet"  # registered model name (dtp_stereo.models.build_model)
    config: Dict[str, Any] = field(default_factory=dict)  # build_model keyword arguments
    checkpoint: Optional[str] = None  # dtp_stereo checkpoint to start from (skips training)
    # model_config entries replaced whenever a checkpoint of this model is loaded (every stage,
    # eval included); only options that keep the weights (e.g. {head: fast} to fine-tune a
    # full-head DTPnet with the fast head: the eval stage then scores each student stage with it)
    overrides: Dict[str, Any] = field(default_factory=dict)
    # model_config entries that ADD modules when the student is first loaded from ``checkpoint``
    # by the distill stage (e.g. {refine: [16, 16, 16]}): the checkpoint's weights are loaded and
    # only the new modules' parameters start fresh (they must start as identity, as EdgeRefine
    # does); the stage's checkpoints then hold the grown model
    extend: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimCfg:
    """AdamW optimiser, schedule and step budget of one training stage."""

    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    betas: Tuple[float, float] = (0.9, 0.999)  # AdamW betas
    batch_size: int = 2  # images per step per process
    steps: int = 0  # optimisation steps; 0 means epochs * steps_per_epoch
    epochs: int = 1  # passes over the training split (used when steps == 0)
    scheduler: str = "constant"  # constant | cosine | step | linear
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    milestones: Tuple[int, ...] = ()  # step scheduler: steps at which lr is multiplied by gamma
    gamma: float = 0.5  # step scheduler factor
    grad_clip: float = 0.0  # max gradient L2 norm (0: no clipping)


@dataclass(frozen=True)
class PointCfg:
    """One distillation point: a teacher tap, a student tap and the loss between them."""

    name: str  # unique label (used in logs)
    teacher_tap: str  # "logits", "disparity", "aux.<i>" or an intermediates key
    student_tap: str  # same vocabulary as teacher_tap
    loss: str = "logits_l1"  # see training.losses.POINT_LOSSES
    weight: float = 1.0  # weight of this term in the total loss
    adapter: str = "auto"  # auto (1x1 conv if channels differ) | conv (always) | none


@dataclass(frozen=True)
class DistillCfg:
    """What the student learns from: ground truth, the teacher, or both."""

    supervision: str = "teacher"  # gt | teacher | both
    gt_weight: float = 1.0  # weight of the ground-truth disparity loss
    gt_loss: str = "smooth_l1"  # smooth_l1 | l1 (masked 0 < gt < max_disparity)
    aux_weights: Tuple[float, ...] = (0.5, 0.7, 1.0)  # weights of aux... and final disparity
    points: Tuple[PointCfg, ...] = (
        PointCfg(name="logits", teacher_tap="logits", student_tap="logits"),)
    temperature_start: float = 1.0  # T at epoch 0
    temperature_end: float = 1.0  # T at the last epoch
    temperature_schedule: str = "linear"  # linear | exponential
    decay_epochs: Tuple[int, ...] = ()  # DSN step decay: point weights / decay_factor at each
    decay_factor: float = 10.0  # divisor applied at every decay epoch
    co_train: bool = False  # fine-tune the teacher with its own GT loss while distilling
    teacher_gt_weight: float = 1.0  # weight of the teacher's GT loss when co_train
    teacher_lr_scale: float = 0.1  # teacher lr = stage lr * this when co_train


@dataclass(frozen=True)
class StageCfg:
    """One training stage (teacher, distill or finetune)."""

    optim: OptimCfg = field(default_factory=OptimCfg)
    loss: DistillCfg = field(default_factory=DistillCfg)
    log_every: int = 10  # steps between metrics.csv / TensorBoard rows
    eval_every: int = 0  # steps between validations (0: only at the end)
    checkpoint_every: int = 100  # steps between last.pt writes (and at the end)
    max_bad_steps: int = 5  # consecutive non-finite losses before the stage stops


@dataclass(frozen=True)
class PruneCfg:
    """DepGraph structured pruning of the student."""

    target_param_reduction: float = 0.5  # fraction of parameters to remove
    iterative_steps: int = 4  # pruning steps; fine-tuning runs between them
    finetune_steps: int = 20  # distillation steps after each pruning step
    importance: str = "l2"  # l2 | l1 (group magnitude, mean reduction)
    round_to: int = 8  # remaining channels are a multiple of this
    ignored: Tuple[str, ...] = ()  # extra module names never pruned (head convs are automatic)
    max_channel_ratio: float = 0.9  # upper bound of the channel-ratio search
    example_size: Tuple[int, int] = (64, 128)  # (H, W) of the tracing input, pixels


@dataclass(frozen=True)
class EvalCfg:
    """The eval stage: learned models and OpenCV SGBM on the test split."""

    sgbm: bool = True  # also evaluate cv2.StereoSGBM on the same images
    latency_runs: int = 3  # timed forward passes per model (CPU, batch 1)


@dataclass(frozen=True)
class ExportCfg:
    """The export stage: ONNX of the final student and a parity check."""

    height: int = 64  # export input height, pixels
    width: int = 128  # export input width, pixels
    opset: int = 17  # ONNX opset
    atol: float = 1e-3  # max |onnxruntime - torch| disparity difference, pixels


@dataclass(frozen=True)
class PipelineCfg:
    """The whole pipeline: teacher -> distill -> prune -> finetune -> eval -> export."""

    seed: int = 0  # seeds init, sampling and augmentation
    device: str = "cpu"  # cpu | cuda
    threads: int = 0  # torch intra-op threads (0: leave unchanged)
    run_dir: str = "runs/default"  # every stage writes to <run_dir>/<stage>/
    stages: Tuple[str, ...] = STAGES  # stages run by default, in this order
    progress: bool = True  # tqdm progress bars
    tensorboard: bool = True  # TensorBoard event files
    data: DataCfg = field(default_factory=DataCfg)
    teacher_model: ModelCfg = field(default_factory=lambda: ModelCfg(name="psmnet"))
    student_model: ModelCfg = field(default_factory=ModelCfg)
    teacher: StageCfg = field(default_factory=lambda: StageCfg(
        loss=DistillCfg(supervision="gt", points=())))
    distill: StageCfg = field(default_factory=StageCfg)
    prune: PruneCfg = field(default_factory=PruneCfg)
    finetune: StageCfg = field(default_factory=StageCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    export: ExportCfg = field(default_factory=ExportCfg)


# ------------------------------------------------------------------------------------ building
def _is_optional(tp: Any) -> Tuple[bool, Any]:
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(tp: Any, value: Any, where: str, source: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` (recursively)."""
    optional, inner = _is_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"{source}: {where} must not be null")
    tp = inner
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    if tp is Any:
        return value
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]", source)
                         for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{source}: {where} must have {len(args)} items, got {value!r}")
        return tuple(_convert(a, v, f"{where}[{i}]", source)
                     for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where} must be true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: {where} has unsupported type {tp!r}")


def _build(cls: Type[T], data: Any, where: str, source: str) -> T:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {where or 'top level'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise ConfigError(f"{source}: unknown key {key!r} (valid keys under "
                          f"{where or 'top level'}: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name],
                                      f"{where}.{f.name}" if where else f.name, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key "
                              f"{(where + '.') if where else ''}{f.name}")
    return cls(**kwargs)


def from_dict(cls: Type[T], data: Mapping[str, Any], source: str = "<dict>") -> T:
    """Build dataclass ``cls`` from a nested mapping, rejecting unknown keys.

    Args:
        cls: a config dataclass (e.g. :class:`PipelineCfg`).
        data: nested mapping as read from YAML.
        source: where ``data`` came from (file name), used in error messages.

    Raises:
        ConfigError: unknown or missing key, or a value of the wrong type.
    """
    cfg = _build(cls, data, "", source)
    if isinstance(cfg, PipelineCfg):
        validate(cfg, source)
    return cfg


def validate(cfg: PipelineCfg, source: str = "<config>") -> None:
    """Check cross-field constraints of a pipeline config.

    Raises:
        ConfigError: an invalid stage name, supervision mode or schedule name.
    """
    for stage in cfg.stages:
        if stage not in STAGES:
            raise ConfigError(f"{source}: stages: unknown stage {stage!r} "
                              f"(valid: {', '.join(STAGES)})")
    for name in ("teacher", "distill", "finetune"):
        stage: StageCfg = getattr(cfg, name)
        if stage.loss.supervision not in ("gt", "teacher", "both"):
            raise ConfigError(f"{source}: {name}.loss.supervision must be gt, teacher or both, "
                              f"got {stage.loss.supervision!r}")
        if stage.optim.scheduler not in ("constant", "cosine", "step", "linear"):
            raise ConfigError(f"{source}: {name}.optim.scheduler {stage.optim.scheduler!r} is "
                              "not one of constant, cosine, step, linear")
        if stage.optim.batch_size < 1:
            raise ConfigError(f"{source}: {name}.optim.batch_size must be >= 1")
    if cfg.teacher.loss.supervision != "gt":
        raise ConfigError(f"{source}: teacher.loss.supervision must be 'gt' (the teacher learns "
                          "from ground truth only)")
    if not 0.0 < cfg.prune.target_param_reduction < 1.0:
        raise ConfigError(f"{source}: prune.target_param_reduction must be in (0, 1)")
    _check_max_disparity(cfg, source)


def _check_max_disparity(cfg: PipelineCfg, source: str) -> None:
    """Every dataset spec and the student config that state ``max_disparity`` state the same
    one (a student of D planes trained or scored on another range is a silent mistake). The
    teacher may differ: distillation aligns its disparity bins to the student's (align_logits)."""
    stated = {f"data.{n}.max_disparity": getattr(cfg.data, n).max_disparity
              for n in ("train", "val", "test") if getattr(cfg.data, n) is not None}
    stated["student_model.config.max_disparity"] = cfg.student_model.config.get("max_disparity")
    values = {k: int(v) for k, v in stated.items() if v is not None}
    if len(set(values.values())) > 1:
        listed = ", ".join(f"{k} = {v}" for k, v in values.items())
        raise ConfigError(f"{source}: max_disparity differs across the config ({listed}); "
                          "use one disparity range")


def parse_overrides(items: Sequence[str]) -> Dict[str, Any]:
    """Turn ``["a.b=1", "c=[1, 2]"]`` into ``{"a.b": 1, "c": [1, 2]}`` (values parsed as YAML).

    Raises:
        ConfigError: an item without ``=``.
    """
    out: Dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key, text = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(text) if text.strip() else ""
    return out


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """A deep copy of ``data`` with dotted-key ``overrides`` set (missing levels created)."""
    out = _deepcopy(data)
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


def _deepcopy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_deepcopy(v) for v in data]
    return data


def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> PipelineCfg:
    """Read a pipeline YAML file, apply ``key.path=value`` overrides and validate it.

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key or bad value (names the file).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: invalid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config {path}: top level must be a mapping")
    source = str(path)
    if overrides:
        raw = apply_overrides(raw, parse_overrides(overrides))
        source = f"{path} (with overrides {', '.join(overrides)})"
    return from_dict(PipelineCfg, raw, source)


def to_dict(cfg: Any) -> Dict[str, Any]:
    """A JSON/YAML-able nested dict of a config dataclass (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, DatasetCfg):  # only the keys that are set, as written in YAML
            return plain(v.spec())
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(cfg)
