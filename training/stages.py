"""The pipeline stages: teacher, distill, prune, finetune, eval, export.

Each stage reads its inputs from earlier stages' folders (``<run_dir>/<stage>/best.pt``) or from
the config, so it runs alone or chained. Training stages are resumable (``last.pt``); prune, eval
and export are short and simply re-run.
"""

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import yaml
from torch import Tensor, nn

from dtp_stereo.checkpoint import (CheckpointError, build_from_checkpoint, load_checkpoint,
                                   read_torch_file, save_checkpoint)
from dtp_stereo.files import atomic_write_text
from dtp_stereo.models import build_model
from training import distributed, evaluation
from training.config import PipelineCfg, StageCfg, to_dict
from training.distill import Distiller
from training.trainer import (StageRun, first_batch, mix_seed, run_steps, seed_everything,
                              train_stage)

_LOG = logging.getLogger(__name__)
TRAINING_STAGES = ("teacher", "distill", "finetune")


def stage_dir(cfg: PipelineCfg, stage: str) -> Path:
    """``<run_dir>/<stage>``."""
    return Path(cfg.run_dir) / stage


def _datasets(cfg: PipelineCfg):
    from training.data.datasets import build_dataset

    train = build_dataset(cfg.data.train.spec())
    val = build_dataset(cfg.data.val.spec()) if cfg.data.val else None
    test_spec = (cfg.data.test or cfg.data.val or cfg.data.train).spec()
    return train, val, test_spec


def _load(path: Path, overrides: Optional[Dict[str, Any]] = None) -> Tuple[nn.Module, str]:
    ckpt = load_checkpoint(path)
    return build_from_checkpoint(ckpt, overrides or None), ckpt.model_name


def load_extended(path: Path, overrides: Dict[str, Any], extend: Dict[str, Any]
                  ) -> Tuple[nn.Module, str]:
    """A checkpoint's model grown by the ``extend`` config entries (new modules added).

    The checkpoint's weights are loaded into the grown model; the only parameters it may lack
    are those of the modules that ``extend`` adds (compared with the model rebuilt from the
    checkpoint alone), which keep their initialisation.

    ``extend`` may also set DTPnet's ``disparity_planes`` (fewer logit planes): the two convs
    that write logit planes then start from the checkpoint's rows nearest each new plane's
    disparity (:func:`resample_logit_planes`).

    Raises:
        CheckpointError: the grown model lacks checkpoint weights or renames existing ones.
    """
    ckpt = load_checkpoint(path)
    plain = build_from_checkpoint(ckpt, overrides or None)
    grown = build_model(ckpt.model_name, **{**ckpt.model_config, **overrides, **extend})
    state = ckpt.state_dict
    if "disparity_planes" in extend:
        state = resample_logit_planes(state, plain, grown)
    try:
        missing, unexpected = grown.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when not strict
        raise CheckpointError(f"{path}: student_model.extend {extend} does not only add "
                              f"modules: {str(exc).splitlines()[1].strip()}") from None
    added = set(grown.state_dict()) - set(plain.state_dict())
    if unexpected or set(missing) - added:
        raise CheckpointError(f"{path}: student_model.extend {extend} does not only add modules "
                              f"(unexpected keys {sorted(unexpected)[:5]}, missing existing keys "
                              f"{sorted(set(missing) - added)[:5]})")
    _LOG.info("%s: grown by %s (%d new tensors)", path, extend, len(added))
    return grown, ckpt.model_name


def resample_logit_planes(state: Dict[str, Tensor], old: nn.Module, new: nn.Module
                          ) -> Dict[str, Tensor]:
    """``state`` of DTPnet ``old`` with its logit-writing convs (``classifier.2``, and
    ``corr_logits`` when present) cut to the planes of ``new``: new plane j (``j·new.plane_step``
    pixels) takes the old plane nearest that disparity. Every other tensor is unchanged.

    Raises:
        CheckpointError: the models are not DTPnets with logit planes.
    """
    if not (hasattr(old, "plane_step") and hasattr(new, "plane_step")):
        raise CheckpointError("disparity_planes can only be changed on a DTPnet checkpoint")
    rows = torch.round(torch.arange(new.planes, dtype=torch.float64) * new.plane_step /
                       old.plane_step).long().clamp(max=old.planes - 1)
    out = dict(state)
    for key in ("classifier.2.weight", "corr_logits.weight"):
        if key in out:
            out[key] = out[key][rows].clone()
    _LOG.info("logit planes %d -> %d (old planes %s...)", old.planes, new.planes,
              rows[:4].tolist())
    return out


def warn_ignored_config(path: Path, config: Dict[str, Any], overrides: Dict[str, Any],
                        extend: Dict[str, Any]) -> List[str]:
    """Warn (and return the keys) where ``student_model.config`` differs from the checkpoint the
    student starts from: the checkpoint's own config builds the model, so those entries are
    ignored unless ``overrides`` or ``extend`` set them too. A run that meant to build a fresh
    student with them silently trains the checkpoint otherwise."""
    own = load_checkpoint(path).model_config
    ignored = sorted(k for k, v in config.items()
                     if k not in overrides and k not in extend and
                     _normalised(own.get(k)) != _normalised(v))
    if ignored:
        _LOG.warning("student_model.config %s differ from %s's and are ignored: the student "
                     "starts from that checkpoint (set student_model.checkpoint to null for a "
                     "fresh student, or use student_model.overrides / extend)",
                     {k: config[k] for k in ignored}, path)
    return ignored


def _normalised(value: Any) -> Any:
    """Lists and tuples compare equal (YAML gives lists, checkpoints tuples)."""
    return tuple(_normalised(v) for v in value) if isinstance(value, (list, tuple)) else value


def _import_teacher(cfg: PipelineCfg) -> Tuple[nn.Module, str]:
    """The teacher of ``teacher_model.checkpoint``: a dtp_stereo file or a public PSMNet file."""
    mc = cfg.teacher_model
    path = Path(mc.checkpoint)
    try:
        return _load(path, mc.overrides)
    except CheckpointError as exc:
        if mc.name != "psmnet" or "not a dtp_stereo checkpoint" not in str(exc):
            raise
    from dtp_stereo.models.psmnet import convert_public_psmnet_state_dict

    state = convert_public_psmnet_state_dict(read_torch_file(path))
    model = build_model("psmnet", **mc.config)
    model.load_state_dict(state, strict=True)
    return model, "psmnet"


def teacher_checkpoint(cfg: PipelineCfg) -> Path:
    """The teacher the student learns from: ``teacher/best.pt``, else the configured file."""
    own = stage_dir(cfg, "teacher") / "best.pt"
    if own.exists():
        return own
    if cfg.teacher_model.checkpoint:
        return Path(cfg.teacher_model.checkpoint)
    raise FileNotFoundError(f"no teacher: run the 'teacher' stage (writes {own}) or set "
                            "teacher_model.checkpoint")


def student_checkpoint(cfg: PipelineCfg, before: str) -> Path:
    """The latest student checkpoint produced by a stage before ``before``."""
    order = ("distill", "prune", "finetune")
    candidates = order[:order.index(before)] if before in order else order
    for stage in reversed(candidates):
        path = stage_dir(cfg, stage) / "best.pt"
        if path.exists():
            return path
    if cfg.student_model.checkpoint and before != "distill":
        return Path(cfg.student_model.checkpoint)
    raise FileNotFoundError(f"stage {before!r} needs a student checkpoint from "
                            f"{', '.join(candidates) or 'student_model.checkpoint'} under "
                            f"{cfg.run_dir}")


def _needs_teacher(stage: StageCfg) -> bool:
    loss = stage.loss
    return loss.co_train or (loss.supervision in ("teacher", "both") and bool(loss.points))


def _validator(cfg: PipelineCfg, val) -> Optional[Any]:
    """The trainer's validation: metrics on ``val`` (its first ``data.val_samples`` images) and,
    with ``data.val_extra``, each extra split's as ``<name>_<metric>`` plus ``select_epe``, the
    mean EPE over all the splits (pixels), on which the trainer picks best.pt."""
    if val is None:
        return None
    from training.data.datasets import build_dataset

    extra = {name: build_dataset(spec.spec()) for name, spec in cfg.data.val_extra.items()}

    def validate(model: nn.Module) -> Dict[str, Any]:
        metrics = evaluation.evaluate_model(model, val, cfg.data.val_samples, cfg.device)
        if not extra:
            return metrics
        epes = [metrics["epe"]]
        for name, dataset in extra.items():
            more = evaluation.evaluate_model(model, dataset, cfg.data.val_samples, cfg.device)
            metrics.update({f"{name}_{k}": v for k, v in more.items()})
            epes.append(more["epe"])
        metrics["select_epe"] = sum(epes) / len(epes)
        return metrics

    return validate


def _train(cfg: PipelineCfg, name: str, distiller: Distiller, model_name: str, stage: StageCfg,
           train, val, resume: bool, max_steps: Optional[int],
           provenance: Dict[str, Any]) -> Dict[str, Any]:
    run = StageRun(name=name, distiller=distiller, model_name=model_name, train_set=train,
                   out_dir=stage_dir(cfg, name), seed=mix_seed(cfg.seed, hash_stage(name)),
                   validate=_validator(cfg, val), provenance=provenance, device=cfg.device,
                   num_workers=cfg.data.num_workers, progress=cfg.progress,
                   tensorboard=cfg.tensorboard)
    return train_stage(run, stage, resume=resume, max_steps=max_steps)


def hash_stage(name: str) -> int:
    """A stable small integer per stage name (mixes the stage into seeds)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name))


def _example(train, cfg: PipelineCfg) -> Tuple[Tensor, Tensor]:
    b = first_batch(train, 1, cfg.seed)
    return b["left"].to(cfg.device), b["right"].to(cfg.device)


def stage_teacher(cfg: PipelineCfg, resume: bool = False,
                  max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Train the teacher with ground truth, or import ``teacher_model.checkpoint``."""
    out = stage_dir(cfg, "teacher")
    mc = cfg.teacher_model
    if mc.checkpoint:
        model, name = _import_teacher(cfg)
        if distributed.current().is_main:
            save_checkpoint(out / "best.pt", model, model_name=name,
                            provenance={"parent": str(mc.checkpoint), "stage": "teacher"})
        return {"stage": "teacher", "imported": str(mc.checkpoint), "best": str(out / "best.pt")}
    train, val, _ = _datasets(cfg)
    seed_everything(mix_seed(cfg.seed, 1))
    model = build_model(mc.name, **mc.config)
    distiller = Distiller(model, None, cfg.teacher.loss)
    return _train(cfg, "teacher", distiller, mc.name, cfg.teacher, train, val, resume,
                  max_steps, {"data": cfg.data.train.spec(), "stage": "teacher"})


def _distiller_for(cfg: PipelineCfg, stage: StageCfg, student: nn.Module, train
                   ) -> Tuple[Distiller, Dict[str, Any]]:
    prov: Dict[str, Any] = {"data": cfg.data.train.spec()}
    teacher = None
    if _needs_teacher(stage):
        path = teacher_checkpoint(cfg)
        teacher, _ = _load(path, cfg.teacher_model.overrides)
        teacher.to(cfg.device).eval()
        prov["teacher"] = str(path)
    distiller = Distiller(student, teacher, stage.loss, example=_example(train, cfg))
    return distiller, prov


def stage_distill(cfg: PipelineCfg, resume: bool = False,
                  max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Distil the teacher into a freshly built (or configured) student."""
    train, val, _ = _datasets(cfg)
    mc = cfg.student_model
    seed_everything(mix_seed(cfg.seed, 2))
    if mc.checkpoint:
        warn_ignored_config(Path(mc.checkpoint), mc.config, mc.overrides, mc.extend)
    if mc.checkpoint and mc.extend:
        student, name = load_extended(Path(mc.checkpoint), mc.overrides, mc.extend)
    elif mc.checkpoint:
        student, name = _load(Path(mc.checkpoint), mc.overrides)
    else:
        student, name = build_model(mc.name, **{**mc.config, **mc.extend}), mc.name
    student.to(cfg.device)
    distiller, prov = _distiller_for(cfg, cfg.distill, student, train)
    prov.update(stage="distill", parent=mc.checkpoint)
    return _train(cfg, "distill", distiller, name, cfg.distill, train, val, resume, max_steps,
                  prov)


def stage_prune(cfg: PipelineCfg, resume: bool = False,
                max_steps: Optional[int] = None) -> Dict[str, Any]:
    """DepGraph-prune the distilled student with distillation fine-tuning between steps."""
    from training.prune import prune_model

    del resume, max_steps  # prune is short and re-runs from its input checkpoint
    train, val, _ = _datasets(cfg)
    parent = student_checkpoint(cfg, "prune")
    student, name = _load(parent, cfg.student_model.overrides)
    student.to(cfg.device)
    h, w = cfg.prune.example_size
    gen = torch.Generator().manual_seed(cfg.seed)
    example = (torch.rand(1, 3, h, w, generator=gen).to(cfg.device),
               torch.rand(1, 3, h, w, generator=gen).to(cfg.device))
    teacher = None
    if cfg.prune.finetune_steps > 0 and _needs_teacher(cfg.distill):
        teacher, _ = _load(teacher_checkpoint(cfg), cfg.teacher_model.overrides)
        teacher.to(cfg.device).eval()

    def finetune(model: nn.Module, step: int) -> None:
        if cfg.prune.finetune_steps <= 0:
            return
        d = Distiller(model, teacher, cfg.distill.loss, example=_example(train, cfg))
        losses = run_steps(d, train, cfg.distill.optim, cfg.prune.finetune_steps,
                           mix_seed(cfg.seed, 0x9A, step), cfg.device)
        _LOG.info("prune step %d: fine-tune loss %.4g -> %.4g", step + 1, losses[0], losses[-1])

    result = prune_model(student, example, cfg.prune, finetune, model_name=name)
    validate = _validator(cfg, val)  # the trainer's validation, data.val_extra included
    metrics = validate(result.model) if validate is not None else {}
    summary = result.summary()
    summary.update(stage="prune", parent=str(parent), val=metrics,
                   config=dataclasses.asdict(result.config))
    out = stage_dir(cfg, "prune")
    if distributed.current().is_main:
        prov = {"parent": str(parent), "stage": "prune", "metrics": metrics,
                "prune": {k: v for k, v in summary.items() if k not in ("val", "config")}}
        save_checkpoint(out / "best.pt", result.model, model_name=name, provenance=prov)
        write_json(out / "summary.json", summary)
    return summary


def stage_finetune(cfg: PipelineCfg, resume: bool = False,
                   max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Fine-tune the pruned student (distillation and/or ground truth)."""
    train, val, _ = _datasets(cfg)
    parent = student_checkpoint(cfg, "finetune")
    student, name = _load(parent, cfg.student_model.overrides)
    student.to(cfg.device)
    distiller, prov = _distiller_for(cfg, cfg.finetune, student, train)
    prov.update(stage="finetune", parent=str(parent))
    return _train(cfg, "finetune", distiller, name, cfg.finetune, train, val, resume,
                  max_steps, prov)


def stage_eval(cfg: PipelineCfg, resume: bool = False,
               max_steps: Optional[int] = None) -> Dict[str, Any]:
    """EPE/D1/bad-2, params, MACs and CPU latency of every stage's model, plus SGBM."""
    from training.data.datasets import build_dataset

    del resume, max_steps
    _, _, test_spec = _datasets(cfg)
    test = build_dataset(test_spec)
    sample = test[0]
    h, w = (int(s) for s in torch.as_tensor(sample["left"]).shape[-2:])
    results: Dict[str, Any] = {"dataset": test_spec, "height": h, "width": w,
                               "samples": min(cfg.data.test_samples or len(test), len(test)),
                               "models": {}}
    d_max = None
    for stage in ("teacher", "distill", "prune", "finetune"):
        path = stage_dir(cfg, stage) / "best.pt"
        if not path.exists():
            continue
        mc = cfg.teacher_model if stage == "teacher" else cfg.student_model
        model, name = _load(path, mc.overrides)
        model.to(cfg.device).eval()
        d_max = d_max or int(model.max_disparity)
        div = int(getattr(model, "size_divisor", 1))
        hp, wp = -(-h // div) * div, -(-w // div) * div
        entry = evaluation.evaluate_model(model, test, cfg.data.test_samples, cfg.device)
        entry.update(evaluation.complexity(model, hp, wp))
        entry["latency_ms"] = evaluation.latency_ms(model, hp, wp, cfg.eval.latency_runs,
                                                    cfg.device)
        entry.update(model_name=name, checkpoint=str(path), device=cfg.device,
                     threads=torch.get_num_threads())
        results["models"][stage] = entry
    if cfg.eval.sgbm:
        d_max = d_max or int(cfg.student_model.config.get("max_disparity", 192))
        results["sgbm"] = evaluation.evaluate_sgbm(test, d_max, cfg.data.test_samples)
    out = stage_dir(cfg, "eval")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    return results


def stage_export(cfg: PipelineCfg, resume: bool = False,
                 max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Export the final student to ONNX and check onnxruntime against torch."""
    from dtp_stereo.export import check_onnx_against_torch, export_onnx

    del resume, max_steps
    parent = student_checkpoint(cfg, "export")
    model, name = _load(parent, cfg.student_model.overrides)
    model.eval()
    out = stage_dir(cfg, "export")
    e = cfg.export
    onnx_path = export_onnx(model, str(out / "model.onnx"), e.height, e.width, opset=e.opset)
    diff = check_onnx_against_torch(model, onnx_path, e.height, e.width)
    save_checkpoint(out / "model.pt", model, model_name=name,
                    provenance={"parent": str(parent), "stage": "export",
                                "onnx": str(onnx_path), "onnx_max_abs_diff_px": diff})
    summary = {"stage": "export", "parent": str(parent), "onnx": str(onnx_path),
               "checkpoint": str(out / "model.pt"), "max_abs_diff_px": diff,
               "height": e.height, "width": e.width, "opset": e.opset}
    write_json(out / "export.json", summary)
    if not diff <= e.atol:
        raise RuntimeError(f"ONNX export {onnx_path}: onnxruntime differs from torch by "
                           f"{diff:.3g} px (> export.atol {e.atol})")
    return summary


STAGE_FUNCS = {"teacher": stage_teacher, "distill": stage_distill, "prune": stage_prune,
               "finetune": stage_finetune, "eval": stage_eval, "export": stage_export}


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (a reader never sees half a file)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def read_json_or_set_aside(path: Path) -> Dict[str, Any]:
    """The JSON object in ``path`` ({} if absent); an unreadable file is renamed to
    ``<name>.corrupt`` with a warning naming it, so that a run starts instead of crashing."""
    if not path.exists():
        return {}
    try:
        obj = json.loads(path.read_text())
        if not isinstance(obj, dict):
            raise ValueError(f"holds a {type(obj).__name__}, not an object")
        return obj
    except (ValueError, UnicodeDecodeError) as exc:
        aside = path.with_name(path.name + ".corrupt")
        n = 1
        while aside.exists():  # keep every earlier one
            aside, n = path.with_name(f"{path.name}.corrupt{n}"), n + 1
        path.replace(aside)
        _LOG.warning("%s is not readable JSON (%s); moved to %s and starting a new one", path,
                     exc, aside)
        return {}


def config_changes(before: Any, after: Any, prefix: str = "") -> List[str]:
    """``key: old -> new`` for every entry that differs between two config dicts (dotted keys,
    nested dicts compared entry by entry)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: List[str] = []
        for key in list(before) + [k for k in after if k not in before]:
            name = f"{prefix}.{key}" if prefix else str(key)
            out += config_changes(before.get(key, "<unset>"), after.get(key, "<unset>"), name)
        return out
    norm = (lambda v: list(v) if isinstance(v, tuple) else v)  # noqa: E731
    return [] if norm(before) == norm(after) else [f"{prefix}: {before!r} -> {after!r}"]


def run_pipeline(cfg: PipelineCfg, stages: Optional[Sequence[str]] = None, resume: bool = False,
                 max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Run ``stages`` (default ``cfg.stages``) in pipeline order; returns their summaries.

    Training stages run on every rank (DDP); prune/eval/export on rank 0 only. The resolved
    config is written to ``<run_dir>/config.yaml`` and the summaries to ``results.json``.
    """
    stages = list(stages or cfg.stages)
    unknown = [s for s in stages if s not in STAGE_FUNCS]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; valid: {', '.join(STAGE_FUNCS)}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    info = distributed.current()
    run_dir = Path(cfg.run_dir)
    res_path = run_dir / "results.json"
    results: Dict[str, Any] = read_json_or_set_aside(res_path) if info.is_main else {}
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_dir / "config.yaml"
        if resume and cfg_path.exists():
            try:
                before = yaml.safe_load(cfg_path.read_text()) or {}
            except yaml.YAMLError:
                before = {}
            changes = config_changes(before, to_dict(cfg))
            if changes:
                _LOG.warning("resuming %s with a changed config (%d entries): %s", run_dir,
                             len(changes), "; ".join(changes[:12]))
        atomic_write_text(cfg_path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    for stage in sorted(stages, key=list(STAGE_FUNCS).index):
        if stage in TRAINING_STAGES or info.is_main:
            results[stage] = STAGE_FUNCS[stage](cfg, resume=resume, max_steps=max_steps)
        distributed.barrier()
        if info.is_main:
            write_json(res_path, results)
    return results
