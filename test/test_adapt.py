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
                            lr_consistent, merge_labels, photometric_loss, proxy_labels,
                            smoothness_loss, teacher_labels, warp_right_to_left)
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


def test_padded_proxies_label_the_left_band_that_opencv_leaves_invalid():
    """sgbm_disparity(pad_left=True) matches the left numDisparities columns too; the labels
    there are right, and none points outside the right image."""
    from dtp_stereo.baselines import sgbm_disparity

    s = SyntheticStereo(height=96, width=192, max_disparity=32, seed=1).sample(0)
    plain = sgbm_disparity(s["left"], s["right"], 48, fill=False)
    padded = sgbm_disparity(s["left"], s["right"], 48, fill=False, pad_left=True)
    assert padded.shape == plain.shape == (96, 192)
    assert np.isnan(plain[:, :48]).all() and np.isfinite(padded[:, :48]).mean() > 0.3
    disp, conf = proxy_labels(s["left"], s["right"], 48, pad=True)
    band = conf[:, :48] > 0
    assert band.mean() > 0.2 and not (proxy_labels(s["left"], s["right"], 48)[1][:, :48]).any()
    err = np.abs(disp - s["disparity"])[:, :48][band & s["valid"][:, :48]]
    assert np.median(err) < 1.0 and (err > 2).mean() < 0.1
    xs = np.arange(192)[None, :].repeat(96, 0)
    assert (disp[conf > 0] <= xs[conf > 0] + 0.5).all()  # every match lies in the right image


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
               "unlabelled", "--proxy-blocks", "3+5+7",
               "--no-proxy-pad" if AdaptCfg().proxy_pad else "--proxy-pad"])
    settings = load_checkpoint(tmp_path / "flags.pt").provenance["adapt"]["settings"]
    assert rc == 0 and settings["lr_schedule"] == "constant"
    assert settings["proxy_pad"] is not AdaptCfg().proxy_pad  # the flag flips the default
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
    assert parse_variant("b:proxy_pad=1") == ("b", {"proxy_pad": True})
    assert parse_variant("b:proxy_pad=False") == ("b", {"proxy_pad": False})
    with pytest.raises(SystemExit, match="proxy_pad takes"):
        parse_variant("b:proxy_pad=maybe")
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


def test_lr_consistency_keeps_matches_whose_right_view_agrees():
    disp_l = np.full((8, 32), 4.0, np.float32)
    disp_r = np.full((8, 32), 4.0, np.float32)
    disp_r[:, 10:14] = 9.0  # the right view disagrees at x - d in 10..13, so at x in 14..17
    label, conf = lr_consistent(disp_l, disp_r, 192, 1.0)
    assert not conf[:, :4].any()  # the match x - 4 falls left of the right image
    assert not conf[:, 14:18].any() and conf[:, 4:14].all() and conf[:, 18:].all()
    assert np.array_equal(label, np.where(conf > 0, 4.0, 0.0))
    disp_l[0, 20] = np.nan  # no match: never confident
    assert lr_consistent(disp_l, disp_r, 192, 1.0)[1][0, 20] == 0
    assert not lr_consistent(disp_l, disp_r, 4, 1.0)[1].any()  # d must be below the range


def test_merge_labels_prefers_the_first_source_and_fills_from_the_second():
    first = (np.array([[1.0, 0.0, 0.0]], np.float32), np.array([[1.0, 0.0, 0.0]], np.float32))
    second = (np.array([[7.0, 2.0, 0.0]], np.float32), np.array([[1.0, 1.0, 0.0]], np.float32))
    label, conf = merge_labels(first, second)
    assert label.tolist() == [[1.0, 2.0, 0.0]] and conf.tolist() == [[1.0, 1.0, 0.0]]


def test_teacher_proxy_labels_cover_what_sgbm_leaves_and_are_checked(student, tmp_path):
    """proxy=teacher takes a frozen network's left-right-consistent disparity; sgbm+teacher
    keeps SGBM's labels and adds the teacher's where SGBM has none; a teacher is required by
    (and only by) the teacher proxies, and a missing one is named."""
    s = SyntheticStereo(height=H, width=W, max_disparity=24, seed=3).sample(0)
    net, _ = load_model(student)
    label, conf = teacher_labels(net.eval(), s["left"], s["right"], 32)
    assert label.shape == conf.shape == (H, W) and set(np.unique(conf)) <= {0.0, 1.0}
    assert not label[conf == 0].any()
    pairs = load_folder_pairs(_write_pairs(tmp_path / "pairs", n=2))
    cover = {}
    for proxy in ("sgbm", "teacher", "sgbm+teacher"):
        cfg = AdaptCfg(steps=1, batch_size=1, crop=(64, 96), synthetic_weight=0.0, proxy=proxy,
                       proxy_teacher=str(student) if "teacher" in proxy else "")
        summary = adapt(student, pairs, tmp_path / f"{proxy.replace('+', '_')}.pt", cfg,
                        progress=False, tensorboard=False)
        cover[proxy] = summary["proxy_coverage"]
        assert "proxy" in summary["final_losses"]
    assert cover["sgbm+teacher"] >= max(cover["sgbm"], cover["teacher"]) - 1e-6
    settings = load_checkpoint(tmp_path / "sgbm_teacher.pt").provenance["adapt"]["settings"]
    assert settings["proxy"] == "sgbm+teacher" and settings["proxy_teacher"] == str(student)
    with pytest.raises(AdaptError, match="proxy_teacher"):
        AdaptCfg(proxy="teacher")
    with pytest.raises(AdaptError, match="proxy_teacher"):
        AdaptCfg(proxy="sgbm", proxy_teacher=str(student))
    with pytest.raises(AdaptError, match="proxy must be one of"):
        AdaptCfg(proxy="gwcnet")
    missing = AdaptCfg(steps=1, batch_size=1, crop=(64, 96), proxy="teacher",
                       proxy_teacher=str(tmp_path / "no_teacher.pt"))
    with pytest.raises(AdaptError, match="no_teacher.pt"):
        adapt(student, pairs, tmp_path / "m.pt", missing, progress=False, tensorboard=False)
    rc = main(["adapt", "--checkpoint", str(student), "--pairs", str(tmp_path / "pairs"),
               "--output", str(tmp_path / "cli.pt"), "--steps", "1", "--batch-size", "1",
               "--crop", "64x96", "--quiet", "--threads", "1", "--proxy", "teacher",
               "--proxy-teacher", str(student), "--synthetic-weight", "0"])
    assert rc == 0
    assert load_checkpoint(tmp_path / "cli.pt").provenance["adapt"]["settings"]["proxy"] == \
        "teacher"
