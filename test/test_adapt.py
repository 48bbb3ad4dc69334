"""dtp-train adapt (training/adapt.py): losses, proxy labels, data sources, the CLI, errors.

Small synthetic pairs written by the tests; a tiny student. These check the mechanics (the
losses are right, the output is an ordinary checkpoint of the same widths with the adaptation in
its provenance, bad input is named); what adaptation buys on real pairs is a benchmark.
"""

import math

import cv2
import numpy as np
import pytest
import torch

from dtp_stereo.checkpoint import load_checkpoint, load_model, save_checkpoint
from dtp_stereo.data.synthetic import SyntheticStereo
from dtp_stereo.models import build_model
from dtp_test_utils import tiny_dtpnet_config
from training.adapt import (AdaptCfg, AdaptError, adapt, load_bag_pairs, load_folder_pairs,
                            photometric_loss, proxy_labels, smoothness_loss, warp_right_to_left)
from training.cli import main

H, W = 64, 128
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _write_pairs(folder, n=3, size=(H, W), seed=3):
    gen = SyntheticStereo(height=size[0], width=size[1], max_disparity=24, seed=seed)
    for side in ("left", "right"):
        (folder / side).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        s = gen.sample(i)
        for side in ("left", "right"):
            cv2.imwrite(str(folder / side / f"{i:03d}.png"), s[side][..., ::-1])
    return folder


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("dtpnet", **tiny_dtpnet_config(32))
    path = tmp_path_factory.mktemp("student") / "tiny.pt"
    save_checkpoint(path, model)
    return path


def test_warp_and_photometric_loss_vanish_at_the_true_disparity():
    rng = np.random.default_rng(0)
    left = torch.from_numpy(rng.random((1, 3, 32, 64), dtype=np.float32))
    shift = 5
    right = torch.roll(left, -shift, dims=3)  # right(x) = left(x + 5): disparity 5 everywhere
    d = torch.full((1, 32, 64), float(shift))
    warped, inside = warp_right_to_left(right, d)
    assert torch.allclose(warped[..., shift:-shift], left[..., shift:-shift], atol=1e-5)
    assert inside[0, 0, :shift].sum() == 0 and inside[0, 0, shift:].all()
    good = photometric_loss(left, right, d)
    bad = photometric_loss(left, right, torch.full((1, 32, 64), 2.0))
    assert float(good) < 0.01 and float(good) < 0.05 * float(bad)  # SSIM windows at edges


def test_smoothness_is_zero_for_constant_disparity_and_edge_aware():
    img = torch.zeros(1, 3, 16, 16)
    assert float(smoothness_loss(torch.full((1, 16, 16), 3.0), img)) == pytest.approx(0.0)
    step = torch.ones(1, 16, 16)
    step[..., 8:] = 3.0
    edge = torch.zeros(1, 3, 16, 16)
    edge[..., 8:] = 1.0  # an image edge where the disparity jumps costs less
    assert float(smoothness_loss(step, edge)) < float(smoothness_loss(step, img))


def test_proxy_labels_keep_only_consistent_matches():
    gen = SyntheticStereo(height=96, width=192, max_disparity=32, seed=1)
    s = gen.sample(0)
    disp, conf = proxy_labels(s["left"], s["right"], 48)
    assert disp.shape == conf.shape == (96, 192) and set(np.unique(conf)) <= {0.0, 1.0}
    keep = conf > 0
    assert 0.2 < keep.mean() < 1.0  # SGBM matched part of the image, not the left band
    gt = s["disparity"]
    err = np.abs(disp - gt)[keep & s["valid"]]
    raw = np.abs(np.nan_to_num(disp) - gt)[s["valid"]]
    assert np.median(err) < 1.0 and err.mean() <= raw.mean()
    assert not keep[:, :8].any()  # no match left of the right image's field of view


def test_proxy_consensus_keeps_a_subset_where_block_sizes_agree():
    s = SyntheticStereo(height=96, width=192, max_disparity=32, seed=1).sample(0)
    single = {b: proxy_labels(s["left"], s["right"], 48, block_sizes=(b,)) for b in (3, 5, 7)}
    assert np.array_equal(single[5][0], proxy_labels(s["left"], s["right"], 48)[0])  # default
    disp, conf = proxy_labels(s["left"], s["right"], 48, block_sizes=(3, 5, 7))
    keep = conf > 0
    every = np.logical_and.reduce([c > 0 for _, c in single.values()])
    assert keep.any() and not (keep & ~every).any()  # only where all three are confident
    stack = np.stack([d for d, _ in single.values()])
    assert np.allclose(disp[keep], np.median(stack, 0)[keep])
    assert (np.abs(stack - disp[None]) <= 1.0)[:, keep].all()  # and agree within 1 px
    assert not disp[~keep].any()


@pytest.mark.parametrize("blocks", [(), (4,), (3, 17)])
def test_proxy_blocks_must_be_odd_block_sizes(blocks):
    with pytest.raises(AdaptError, match="proxy_blocks"):
        AdaptCfg(proxy_blocks=blocks)


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(AdaptError, match="no folder"):
        load_folder_pairs(tmp_path / "nothing")
    pairs = _write_pairs(tmp_path / "p", n=2)
    (pairs / "right" / "001.png").rename(pairs / "right" / "009.png")
    with pytest.raises(AdaptError, match=r"unmatched file names: only in left/ \['001.png'\]"):
        load_folder_pairs(pairs)
    sizes = _write_pairs(tmp_path / "s", n=2)
    cv2.imwrite(str(sizes / "right" / "001.png"), np.zeros((H, W // 2, 3), np.uint8))
    with pytest.raises(AdaptError, match="pair '001.png': left is 128x64, right is 64x64"):
        load_folder_pairs(sizes)
    (sizes / "left" / "001.png").write_bytes(b"not an image")
    with pytest.raises(AdaptError, match="cannot read"):
        load_folder_pairs(sizes)


def test_bag_source_and_its_errors(tmp_path):
    from pathlib import Path

    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    from dtp_stereo.tools.sample_bag import write_sample_bag

    bag = str(tmp_path / "bag")
    write_sample_bag(bag, n_frames=3, height=H, width=W, seed=2, max_disparity=24)
    pairs = load_bag_pairs(bag, "/left/image_rect", "/right/image_rect")
    assert len(pairs.names) == 3 and pairs.left[0].shape == (H, W, 3)
    with pytest.raises(AdaptError, match=r"topic\(s\) \['/cam/left'\] not found"):
        load_bag_pairs(bag, "/cam/left", "/right/image_rect")
    skewed = str(tmp_path / "skewed")  # right stamps 1 ms late: nothing pairs exactly
    with AnyReader([Path(bag)]) as reader, Writer(skewed, version=Writer.VERSION_LATEST) as out:
        conns = {c.topic: out.add_connection(c.topic, c.msgtype, typestore=reader.typestore)
                 for c in reader.connections}
        for conn, stamp, raw in reader.messages():
            if conn.topic == "/right/image_rect":
                msg = reader.deserialize(raw, conn.msgtype)
                msg.header.stamp.nanosec += 1_000_000
                raw = reader.typestore.serialize_cdr(msg, conn.msgtype)
            out.write(conns[conn.topic], stamp, raw)
    with pytest.raises(AdaptError, match="no synchronized pairs"):
        load_bag_pairs(skewed, "/left/image_rect", "/right/image_rect")


def test_adapt_writes_an_ordinary_checkpoint_of_the_same_widths(student, tmp_path):
    pairs = load_folder_pairs(_write_pairs(tmp_path / "pairs"))
    out = tmp_path / "adapted.pt"
    cfg = AdaptCfg(steps=3, batch_size=1, crop=(64, 96), log_every=1)
    summary = adapt(student, pairs, out, cfg, onnx=tmp_path / "adapted.onnx", progress=False,
                    tensorboard=False)
    assert summary["steps"] == 3 and summary["pairs"] == 3
    assert set(summary["final_losses"]) == {"loss", "proxy", "photometric", "smoothness",
                                            "anchor", "synthetic"}  # replay is on by default
    before, after = load_checkpoint(student), load_checkpoint(out)
    assert after.model_config == before.model_config and after.model_name == "dtpnet"
    prov = after.provenance["adapt"]
    assert prov["data"]["pairs"] == 3 and len(prov["data"]["sha256_16"]) == 3
    assert prov["settings"]["steps"] == 3 and after.provenance["parent"] == str(student)
    changed = [k for k, v in after.state_dict.items()
               if v.dtype.is_floating_point and not torch.equal(v, before.state_dict[k])]
    assert changed  # the weights moved
    bn_mean = [k for k in before.state_dict if k.endswith("running_mean")]
    assert all(torch.equal(after.state_dict[k], before.state_dict[k]) for k in bn_mean)
    model, _ = load_model(out)
    assert model(torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)).disparity.shape == \
        (1, 64, 128)
    assert (tmp_path / "adapted.onnx").stat().st_size > 1000
    with pytest.raises(AdaptError, match="exists; pass --force"):
        adapt(student, pairs, out, cfg, progress=False, tensorboard=False)


@pytest.mark.parametrize("synthetic_weight", [0.0, 0.5])
def test_adapt_resumes_a_cut_run_exactly(student, tmp_path, monkeypatch, synthetic_weight):
    """Also with the synthetic replay on: its scenes are indexed by step, so a resumed run
    sees the same ones."""
    import training.adapt as adapt_module

    pairs = load_folder_pairs(_write_pairs(tmp_path / "pairs", n=2))
    cfg = AdaptCfg(steps=4, batch_size=1, crop=(64, 96), checkpoint_every=2, proxy="none",
                   synthetic_weight=synthetic_weight)
    summary = adapt(student, pairs, tmp_path / "full.pt", cfg, progress=False,
                    tensorboard=False)
    assert ("synthetic" in summary["final_losses"]) == (synthetic_weight > 0)
    real, calls = adapt_module.photometric_loss, []

    def killed_at_step_3(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(adapt_module, "photometric_loss", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        adapt(student, pairs, tmp_path / "cut.pt", cfg, progress=False, tensorboard=False)
    assert (tmp_path / "cut.pt.adapt_state.pt").exists() and not (tmp_path / "cut.pt").exists()
    monkeypatch.setattr(adapt_module, "photometric_loss", real)
    with pytest.raises(AdaptError, match="other settings"):
        adapt(student, pairs, tmp_path / "cut.pt", AdaptCfg(**{**cfg.__dict__, "lr": 1e-4}),
              resume=True, progress=False, tensorboard=False)
    adapt(student, pairs, tmp_path / "cut.pt", cfg, resume=True, progress=False,
          tensorboard=False)
    assert not (tmp_path / "cut.pt.adapt_state.pt").exists()
    full, cut = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "cut.pt")
    assert all(torch.equal(full.state_dict[k], cut.state_dict[k]) for k in full.state_dict)


def test_cli(student, tmp_path, capsys):
    pairs = _write_pairs(tmp_path / "pairs", n=2)
    out = tmp_path / "cli.pt"
    rc = main(["adapt", "--checkpoint", str(student), "--pairs", str(pairs), "--output",
               str(out), "--steps", "2", "--batch-size", "1", "--crop", "64x96", "--quiet",
               "--threads", "1"])
    assert rc == 0 and out.exists()
    assert '"steps": 2' in capsys.readouterr().out
    rc = main(["adapt", "--checkpoint", str(student), "--pairs", str(pairs), "--output",
               str(tmp_path / "flags.pt"), "--steps", "1", "--batch-size", "1", "--crop", "64x96",
               "--quiet", "--threads", "1", "--lr-schedule", "constant", "--anchor-on",
               "unlabelled", "--proxy-blocks", "3+5+7"])
    settings = load_checkpoint(tmp_path / "flags.pt").provenance["adapt"]["settings"]
    assert rc == 0 and settings["lr_schedule"] == "constant"
    assert settings["anchor_on"] == "unlabelled" and tuple(settings["proxy_blocks"]) == (3, 5, 7)
    capsys.readouterr()
    rc = main(["adapt", "--checkpoint", str(student), "--pairs", str(pairs), "--output",
               str(tmp_path / "z.pt"), "--proxy-blocks", "3,5", "--quiet"])
    assert rc == 2 and "--proxy-blocks '3,5'" in capsys.readouterr().err
    rc = main(["adapt", "--checkpoint", str(student), "--pairs", str(tmp_path / "none"),
               "--output", str(tmp_path / "x.pt"), "--quiet"])
    assert rc == 2 and "no folder" in capsys.readouterr().err
    rc = main(["adapt", "--checkpoint", str(student), "--pairs", str(pairs), "--output",
               str(tmp_path / "y.pt"), "--proxy", "none", "--photometric-weight", "0",
               "--quiet"])
    assert rc == 2 and "must be on" in capsys.readouterr().err


def test_adapt_benchmark_variants_are_typed_and_checked():
    from benchmarks.adapt_real import parse_variant

    assert parse_variant("default") == ("default", {})
    assert parse_variant("proxy_only:photometric_weight=0,smoothness_weight=0") == (
        "proxy_only", {"photometric_weight": 0.0, "smoothness_weight": 0.0})
    assert parse_variant("p:proxy=none,steps=600,crop=128x160") == (
        "p", {"proxy": "none", "steps": 600, "crop": (128, 160)})
    assert parse_variant("c:proxy_blocks=3+5+7") == ("c", {"proxy_blocks": (3, 5, 7)})
    with pytest.raises(SystemExit, match="nonsense"):
        parse_variant("x:nonsense=1")
    with pytest.raises(AdaptError):  # no loss left to teach the scene: refused before any run
        parse_variant("x:proxy=none,photometric_weight=0")


def test_cosine_schedule_and_unlabelled_anchor(student, tmp_path):
    """lr_schedule=cosine decays from lr to 0 over the steps; anchor_on=unlabelled anchors only
    the pixels without a proxy label, so it differs from the all-pixel anchor; bad names are
    refused."""
    from training.adapt import learning_rate

    cfg = AdaptCfg(steps=4, lr=1e-3, lr_schedule="cosine")
    lrs = [learning_rate(cfg, s) for s in range(4)]
    assert lrs == pytest.approx([1e-3, 8.5355e-4, 5e-4, 1.4645e-4], rel=1e-4)
    assert learning_rate(AdaptCfg(lr=1e-3, lr_schedule="constant"), 3) == 1e-3
    pairs = load_folder_pairs(_write_pairs(tmp_path / "pairs", n=2))
    anchors = {}
    for where in ("all", "unlabelled"):
        # two steps: at the first the network still equals the anchor, so the anchor loss is 0
        cfg = AdaptCfg(steps=2, batch_size=1, crop=(64, 96), anchor_on=where,
                       synthetic_weight=0.0, lr_schedule="cosine", log_every=1)
        summary = adapt(student, pairs, tmp_path / f"{where}.pt", cfg, progress=False,
                        tensorboard=False)
        anchors[where] = summary["final_losses"]["anchor"]
    assert all(math.isfinite(v) and v > 0 for v in anchors.values())
    assert anchors["all"] != anchors["unlabelled"]
    with pytest.raises(AdaptError, match="lr_schedule"):
        AdaptCfg(lr_schedule="linear")
    with pytest.raises(AdaptError, match="anchor_on"):
        AdaptCfg(anchor_on="some")
    with pytest.raises(AdaptError, match="needs the proxy labels"):
        AdaptCfg(anchor_on="unlabelled", proxy="none")
