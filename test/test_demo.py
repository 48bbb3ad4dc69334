"""``dtp-stereo demo`` end to end: tiny checkpoint, real node, sample bag replayed via rclpy."""

import json
import math
import os

import cv2
import numpy as np
import pytest
import torch

from dtp_stereo.checkpoint import save_checkpoint
from dtp_stereo.cli.main import main
from dtp_stereo.models import build_model
from dtp_stereo.ros.transport import LOCAL_ONLY_TRANSPORT
from dtp_test_utils import tiny_dtpnet_config

TINY = tiny_dtpnet_config(64)
H, W, FRAMES = 64, 128, 3


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.ros
def test_demo_writes_summary_images_and_cloud(tmp_path, monkeypatch, capsys):
    pytest.importorskip("rclpy")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(1 + (os.getpid() + 7) % 200))
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", LOCAL_ONLY_TRANSPORT)  # as the demo sets it
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("dtpnet", **TINY))
    out = tmp_path / "demo_out"
    rc = main(["demo", "--frames", str(FRAMES), "--checkpoint", str(ckpt), "--output-dir",
               str(out), "--size", f"{H}x{W}", "--threads", "1",
               "--engine-cache-dir", str(tmp_path / "cache"), "--head", "fast"])
    assert rc == 0, capsys.readouterr().err
    # auto picked ONNX Runtime on this CPU, exported with the fast head
    assert [p.name.endswith("_head-fast.onnx") for p in (tmp_path / "cache").glob("*.onnx")] \
        == [True]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["head"] == "fast"
    assert summary["player"].startswith("separate process")  # the cross-process path
    assert summary["frames_published"] == FRAMES and summary["image_size"] == [H, W]
    received = summary["disparity_received"]
    assert 0 < received <= FRAMES
    assert received + summary["dropped_pairs"] + summary["errors"] >= FRAMES
    lat = summary["latency_end_to_end_ms"]
    assert lat["count"] == received
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    metrics = summary["metrics"]
    assert metrics["n_images"] == received and math.isfinite(metrics["epe"])
    assert summary["publish_rate_hz"] > 0 and summary["points2_received"] > 0

    pngs = sorted(out.glob("disparity_*.png"))
    assert len(pngs) == min(3, received) and len(list(out.glob("gt_*.png"))) == len(pngs)
    img = cv2.imread(str(pngs[0]))
    assert img is not None and img.shape == (H, W, 3)
    ply = (out / "cloud.ply").read_bytes()
    head = ply.split(b"end_header\n", 1)[0].decode("ascii").splitlines()
    assert head[0] == "ply"
    vertices = int(next(x for x in head if x.startswith("element vertex")).split()[-1])
    assert vertices > 0
    body = np.frombuffer(ply.split(b"end_header\n", 1)[1], dtype=np.uint8)
    assert body.size == vertices * (3 * 4 + 3)  # x, y, z float32 + r, g, b
    assert "EPE" in capsys.readouterr().out
