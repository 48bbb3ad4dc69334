"""The training loop shared by the teacher, distill, finetune and prune-finetune stages.

Exact resume: every random draw of step ``s`` (batch indices, augmentation, dropout) comes from
seeds derived from ``(seed, s, rank)``, so a run killed after step ``k`` and resumed from its
``last.pt`` (weights, optimizer, scheduler, step) ends bit-identical to an uninterrupted run.

Each stage writes into its own folder: ``last.pt`` and ``best.pt`` (atomic, ``dtp_stereo``
checkpoints with ``training_state``), ``metrics.csv`` (long format: step, epoch, split, name,
value), TensorBoard events under ``tb/`` and ``summary.json``.
"""

import csv
import json
import logging
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from dtp_stereo.checkpoint import load_checkpoint, rng_state, save_checkpoint
from dtp_stereo.files import atomic_write_text
from training import distributed
from training.config import OptimCfg, StageCfg
from training.distill import Distiller

_LOG = logging.getLogger(__name__)
_MIX = 0x9E3779B1  # odd 32-bit constant for seed mixing
BATCH_KEYS = ("left", "right", "disparity", "valid")


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses or gradients; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------ sampling
def mix_seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (order matters)."""
    h = 0x12345
    for p in parts:
        h = (h * _MIX + int(p) + 0x7F4A7C15) % (1 << 63)
    return h


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Optimisation steps in one pass over ``num_samples`` (at least 1)."""
    return max(num_samples // (batch_size * world_size), 1)


def batch_indices(step: int, num_samples: int, batch_size: int, seed: int, rank: int = 0,
                  world_size: int = 1, fresh: bool = False) -> List[int]:
    """Dataset indices of ``rank``'s batch at global ``step`` (a per-epoch permutation shard).

    Each epoch draws a permutation seeded by (seed, epoch); step ``s`` of the epoch takes the
    slice ``[s*B*W + rank*B, ... + B)`` (wrapping around for tiny datasets), so ranks never
    share a sample within a step and the sequence depends only on (seed, step).
    With ``fresh`` (an unbounded stream) the indices are that slice itself, in order: sample
    ``n`` of the run is scene ``n``, so no scene repeats.
    """
    if num_samples < 1:
        raise ValueError("the training dataset is empty")
    if fresh:
        start = step * batch_size * world_size + rank * batch_size
        return [(start + k) % num_samples for k in range(batch_size)]
    spe = steps_per_epoch(num_samples, batch_size, world_size)
    epoch, pos = divmod(step, spe)
    gen = torch.Generator().manual_seed(mix_seed(seed, epoch))
    perm = torch.randperm(num_samples, generator=gen)
    start = pos * batch_size * world_size + rank * batch_size
    return [int(perm[(start + k) % num_samples]) for k in range(batch_size)]


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python RNGs."""
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)


class SeededSamples(Dataset):
    """Wraps a dataset so item ``(seed, index)`` seeds all RNGs before reading ``index``.

    This makes augmentation a pure function of (seed, step, slot), in workers too.
    """

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: Tuple[int, int]) -> Dict[str, Tensor]:
        seed, index = key
        seed_everything(seed)
        sample = self.base[index]
        missing = [k for k in BATCH_KEYS if k not in sample]
        if missing:
            raise KeyError(f"dataset sample {index} lacks keys {missing}")
        return {k: torch.as_tensor(sample[k]) for k in BATCH_KEYS}


class StepBatches:
    """Batch sampler yielding ``[(sample_seed, index), ...]`` for steps ``start .. stop-1``."""

    def __init__(self, start: int, stop: int, num_samples: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, fresh: bool = False) -> None:
        self.start, self.stop = start, stop
        self.n, self.b, self.seed = num_samples, batch_size, seed
        self.rank, self.world, self.fresh = rank, world_size, fresh

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        for step in range(self.start, self.stop):
            idx = batch_indices(step, self.n, self.b, self.seed, self.rank, self.world,
                                self.fresh)
            yield [(mix_seed(self.seed, step, self.rank, k), i) for k, i in enumerate(idx)]


def collate(samples: Sequence[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    """Stack ``left``/``right`` (B×3×H×W), ``disparity`` (B×H×W) and ``valid`` (B×H×W bool)."""
    out = {k: torch.stack([s[k] for s in samples]) for k in BATCH_KEYS}
    out["left"], out["right"] = out["left"].float(), out["right"].float()
    out["disparity"], out["valid"] = out["disparity"].float(), out["valid"].bool()
    return out


def make_loader(dataset: Dataset, start: int, stop: int, batch_size: int, seed: int,
                num_workers: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
    """DataLoader over steps ``start..stop-1`` with the deterministic per-step sampler.

    A dataset with ``fresh = True`` (an unbounded synthetic stream) is read in order.
    """
    fresh = bool(getattr(dataset, "fresh", False))
    return DataLoader(SeededSamples(dataset),
                      batch_sampler=StepBatches(start, stop, len(dataset), batch_size, seed,
                                                rank, world_size, fresh),
                      num_workers=num_workers, collate_fn=collate,
                      prefetch_factor=4 if num_workers > 0 else None,
                      persistent_workers=False)


# ----------------------------------------------------------------------------- optimisation
def total_steps(optim: OptimCfg, num_samples: int, world_size: int = 1) -> int:
    """The stage's step budget: ``optim.steps`` or epochs × steps per epoch."""
    if optim.steps > 0:
        return optim.steps
    return optim.epochs * steps_per_epoch(num_samples, optim.batch_size, world_size)


def lr_factor(optim: OptimCfg, step: int, total: int) -> float:
    """Multiplier of the peak lr at ``step`` (warm-up, then constant/cosine/step/linear)."""
    if optim.warmup_steps > 0 and step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.scheduler == "constant":
        return 1.0
    if optim.scheduler == "step":
        return optim.gamma ** sum(1 for m in optim.milestones if step >= m)
    span = max(total - optim.warmup_steps, 1)
    progress = min(max(step - optim.warmup_steps, 0) / span, 1.0)
    if optim.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if optim.scheduler == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown scheduler {optim.scheduler!r}")


def make_optimizer(distiller: Distiller, optim: OptimCfg, teacher_lr_scale: float = 0.1
                   ) -> torch.optim.Optimizer:
    """AdamW over student + adapters (and the teacher at a scaled lr when co-training)."""
    groups: List[Dict[str, Any]] = [{"params": distiller.trainable_parameters(), "lr": optim.lr}]
    teacher = distiller.teacher_parameters()
    if teacher:
        groups.append({"params": teacher, "lr": optim.lr * teacher_lr_scale})
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas),
                             weight_decay=optim.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, optim: OptimCfg, total: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying :func:`lr_factor` (one ``step()`` per optimisation step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer,
                                             lambda s: lr_factor(optim, s, total))


# ------------------------------------------------------------------------------- logging
class MetricsLog:
    """``metrics.csv`` in long format (step, epoch, split, name, value) plus TensorBoard."""

    FIELDS = ("step", "epoch", "split", "name", "value")

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool,
                 resume_step: Optional[int] = None, keep_val_at_resume: bool = True) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.csv"
        self.writer = None
        self._logged: set = set()  # (step, split) pairs in the file
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        rows: List[Dict[str, str]] = []
        if resume_step is not None and self.path.exists():
            with self.path.open(newline="") as fh:  # drop rows written after the checkpoint
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) < resume_step or (
                    int(r["step"]) == resume_step and (keep_val_at_resume or r["split"] != "val"))]
        self._logged = {(int(r["step"]), r["split"]) for r in rows}
        with self.path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.FIELDS)
            w.writeheader()
            w.writerows(rows)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=resume_step)

    def log(self, step: int, epoch: int, split: str, values: Dict[str, float]) -> None:
        """Append one row per value and mirror them to TensorBoard as ``split/name``."""
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._logged.add((int(step), split))
        with self.path.open("a", newline="") as fh:
            w = csv.writer(fh)
            for name, value in values.items():
                w.writerow([step, epoch, split, name, f"{float(value):.8g}"])
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{split}/{name}", float(value), step)

    def has(self, step: int, split: str) -> bool:
        """Whether rows of ``split`` were logged at ``step`` (also before a resume)."""
        return (int(step), split) in self._logged

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self.writer is not None:
            self.writer.close()


# -------------------------------------------------------------------------------- the loop
@dataclass
class StageRun:
    """Everything one training stage needs besides the config.

    Attributes:
        name: stage name (``teacher``, ``distill``, ``finetune``).
        distiller: student (+ teacher, adapters) and the loss.
        model_name: registry name of the student (for checkpoints).
        train_set: training dataset (samples with ``left``/``right``/``disparity``/``valid``).
        out_dir: the stage folder (``<run_dir>/<stage>``).
        seed: pipeline seed.
        validate: ``validate(model) -> {"epe": ...}`` on the validation split, or ``None``.
        provenance: extra provenance for the checkpoints (parent, data, ...).
        device: torch device.
        num_workers: DataLoader workers.
        progress: show a tqdm bar (main rank only).
        tensorboard: write TensorBoard events.
    """

    name: str
    distiller: Distiller
    model_name: str
    train_set: Dataset
    out_dir: Path
    seed: int = 0
    validate: Optional[Callable[[nn.Module], Dict[str, float]]] = None
    provenance: Optional[Dict[str, Any]] = None
    device: str = "cpu"
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = True


def _grads_finite(params: Sequence[nn.Parameter]) -> bool:
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)


def _save(run: StageRun, path: Path, step: int, epoch: int, optimizer, scheduler,
          extra: Dict[str, Any], metrics: Dict[str, float]) -> None:
    d = run.distiller
    state = {"stage": run.name, "step": step, "epoch": epoch, "data_position": step,
             "seed": run.seed, "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state(),
             "adapters": d.adapters.state_dict(), **extra}
    if d.cfg.co_train and d.teacher is not None:
        state["teacher_state_dict"] = d.teacher.state_dict()
    prov = dict(run.provenance or {})
    prov["metrics"] = dict(metrics)
    prov["stage"] = run.name
    save_checkpoint(path, d.student, model_name=run.model_name, provenance=prov,
                    training_state=state)


def _restore(run: StageRun, path: Path, optimizer, scheduler) -> Dict[str, Any]:
    ckpt = load_checkpoint(path)
    state = ckpt.training_state or {}
    if state.get("stage") != run.name:
        raise ValueError(f"{path}: checkpoint of stage {state.get('stage')!r}, not {run.name!r}")
    d = run.distiller
    d.student.load_state_dict(ckpt.state_dict, strict=True)
    d.adapters.load_state_dict(state.get("adapters", {}), strict=True)
    if "teacher_state_dict" in state and d.teacher is not None:
        d.teacher.load_state_dict(state["teacher_state_dict"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


def train_stage(run: StageRun, cfg: StageCfg, *, resume: bool = False,
                max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Train ``run.distiller`` for the stage's step budget, checkpointing as it goes.

    Args:
        run: models, data and output folder.
        cfg: the stage config (optimiser, loss, logging/eval/checkpoint cadence).
        resume: continue from ``out_dir/last.pt`` when it exists.
        max_steps: stop (with a checkpoint) once this global step is reached, as if killed.

    Returns:
        Summary dict (steps, skipped steps, final/best validation metrics, paths).

    Raises:
        TrainingDiverged: ``cfg.max_bad_steps`` consecutive non-finite losses/gradients.
    """
    info = distributed.current()
    d = run.distiller.to(run.device)
    out_dir = Path(run.out_dir)
    optim = cfg.optim
    total = total_steps(optim, len(run.train_set), info.world_size)
    spe = steps_per_epoch(len(run.train_set), optim.batch_size, info.world_size)
    num_epochs = math.ceil(total / spe)
    optimizer = make_optimizer(d, optim, d.cfg.teacher_lr_scale)
    scheduler = make_scheduler(optimizer, optim, total)
    step, bad_total, best = 0, 0, math.inf
    metrics: Dict[str, float] = {}  # the last validation's
    validated_step: Optional[int] = None  # the step of the last validation
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume and last_path.exists():
        state = _restore(run, last_path, optimizer, scheduler)
        step, bad_total = int(state["step"]), int(state.get("bad_steps", 0))
        best = float(state.get("best_epe", math.inf))
        metrics = dict(state.get("val_metrics") or {})
        validated_step = state.get("val_step")
        _LOG.info("%s: resumed at step %d from %s", run.name, step, last_path)
    stop = total if max_steps is None else min(total, max_steps)
    # a validation row at the resume step is kept only if the checkpoint saw that validation
    log = MetricsLog(out_dir, info.is_main, run.tensorboard, resume_step=step if step else None,
                     keep_val_at_resume=validated_step is None or validated_step == step)
    model = distributed.wrap(d, run.device)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    bad_run = 0
    bar = None
    if run.progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=run.name, unit="step", dynamic_ncols=True)
    loader = make_loader(run.train_set, step, stop, optim.batch_size, run.seed,
                         run.num_workers, info.rank, info.world_size)

    def checkpoint(path: Path) -> None:
        if info.is_main:
            _save(run, path, step, step // spe, optimizer, scheduler,
                  {"bad_steps": bad_total, "best_epe": best, "total_steps": total,
                   "val_step": validated_step, "val_metrics": dict(metrics)}, metrics)

    def validate() -> None:
        nonlocal best, metrics, validated_step
        if run.validate is None or not info.is_main:
            return
        metrics = run.validate(d.student)
        validated_step = step
        log.log(step, step // spe, "val", metrics)
        selected = metrics.get("select_epe", metrics.get("epe", math.inf))  # see _validator
        if selected < best:
            best = selected
            checkpoint(best_path)

    try:
        d.train()
        tick = time.perf_counter()
        for batch in loader:
            epoch = step // spe
            seed_everything(mix_seed(run.seed, step, info.rank, 0xD1))
            batch = {k: v.to(run.device) for k, v in batch.items()}
            optimizer.zero_grad(set_to_none=True)
            buffers = [(b, b.detach().clone()) for b in d.buffers()]  # BN stats, restored
            out = model(batch["left"], batch["right"], batch["disparity"], batch["valid"],
                        epoch=epoch, num_epochs=num_epochs)
            ok = distributed.all_true(bool(torch.isfinite(out.loss.detach())), run.device)
            if ok:
                out.loss.backward()
                ok = distributed.all_true(_grads_finite(params), run.device)
            if ok:
                if optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, optim.grad_clip)
                optimizer.step()
                bad_run = 0
            else:
                bad_run += 1
                bad_total += 1
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    for buf, saved in buffers:
                        buf.copy_(saved)
                _LOG.warning("%s: step %d skipped (non-finite loss or gradient; %d in a row)",
                             run.name, step, bad_run)
                if bad_run >= cfg.max_bad_steps:
                    raise TrainingDiverged(
                        f"stage {run.name!r}: {bad_run} consecutive non-finite losses/gradients "
                        f"at step {step}; stopped. The last good checkpoint is {last_path}")
            with warnings.catch_warnings():  # lr follows the step even when a step is skipped
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
                scheduler.step()
            step += 1
            now = time.perf_counter()
            rate = optim.batch_size * info.world_size / max(now - tick, 1e-9)
            tick = now
            loss_value = float(out.loss.detach())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4g}", samples_s=f"{rate:.1f}")
            if step % max(cfg.log_every, 1) == 0 or step == stop:
                row = {"loss": loss_value, "lr": optimizer.param_groups[0]["lr"],
                       "samples_per_s": rate, "skipped_steps": bad_total}
                row.update({f"loss_{k}": v for k, v in out.terms.items()})
                log.log(step, epoch, "train", row)
            if cfg.eval_every > 0 and step % cfg.eval_every == 0 and step < total:
                validate()
            if cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0:
                checkpoint(last_path)
        # not again on a resume of a finished run (older checkpoints: from metrics.csv)
        done = validated_step == step if validated_step is not None else log.has(step, "val")
        if step >= total and not done:
            validate()
        checkpoint(last_path)
        if step >= total and info.is_main and (run.validate is None or not best_path.exists()):
            checkpoint(best_path)
    finally:
        if bar is not None:
            bar.close()
        log.close()
    distributed.barrier()
    summary = {"stage": run.name, "step": step, "total_steps": total, "finished": step >= total,
               "skipped_steps": bad_total, "best_epe": best if math.isfinite(best) else None,
               "val": metrics, "last": str(last_path), "best": str(best_path)}
    if info.is_main and step >= total:
        atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def run_steps(distiller: Distiller, dataset: Dataset, optim: OptimCfg, steps: int, seed: int,
              device: str = "cpu", epoch: int = 0) -> List[float]:
    """A few plain optimisation steps (no checkpoints): fine-tuning between pruning steps.

    Returns:
        The per-step losses (non-finite steps are skipped and reported as NaN).
    """
    optimizer = make_optimizer(distiller, optim)
    distiller.to(device).train()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    losses: List[float] = []
    for batch in make_loader(dataset, 0, steps, optim.batch_size, seed):
        seed_everything(mix_seed(seed, len(losses), 0xF7))
        batch = {k: v.to(device) for k, v in batch.items()}
        optimizer.zero_grad(set_to_none=True)
        out = distiller(batch["left"], batch["right"], batch["disparity"], batch["valid"],
                        epoch=epoch)
        if not torch.isfinite(out.loss):
            losses.append(math.nan)
            continue
        out.loss.backward()
        if _grads_finite(params):
            optimizer.step()
        losses.append(float(out.loss.detach()))
    return losses


def first_batch(dataset: Dataset, batch_size: int = 1, seed: int = 0) -> Dict[str, Tensor]:
    """The deterministic batch of step 0 (used to size adapters and trace for pruning)."""
    return next(iter(make_loader(dataset, 0, 1, batch_size, seed)))
