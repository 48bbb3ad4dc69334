"""Tests of the side-by-side benchmark (dtp_stereo.tools.bench, dtp-stereo bench), conv bound."""

import importlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import dtp_stereo.models  # noqa: F401  (registers the architectures)
from dtp_stereo.tools.bench import (BenchJob, ModelSpec, build_spec_model, interleaved_ratio,
                                    measure, parse_model_spec, parse_size, run_benchmark,
                                    run_job)
from dtp_stereo.checkpoint import save_checkpoint
from dtp_stereo.cli.bench import format_markdown
from dtp_stereo.cli.main import main as cli_main
from dtp_stereo.complexity import count_parameters
from dtp_stereo.models._registry import build_model
from dtp_test_utils import tiny_dtpnet_config

REPO = Path(__file__).resolve().parents[1]
TINY = tiny_dtpnet_config(32, c2d=(8, 8))
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _load_script(name: str):
    return importlib.import_module(f"benchmarks.{name}")


def test_run_benchmark_results_and_ratios():
    specs = [ModelSpec("ref", "dtpnet", dict(TINY)),
             ModelSpec("fast", "dtpnet", dict(TINY, head="fast"))]
    report = run_benchmark(specs, [(64, 128)], ["torch", "onnxruntime"], threads=1, repeats=2,
                           warmup=1, reference="ref", isolate=False)
    assert report["schema"] == "dtp_stereo.bench/1"
    assert report["host"]["threads"] == 1 and report["host"]["torch_version"]
    assert "conv-only" in report["macs_counter"]
    results = {(r["model"], r["backend"]): r for r in report["results"]}
    assert set(results) == {(m, b) for m in ("ref", "fast") for b in ("torch", "onnxruntime")}
    n_params = count_parameters(build_model("dtpnet", **TINY))
    for (model, backend), r in results.items():
        assert r["status"] == "ok", r
        assert r["size"] == "64x128" and r["repeats_done"] == 2 and r["finite_output"]
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["max"]
        assert r["params"] == n_params and r["macs"] > 0
        ref = results[("ref", backend)]
        vs = r["vs_reference"]
        assert vs["speedup_x"] == pytest.approx(ref["latency_ms"]["median"] / lat["median"])
        assert vs["params_x"] == pytest.approx(1.0)  # the heads share every conv
    assert results[("ref", "torch")]["vs_reference"]["speedup_x"] == pytest.approx(1.0)
    table = format_markdown(report)
    assert table.count("\n| ref |") == 2 and table.count("\n| fast |") == 2


def test_isolated_job_reports_its_own_peak_memory():
    job = BenchJob(model=ModelSpec("tiny", "dtpnet", dict(TINY, head="fast")), height=64,
                   width=128, threads=1, repeats=2, warmup=1)
    r = run_job(job, isolate=True)
    assert r["status"] == "ok", r
    assert r["isolated"] is True and r["repeats_done"] == 2
    assert r["peak_rss_mb"] > r["peak_above_baseline_mb"] > 0


def test_time_cap_skips_with_reason_and_unavailable_cuda_is_recorded():
    spec = ModelSpec("tiny", "dtpnet", dict(TINY))
    skipped = measure(BenchJob(model=spec, height=64, width=128, time_cap_s=1e-6))
    assert skipped["status"] == "skipped" and "time cap" in skipped["reason"]
    assert "latency_ms" not in skipped
    if not torch.cuda.is_available():
        cuda = measure(BenchJob(model=spec, height=64, width=128, backend="torch-cuda"))
        assert cuda["status"] == "unavailable" and "CUDA" in cuda["reason"]


def test_parse_specs_and_sizes(tmp_path):
    assert parse_size("256x512") == (256, 512)
    with pytest.raises(ValueError, match="HxW"):
        parse_size("256")
    fast = parse_model_spec("dtpnet_fast")
    assert (fast.label, fast.name, fast.config) == ("dtpnet_fast", "dtpnet", {"head": "fast"})
    assert parse_model_spec("psmnet").name == "psmnet"
    with pytest.raises(ValueError, match="does not exist"):
        parse_model_spec(f"pruned={tmp_path / 'missing.pt'}")
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, build_model("dtpnet", **TINY), model_name="dtpnet")
    spec = parse_model_spec(f"tiny_fast={ckpt}:head=fast")
    assert (spec.label, spec.checkpoint, spec.config) == ("tiny_fast", str(ckpt), {"head": "fast"})
    assert build_spec_model(spec).config.head == "fast"
    assert build_spec_model(parse_model_spec(f"tiny={ckpt}")).config.head == "full"
    with pytest.raises(ValueError, match="key=value"):
        parse_model_spec(f"tiny={ckpt}:head")


def test_cli_bench_writes_json_for_a_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, build_model("dtpnet", **TINY), model_name="dtpnet")
    out = tmp_path / "bench.json"
    rc = cli_main(["bench", "--models", f"pruned={ckpt}", "--sizes", "64x128", "--backends",
                   "torch", "--threads", "1", "--repeats", "2", "--warmup", "1",
                   "--reference", "pruned", "--in-process", "--output", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    (r,) = report["results"]
    assert r["model"] == "pruned" and r["status"] == "ok"
    assert r["vs_reference"]["speedup_x"] == pytest.approx(1.0)
    assert "| pruned | 64x128 | torch |" in capsys.readouterr().out
    assert cli_main(["bench", "--sizes", "64", "--in-process"]) == 2


def test_conv_bound_measures_positive_times():
    conv_bound = _load_script("conv_bound")
    model = build_model("dtpnet", **dict(TINY, head="fast")).eval()
    res = conv_bound.measure_conv_bound(model, 64, 128, repeats=2, warmup=1)
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert res["n_conv_calls"] >= n_convs  # the feature extractor runs on both images
    assert res["model_ms"] > 0 and res["conv_ms"] > 0
    lo, hi = res["ratio_range"]
    assert 0 < lo <= res["ratio"] <= hi  # median of the per-round ratios
    assert len(res["top_convs"]) == 5 and res["top_convs"][0]["ms"] >= res["top_convs"][-1]["ms"]


def test_precision_model_runs_each_precision_and_returns_float32():
    precision = _load_script("precision_accuracy")
    torch.manual_seed(0)
    model = build_model("dtpnet", **TINY).eval()
    x = torch.rand(1, 3, 64, 128)
    y = torch.roll(x, -4, dims=3)
    with torch.inference_mode():
        ref = precision.PrecisionModel(model, "fp32")(x, y).disparity
        for name in precision.PRECISIONS[1:]:
            out = precision.PrecisionModel(model, name)(x, y)
            assert out.disparity.dtype == torch.float32 and out.confidence.dtype == torch.float32
            diff = (out.disparity - ref).abs()
            assert 0 < float(diff.max()) < 1.0  # rounded, but the same prediction
    assert next(model.parameters()).dtype == torch.float32  # fp16_all used a copy
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.PrecisionModel(model, "int4")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_interleaved_ratio_same_model_is_about_one(backend, tmp_path):
    spec = ModelSpec(label="tiny", name="dtpnet", config=dict(TINY, head="fast"))
    other = ModelSpec(label="tiny2", name="dtpnet", config=dict(TINY, head="fast"))
    res = interleaved_ratio(spec, other, 64, 128, backend=backend, rounds=3, per_round=2,
                            threads=1, onnx_dir=str(tmp_path))
    assert (res["reference"], res["model"], res["size"]) == ("tiny", "tiny2", "64x128")
    assert len(res["round_ratios"]) == 3
    assert res["ratio_min"] <= res["ratio"] <= res["ratio_max"]
    assert 0.2 < res["ratio"] < 5.0  # same architecture: about 1, whatever the machine
    with pytest.raises(ValueError, match="torch or onnxruntime"):
        interleaved_ratio(spec, other, 64, 128, backend="tensorrt")


@pytest.mark.ros
def test_node_overhead_pairs_bare_and_node_frames(monkeypatch):
    pytest.importorskip("rclpy")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(1 + (os.getpid() + 11) % 200))
    node_overhead = _load_script("node_overhead")
    from dtp_stereo.backends.torch_backend import TorchBackend

    torch.manual_seed(0)
    backend = TorchBackend(build_model("dtpnet", **dict(TINY, head="fast")), threads=1)
    res = node_overhead.measure_node_overhead(backend, 64, 128, repeats=4, warmup=1)
    assert res["repeats"] == 4 and res["lost"] == 0
    assert res["bare_ms"] > 0 and res["node_ms"] > 0
    assert res["overhead_pct_p10"] <= res["overhead_pct"] <= res["overhead_pct_p90"]


def test_op_timings_reference_formulas_match_the_implementation():
    ops = _load_script("op_timings")
    from dtp_stereo.models.dtpnet import ShiftCorrelation
    from dtp_stereo.models.layers import regress

    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(1, 4, 6, 20, generator=g), torch.randn(1, 4, 6, 20, generator=g)
    assert torch.allclose(ops.conv_shift_correlation(4, 5)(left, right),
                          ShiftCorrelation(4, 5)(left, right), atol=1e-6)
    logits = torch.randn(1, 16, 5, 7, generator=g)
    for a, b in zip(ops.plain_regress(logits), regress(logits)):
        assert torch.allclose(a, b, atol=1e-4)


def test_ort_profile_sees_softmax_only_in_the_plain_export(tmp_path):
    prof = _load_script("ort_profile")
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, build_model("dtpnet", **TINY), model_name="dtpnet")
    outs = {}
    for flag in ([], ["--plain-softmax"]):
        out = tmp_path / f"p{len(flag)}.json"
        assert prof.main(["--checkpoint", str(ckpt), "--size", "64x128", "--runs", "1",
                          "--threads", "1", "--output", str(out)] + flag) == 0
        outs[bool(flag)] = json.loads(out.read_text())
    assert "Softmax" in outs[True]["ms_per_op_type"]
    assert "Softmax" not in outs[False]["ms_per_op_type"]
    assert "Exp" in outs[False]["ms_per_op_type"] and outs[False]["total_kernel_ms"] > 0


def test_ship_model_refresh_replaces_only_the_named_sections(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "ship_model", Path(__file__).resolve().parents[1] / "scripts" / "ship_model.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    card = tmp_path / "m.json"
    card.write_text(json.dumps({"name": "m", "test_metrics": {"epe": 3.0},
                                "speed": {"ratio_to_sgbm": 1.09}}))
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"size": "480x640", "backend": "onnxruntime",
                                 "host": {"threads": 2}, "student_ms": 55.0, "sgbm_ms": 66.0,
                                 "ratio_student_over_sgbm": 0.83}))
    assert ship.main(["unused.pt", "--name", "m", "--out-dir", str(tmp_path), "--refresh",
                      "--speed", str(speed)]) == 0
    got = json.loads(card.read_text())
    assert got["speed"]["ratio_to_sgbm"] == 0.83 and got["speed"]["ms_per_frame"] == 55.0
    assert got["test_metrics"] == {"epe": 3.0} and len(got["refreshed_by"]) == 1
    assert ship.main(["unused.pt", "--name", "absent", "--out-dir", str(tmp_path), "--refresh",
                      "--speed", str(speed)]) == 2
    assert ship.main(["unused.pt", "--name", "m", "--out-dir", str(tmp_path), "--refresh"]) == 2
    # a corrected lineage: --inherit-training (and --stage-dirs) replace the training sections
    parent = tmp_path / "parent.json"
    parent.write_text(json.dumps({"training": [{"samples_seen": 10, "crop": [2, 3],
                                                "wall_hours": 0.5}]}))
    assert ship.main(["unused.pt", "--name", "m", "--out-dir", str(tmp_path), "--refresh",
                      "--inherit-training", str(parent)]) == 0
    got = json.loads(card.read_text())
    assert got["training_pixels_seen"] == 60 and got["training_wall_hours"] == 0.5
    assert got["speed"]["ms_per_frame"] == 55.0 and len(got["refreshed_by"]) == 2
    # --steps-used alone recounts the card's own stages (the first stage has no stage_dir)
    got["training"][0]["stage_dir"] = "runs/p"
    got["training"][0]["steps_done"] = 10
    card.write_text(json.dumps(got))
    assert ship.main(["unused.pt", "--name", "m", "--out-dir", str(tmp_path), "--refresh",
                      "--steps-used", "runs/p=4"]) == 0
    got = json.loads(card.read_text())
    assert got["training"][0]["samples_seen"] == 4 and got["training_pixels_seen"] == 24
    assert got["test_metrics"] == {"epe": 3.0} and got["training_wall_hours"] == 0.5
    assert ship.main(["unused.pt", "--name", "m", "--out-dir", str(tmp_path), "--refresh",
                      "--steps-used", "runs/q=4"]) == 2


def test_ship_model_training_lineage_from_a_parent_card_and_a_committed_stage(tmp_path):
    """--inherit-training puts the parent card's stages first; a committed stage folder
    (metrics.csv, no TensorBoard) with its config gives steps from the CSV, samples, pixels and
    hours estimated from the median logged samples/s; the totals add both; --steps-used counts
    samples up to the step whose weights went on."""
    spec = importlib.util.spec_from_file_location(
        "ship_model", Path(__file__).resolve().parents[1] / "scripts" / "ship_model.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    parent = tmp_path / "parent.json"
    parent.write_text(json.dumps({"training": [
        {"stage_dir": "runs/a/distill", "samples_seen": 100, "crop": [128, 256],
         "wall_hours": 1.0}]}))
    stage = tmp_path / "real_x"
    stage.mkdir()
    rows = ["step,epoch,split,name,value"]
    for step, rate in ((10, 2.0), (20, 4.0), (30, 4.0)):
        rows += [f"{step},0,train,loss,1.0", f"{step},0,train,samples_per_s,{rate}"]
    rows.append("30,0,val,epe,2.5")
    (stage / "metrics.csv").write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "x.yaml"
    cfg.write_text("data:\n  train: {name: synthetic, augment: {crop_size: [256, 512]}}\n"
                   "distill:\n  optim: {steps: 100, batch_size: 8, lr: 0.001}\n"
                   "  loss: {supervision: gt}\n")
    got = ship.training_summary([f"{stage}={cfg}"], str(parent))
    first, second = got["training"]
    assert first["pixels_seen"] == 100 * 128 * 256
    assert second["steps_done"] == 30 and second["samples_seen"] == 240
    assert second["pixels_seen"] == 240 * 256 * 512 and second["planned_steps"] == 100
    assert second["wall_hours_estimated"] == round(240 / 4.0 / 3600, 3)
    assert got["training_pixels_seen"] == 100 * 128 * 256 + 240 * 256 * 512
    assert got["training_wall_hours"] == round(1.0 + 240 / 4.0 / 3600, 3)
    # --steps-used: the weights that went on were step 20's (a best.pt): samples count to it, the
    # hours and steps_done keep the whole stage; an inherited stage without a batch size scales
    used = ship.training_summary([f"{stage}={cfg}"], str(parent),
                                 ship.parse_steps_used([f"{stage}=20", "runs/a/distill=50"]))
    inherited, listed = used["training"]
    assert listed["steps_used"] == 20 and listed["steps_done"] == 30
    assert listed["samples_seen"] == 160 and listed["pixels_seen"] == 160 * 256 * 512
    assert listed["wall_hours_estimated"] == second["wall_hours_estimated"]
    assert "samples_seen" in inherited and inherited["steps_used"] == 50
    assert used["training_wall_hours"] == got["training_wall_hours"]
    with pytest.raises(ValueError, match="no training stage 'runs/b'"):
        ship.training_summary([], str(parent), {"runs/b": 3})
    with pytest.raises(ValueError, match="ran 30 steps"):
        ship.training_summary([f"{stage}={cfg}"], None, {str(stage): 31})
    with pytest.raises(ValueError, match="STAGE_DIR=STEP"):
        ship.parse_steps_used(["runs/a@0.25"])
    with pytest.raises(ValueError, match="no folder"):
        ship.training_summary([str(tmp_path / "absent")], None)


def test_claims_table_reads_finished_rows_and_real_pairs(tmp_path):
    table = _load_script("claims_table")
    root = tmp_path / "claims"
    metrics = {"epe": 3.5, "d1": 9.9, "bad_2": 13.2, "params": 100}
    for row, stage in (("gt", "distill"), ("pruned", "finetune")):
        (root / row / "eval").mkdir(parents=True)
        (root / row / "eval" / "results.json").write_text(
            json.dumps({"models": {stage: metrics}}))
        folder = root / row if stage == "distill" else root / row / stage
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps({"best_epe": 3.4, "step": 1200}))
    (root / "kl").mkdir()  # unfinished: no eval, no row
    real = tmp_path / "real.json"
    real.write_text(json.dumps({"label": "gt", "dataset": {"scale": 0.5},
                                "per_image": [{"name": "aloe", "epe": 2.0, "bad_2": 20.0}],
                                "comparison": {"pruned": {"per_image": [
                                    {"name": "aloe", "epe": 1.5, "bad_2": 15.0}]}}}))
    out = tmp_path / "claims.json"
    assert table.main(["--root", str(root), "--real", str(real), "--output", str(out)]) == 0
    rows = {r["row"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"gt", "pruned"}
    assert rows["gt"]["real"] == {"aloe@0.5": {"epe": 2.0, "bad_2": 20.0}}
    assert rows["pruned"]["real"]["aloe@0.5"]["epe"] == 1.5 and rows["pruned"]["steps"] == 1200
    assert table.main(["--root", str(tmp_path / "none")]) == 2


def test_proxy_quality_counts_coverage_and_the_what_if_figure(monkeypatch):
    """benchmarks/proxy_quality.py with labels made up from the ground truth: exact on the left
    half of the image (there they are the only covered pixels) except one wrong column. Coverage,
    label errors and the what-if bad-2 then follow from the ground truth and the model's own
    errors, computed here independently."""
    import training.adapt as adapt_module
    from dtp_stereo.backends.torch_backend import TorchBackend
    from dtp_stereo.data.synthetic import SyntheticStereo
    from dtp_stereo.pipeline import StereoPipeline

    quality = _load_script("proxy_quality")
    torch.manual_seed(0)
    model = build_model("dtpnet", **tiny_dtpnet_config(32)).eval()
    scene = SyntheticStereo(height=64, width=128, max_disparity=24, seed=5).sample(0)
    gt = scene["disparity"]

    pads = []

    def made_up_labels(left, right, max_disparity, lr_check_px=1.0, block_sizes=(5,),
                       pad=False):
        pads.append(pad)
        conf = np.zeros_like(gt)
        conf[:, :64] = 1.0
        labels = gt.copy()
        labels[:, 0] += 5.0  # one wrong column of 64 covered ones
        return labels * conf, conf

    monkeypatch.setattr(adapt_module, "proxy_labels", made_up_labels)
    got = quality.pair_quality(model, scene["left"], scene["right"], gt, 32)
    valid = np.isfinite(gt) & (gt > 0) & (gt < 32)
    left_half = np.zeros_like(valid)
    left_half[:, :64] = True
    assert got["coverage_pct"] == pytest.approx(100 * (valid & left_half).sum() / valid.sum())
    covered = valid & left_half
    assert got["proxy_bad2_covered"] == pytest.approx(100 * covered[:, 0].sum() / covered.sum())
    pipeline = StereoPipeline(TorchBackend(model, fuse_bn=False))
    err = np.abs(pipeline(scene["left"], scene["right"]) - gt)
    bad_right = (err > 2) & valid & ~left_half
    expected = 100 * (covered[:, 0].sum() + bad_right.sum()) / valid.sum()
    assert got["bad2_if_labels_fitted"] == pytest.approx(expected)
    assert got["model_bad2_uncovered"] == pytest.approx(
        100 * bad_right.sum() / (valid & ~left_half).sum())
    band = np.zeros_like(valid)
    band[:, :got["proxy_range_px"]] = True  # the columns unpadded SGBM never labels
    assert got["left_band_share_pct"] == pytest.approx(100 * (valid & band).sum() / valid.sum())
    assert got["model_bad2_left_band"] == pytest.approx(
        100 * ((err > 2) & valid & band).sum() / (valid & band).sum())
    assert pads == [False]
    quality.pair_quality(model, scene["left"], scene["right"], gt, 32, pad=True)
    assert pads == [False, True]  # --proxy-pad on reaches the labels
