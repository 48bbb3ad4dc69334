"""Killed-and-resumed training ends bit-identical to an uninterrupted run; NaN steps are
skipped and too many in a row stop the stage with the last good checkpoint kept."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from dtp_stereo.checkpoint import load_checkpoint, save_checkpoint
from dtp_stereo.models import build_model
from training.config import DistillCfg, OptimCfg, PointCfg, StageCfg, load_config
from training.data.datasets import build_dataset
from training.distill import Distiller
from training.stages import run_pipeline
from training.trainer import StageRun, TrainingDiverged, batch_indices, train_stage

ROOT = Path(__file__).resolve().parents[1]
STUDENT = dict(max_disparity=16, stem=(8, 8, 8), layer1_mids=(8,), layer1_out=8,
               layer2_mids=(8,), layer2_out=8, fuse=(8, 8), c2d=(8, 8), pre=(8,),
               hourglass=(8, 8, 8, 8), classifier=8)
TEACHER = dict(STUDENT, fuse=(8, 16))  # different feature width -> an adapter


def _cfg(run_dir: Path, supervision: str):
    points = "[]" if supervision == "gt" else (
        "[{name: logits, teacher_tap: logits, student_tap: logits, loss: kl},"
        " {name: feat, teacher_tap: features, student_tap: features, loss: cosine}]")
    return load_config(ROOT / "configs" / "tiny.yaml", [
        f"run_dir={run_dir}", "threads=1", "progress=false", "tensorboard=false",
        "data.train={name: synthetic, split: train, size: 6, height: 32, width: 64,"
        " max_disparity: 16, augment: true}",
        "data.val={name: synthetic, split: val, size: 1, height: 32, width: 64,"
        " max_disparity: 16}", "data.test=null",
        "student_model.name=dtpnet", f"student_model.config={json.dumps(STUDENT)}",
        "distill.optim.steps=5", "distill.optim.batch_size=2", "distill.optim.scheduler=cosine",
        "distill.optim.warmup_steps=2", "distill.checkpoint_every=2", "distill.eval_every=2",
        "distill.log_every=1", f"distill.loss.supervision={supervision}",
        f"distill.loss.points={points}", "distill.loss.temperature_end=3.0"])


def _flat(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _flat(obj[k], f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flat(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _assert_identical(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    for key in ca.state_dict:
        assert torch.equal(ca.state_dict[key], cb.state_dict[key]), key
    ta, tb = ca.training_state, cb.training_state
    assert ta["step"] == tb["step"] == 5
    for part in ("optimizer", "scheduler", "adapters"):
        fa, fb = dict(_flat(ta[part])), dict(_flat(tb[part]))
        assert fa.keys() == fb.keys()
        for k, v in fa.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, fb[k]), f"{part}{k}"
            else:
                assert v == fb[k], f"{part}{k}"


def _teacher(run_dir: Path) -> None:
    torch.manual_seed(7)
    save_checkpoint(run_dir / "teacher" / "best.pt", build_model("dtpnet", **TEACHER),
                    model_name="dtpnet")


@pytest.mark.parametrize("supervision", ["gt", "teacher"])
def test_killed_and_resumed_run_is_bit_identical(tmp_path, supervision):
    torch.set_num_threads(1)
    full, killed = tmp_path / "full", tmp_path / "killed"
    if supervision == "teacher":
        _teacher(full)
        shutil.copytree(full / "teacher", killed / "teacher")
    run_pipeline(_cfg(full, supervision), ["distill"])
    run_pipeline(_cfg(killed, supervision), ["distill"], max_steps=3)
    assert load_checkpoint(killed / "distill" / "last.pt").training_state["step"] == 3
    assert not (killed / "distill" / "summary.json").exists()
    run_pipeline(_cfg(killed, supervision), ["distill"], resume=True)
    _assert_identical(full / "distill" / "last.pt", killed / "distill" / "last.pt")
    _assert_identical(full / "distill" / "best.pt", killed / "distill" / "best.pt")
    if supervision == "teacher":
        assert load_checkpoint(full / "distill" / "last.pt").training_state["adapters"]

    def rows(run):  # timing columns (samples/s) naturally differ
        return [r for r in (run / "distill" / "metrics.csv").read_text().splitlines()
                if "samples_per_s" not in r]
    assert rows(killed) == rows(full)
    assert sum(",train,loss," in r for r in rows(killed)) == 5  # no duplicates after resume


def test_batches_shard_ranks_and_depend_only_on_seed_and_step():
    a = [batch_indices(s, 10, 2, seed=3, rank=0, world_size=2) for s in range(2)]
    b = [batch_indices(s, 10, 2, seed=3, rank=1, world_size=2) for s in range(2)]
    assert a == [batch_indices(s, 10, 2, seed=3, rank=0, world_size=2) for s in range(2)]
    assert not set(sum(a, [])) & set(sum(b, []))  # one epoch: ranks never share a sample
    assert len(set(sum(a, []) + sum(b, []))) == 8


class _Poisoned(torch.utils.data.Dataset):
    """Wraps a dataset; samples in ``bad`` get a NaN left image."""

    def __init__(self, base, bad):
        self.base, self.bad = base, set(bad)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        s = dict(self.base[i])
        if i in self.bad:
            s["left"] = torch.full_like(s["left"], float("nan"))
        return s


def _nan_run(tmp_path: Path, bad):
    torch.manual_seed(0)
    data = build_dataset({"name": "synthetic", "split": "train", "size": 4, "height": 32,
                          "width": 64, "max_disparity": 16})
    student = build_model("dtpnet", **STUDENT)
    d = Distiller(student, None, DistillCfg(supervision="gt", points=()))
    run = StageRun("distill", d, "dtpnet", _Poisoned(data, bad), tmp_path, seed=1,
                   progress=False, tensorboard=False)
    cfg = StageCfg(optim=OptimCfg(steps=4, batch_size=1), checkpoint_every=1, max_bad_steps=2)
    return run, cfg, student


def test_nan_steps_are_skipped_and_counted(tmp_path):
    run, cfg, _ = _nan_run(tmp_path, bad=[batch_indices(1, 4, 1, seed=1)[0]])
    summary = train_stage(run, cfg)
    assert summary["finished"] and summary["skipped_steps"] == 1
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert all(torch.isfinite(v).all() for v in ckpt.state_dict.values() if v.is_floating_point())


def test_consecutive_nan_steps_stop_with_last_good_checkpoint(tmp_path):
    run, cfg, student = _nan_run(tmp_path, bad=range(4))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="2 consecutive non-finite"):
        train_stage(run, cfg)
    for k, v in student.state_dict().items():
        assert torch.equal(v, before[k]), k  # no update was applied
    assert not (tmp_path / "best.pt").exists()


def test_nan_point_names_in_config_are_unique():
    pts = (PointCfg("a", "logits", "logits"), PointCfg("a", "logits", "logits"))
    with pytest.raises(ValueError, match="unique"):
        Distiller(build_model("dtpnet", **STUDENT), build_model("dtpnet", **STUDENT),
                  DistillCfg(points=pts))


def _val_steps(run_dir: Path):
    import csv

    with (run_dir / "distill" / "metrics.csv").open(newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)
                if r["split"] == "val" and r["name"] == "epe"]


def test_resume_of_a_finished_run_adds_no_rows_and_survives_a_corrupt_results_file(
        tmp_path, caplog):
    run = tmp_path / "run"
    cfg = _cfg(run, "gt")
    run_pipeline(cfg, ["distill"], resume=True)
    assert _val_steps(run) == [2, 4, 5]
    (run / "results.json").write_text('{"distill": {"stage"')  # as a kill mid-write left it
    with caplog.at_level("WARNING"):
        results = run_pipeline(cfg, ["distill"], resume=True)
    assert _val_steps(run) == [2, 4, 5]  # the finished run is not validated again
    assert results["distill"]["finished"]
    first_val = results["distill"]["val"]
    assert first_val and "epe" in first_val  # ... and keeps its metrics
    last = load_checkpoint(run / "distill" / "last.pt")
    assert last.provenance["metrics"] == first_val and last.training_state["val_step"] == 5
    assert json.loads((run / "results.json").read_text())["distill"]["step"] == 5
    assert (run / "results.json.corrupt").exists()
    assert any("results.json is not readable JSON" in r.message for r in caplog.records)


def test_resume_with_a_changed_config_warns_with_the_changes(tmp_path, caplog):
    run = tmp_path / "run"
    run_pipeline(_cfg(run, "gt"), ["distill"], resume=True, max_steps=2)
    changed = load_config(run / "config.yaml", ["distill.optim.lr=0.123"])
    with caplog.at_level("WARNING"):
        run_pipeline(changed, ["distill"], resume=True, max_steps=2)
    text = " ".join(r.message for r in caplog.records)
    assert "changed config" in text and "distill.optim.lr" in text and "0.123" in text
