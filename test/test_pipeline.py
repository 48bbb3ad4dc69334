"""The tiny end-to-end pipeline (teacher -> distill -> prune -> finetune -> eval -> export),
the report plots, and config loading (unknown keys, overrides)."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dtp_stereo.checkpoint import load_checkpoint, load_model
from training.cli import main
from training.config import (ConfigError, PipelineCfg, apply_overrides, from_dict, load_config,
                             parse_overrides)

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny") / "run"
    rc = main(["--config", str(TINY), "--run-dir", str(run), "--quiet", "threads=1"])
    assert rc == 0
    return run


def test_every_stage_writes_its_files(tiny_run):
    for stage in ("teacher", "distill", "finetune"):
        for name in ("last.pt", "best.pt", "metrics.csv", "summary.json"):
            assert (tiny_run / stage / name).is_file(), f"{stage}/{name}"
        assert list((tiny_run / stage / "tb").glob("events.out.tfevents.*"))
    for rel in ("prune/best.pt", "prune/summary.json", "eval/results.json", "export/model.onnx",
                "export/model.pt", "export/export.json", "config.yaml", "results.json"):
        assert (tiny_run / rel).is_file(), rel


def test_metrics_are_finite(tiny_run):
    for stage in ("teacher", "distill", "finetune"):
        with (tiny_run / stage / "metrics.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert any(r["split"] == "train" and r["name"] == "loss" for r in rows)
        assert any(r["split"] == "val" and r["name"] == "epe" for r in rows)
        assert all(math.isfinite(float(r["value"])) for r in rows)
    res = json.loads((tiny_run / "eval" / "results.json").read_text())
    assert set(res["models"]) == {"teacher", "distill", "prune", "finetune"}
    for entry in list(res["models"].values()) + [res["sgbm"]]:
        for key in ("epe", "d1", "bad_2", "latency_ms"):
            assert math.isfinite(entry[key]), key


def test_pruning_removed_about_half_the_parameters(tiny_run):
    summary = json.loads((tiny_run / "prune" / "summary.json").read_text())
    assert 0.35 <= summary["param_reduction"] <= 0.65
    distilled = load_checkpoint(tiny_run / "distill" / "best.pt")
    pruned = load_checkpoint(tiny_run / "prune" / "best.pt")
    n = lambda sd: sum(v.numel() for k, v in sd.items() if "running" not in k  # noqa: E731
                       and "num_batches" not in k)
    assert n(pruned.state_dict) < 0.7 * n(distilled.state_dict)
    assert pruned.provenance["prune"]["params_before"] == summary["params_before"]
    assert pruned.provenance["parent"].endswith("distill/best.pt")
    finetuned = load_checkpoint(tiny_run / "finetune" / "best.pt")
    assert finetuned.model_config == pruned.model_config


def test_onnx_matches_the_final_checkpoint(tiny_run):
    exp = json.loads((tiny_run / "export" / "export.json").read_text())
    assert exp["max_abs_diff_px"] <= 1e-3
    model, _ = load_model(tiny_run / "export" / "model.pt")
    g = torch.Generator().manual_seed(5)
    left, right = torch.rand(1, 3, 64, 128, generator=g), torch.rand(1, 3, 64, 128, generator=g)
    with torch.no_grad():
        ref = model(left, right).disparity.numpy()
    sess = ort.InferenceSession(str(tiny_run / "export" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    got = sess.run(["disparity"], {"left": left.numpy(), "right": right.numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-3


def test_report_writes_plots(tiny_run, tmp_path):
    assert main(["report", str(tiny_run), "--out", str(tmp_path)]) == 0
    for name in ("run_curves.png", "pareto.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_config_rejects_unknown_keys_naming_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("distill:\n  optim:\n    lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*distill\.optim\.lrr"):
        load_config(bad)
    with pytest.raises(ConfigError, match="prune.bogus"):
        load_config(TINY, ["prune.bogus=1"])
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(TINY, ["seed=abc"])
    assert main(["--config", str(bad)]) == 2


def test_overrides_are_typed_and_nested():
    cfg = load_config(TINY, ["distill.optim.lr=1e-4", "prune.example_size=[32, 64]",
                             "distill.loss.points=[]", "distill.loss.supervision=gt"])
    assert cfg.distill.optim.lr == pytest.approx(1e-4)
    assert cfg.prune.example_size == (32, 64)
    assert cfg.distill.loss.points == ()
    assert parse_overrides(["a.b=[1, 2]"]) == {"a.b": [1, 2]}
    assert apply_overrides({"a": {"c": 1}}, {"a.b": 2}) == {"a": {"c": 1, "b": 2}}
    with pytest.raises(ConfigError, match="teacher.loss.supervision"):
        from_dict(PipelineCfg, {"teacher": {"loss": {"supervision": "teacher"}}})


def test_shipped_configs_load():
    paths = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(paths) >= 8  # configs/ and configs/real/
    for path in paths:
        cfg = load_config(path)
        assert cfg.stages and cfg.data.train.name


def test_dataset_specs_are_typed_and_max_disparity_is_cross_checked():
    """data.* are DatasetCfg (typed keys, errors naming the key and file) and every stated
    max_disparity of a config agrees."""
    cfg = load_config(TINY)
    assert cfg.data.train.spec()["max_disparity"] == 48 and "root" not in cfg.data.train.spec()
    with pytest.raises(ConfigError, match=r"tiny\.yaml.*data\.train\.heigth"):
        load_config(TINY, ["data.train.heigth=64"])
    with pytest.raises(ConfigError, match=r"data\.val\.size must be an integer"):
        load_config(TINY, ["data.val.size=two"])
    with pytest.raises(ConfigError, match=r"max_disparity differs.*data\.val\.max_disparity = 64"
                       r".*student_model\.config\.max_disparity = 48"):
        load_config(TINY, ["data.val.max_disparity=64"])


def test_student_overrides_fine_tune_a_full_head_checkpoint_with_the_fast_head(tiny_run, tmp_path):
    """student_model.overrides switch the head of a loaded checkpoint (same weights); the
    fine-tuned checkpoint records the new head."""
    pruned = tiny_run / "prune" / "best.pt"
    assert load_checkpoint(pruned).model_config.get("head", "full") == "full"
    run = tmp_path / "fast"
    rc = main(["--config", str(TINY), "--run-dir", str(run), "--quiet", "threads=1",
               "--stages", "finetune", f"student_model.checkpoint={pruned}",
               "student_model.overrides.head=fast", "finetune.optim.steps=2",
               "finetune.loss.supervision=gt", "finetune.loss.points=[]"])
    assert rc == 0
    model, ckpt = load_model(run / "finetune" / "best.pt")
    assert ckpt.model_config["head"] == "fast" and model.config.head == "fast"


def test_extra_validation_splits_are_logged_and_pick_best_on_their_mean(tiny_run, tmp_path):
    """data.val_extra: each extra split is logged as <name>_<metric>, best.pt is picked on
    select_epe (the mean EPE of val and the extras), and val_extra without val is refused."""
    run = tmp_path / "extra"
    small = "{name: synthetic, split: val, size: 2, height: 32, width: 64, max_disparity: 48}"
    rc = main(["--config", str(TINY), "--run-dir", str(run), "--quiet", "threads=1",
               "--stages", "finetune",
               f"student_model.checkpoint={tiny_run / 'prune' / 'best.pt'}",
               f"data.val_extra={{small: {small}}}", "finetune.optim.steps=4",
               "finetune.eval_every=2", "finetune.loss.supervision=gt", "finetune.loss.points=[]"])
    assert rc == 0
    with (run / "finetune" / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val"]
    by_step: dict = {}
    for r in rows:
        by_step.setdefault(int(r["step"]), {})[r["name"]] = float(r["value"])
    assert sorted(by_step) == [2, 4]
    for m in by_step.values():
        assert math.isfinite(m["small_epe"]) and m["small_epe"] != m["epe"]
        assert m["select_epe"] == pytest.approx((m["epe"] + m["small_epe"]) / 2)
    best_step = min(by_step, key=lambda s: by_step[s]["select_epe"])
    best = load_checkpoint(run / "finetune" / "best.pt")
    assert best.training_state["step"] == best_step
    with pytest.raises(ConfigError, match="data.val_extra needs data.val"):
        load_config(TINY, ["data.val=null", f"data.val_extra={{small: {small}}}"])
