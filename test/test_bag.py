"""rosbag2 tools: sample bag round trip (sqlite3, mcap), decoding, bag_eval, play through rclpy."""

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dtp_stereo.backends.torch_backend import TorchBackend
from dtp_stereo.bag import (DEFAULT_TOPICS, bag_eval, bag_topics, image_to_numpy, play_bag,
                            read_stereo_pairs)
from dtp_stereo.cli.main import main
from dtp_stereo.data.synthetic import SyntheticStereo
from dtp_stereo.models import build_model
from dtp_stereo.tools.sample_bag import BASELINE_M, write_sample_bag
from dtp_test_utils import tiny_dtpnet_config

H, W, N = 32, 64, 3
TINY = tiny_dtpnet_config(16)
T = DEFAULT_TOPICS
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module", params=["sqlite3", "mcap"])
def sample_bag(request, tmp_path_factory):
    path = str(tmp_path_factory.mktemp(request.param) / "bag")
    write_sample_bag(path, n_frames=N, height=H, width=W, storage=request.param, seed=5,
                     max_disparity=16)
    return path


def _read_all(path):
    return list(read_stereo_pairs(path, T["left"], T["right"], T["gt"], T["left_info"],
                                  T["right_info"]))


def test_sample_bag_round_trip(sample_bag):
    assert bag_topics(sample_bag) == {
        T["left"]: "sensor_msgs/msg/Image", T["right"]: "sensor_msgs/msg/Image",
        T["left_info"]: "sensor_msgs/msg/CameraInfo",
        T["right_info"]: "sensor_msgs/msg/CameraInfo", T["gt"]: "sensor_msgs/msg/Image"}
    frames = _read_all(sample_bag)
    assert len(frames) == N
    stamps = [f.stamp_ns for f in frames]
    assert np.allclose(np.diff(stamps), 1e8)  # 10 Hz
    gen = SyntheticStereo(height=H, width=W, max_disparity=16, seed=5)
    for i, fr in enumerate(frames):
        ref = gen.sample(i)
        assert fr.left.shape == (H, W, 3) and fr.left.dtype == np.uint8
        np.testing.assert_array_equal(fr.left, ref["left"])
        np.testing.assert_array_equal(fr.right, ref["right"])
        assert fr.gt.shape == (H, W) and fr.gt.dtype == np.float32
        np.testing.assert_array_equal(fr.gt[ref["valid"]], ref["disparity"][ref["valid"]])
        for info in (fr.left_info, fr.right_info):
            assert _stamp(info) == fr.stamp_ns and info.distortion_model == "plumb_bob"
        fx = fr.right_info.p[0]
        assert fx == pytest.approx(0.8 * W) and fr.left_info.k[0] == fx
        assert fr.right_info.p[3] == pytest.approx(-fx * BASELINE_M) and fr.left_info.p[3] == 0


def _stamp(msg):
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def test_missing_topic_names_it(sample_bag):
    with pytest.raises(ValueError, match=r"\['/nope'\] not found.*/left/image_rect"):
        next(read_stereo_pairs(sample_bag, "/nope", T["right"]))


class _Img:
    def __init__(self, arr, encoding, step, bigendian=False):
        self.height, self.width = arr.shape[:2]
        self.encoding, self.step, self.is_bigendian = encoding, step, int(bigendian)
        rows = arr.reshape(arr.shape[0], -1).view(np.uint8)
        pad = np.zeros((arr.shape[0], step - rows.shape[1]), np.uint8)
        self.data = np.concatenate([rows, pad], axis=1).reshape(-1)


def test_image_to_numpy_encodings():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(image_to_numpy(_Img(rgb[..., ::-1].copy(), "bgr8", 12)), rgb)
    rgba = np.concatenate([rgb, np.full((2, 3, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_numpy(_Img(rgba, "rgba8", 16)), rgb)
    bgra = np.concatenate([rgb[..., ::-1], np.zeros((2, 3, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_numpy(_Img(bgra, "bgra8", 12)), rgb)
    m16 = np.array([[1, 258, 65535]], dtype=">u2")
    out = image_to_numpy(_Img(m16, "mono16", 8, bigendian=True))
    assert out.dtype == np.uint16 and out.tolist() == [[1, 258, 65535]]
    f32 = np.array([[0.5, np.nan], [2.0, 3.5]], dtype=np.float32)
    np.testing.assert_array_equal(image_to_numpy(_Img(f32, "32FC1", 8)), f32)
    mono = np.array([[7, 8, 9]], np.uint8)
    np.testing.assert_array_equal(image_to_numpy(_Img(mono, "mono8", 4)), mono)
    with pytest.raises(ValueError, match="cam: unsupported image encoding 'yuv422'"):
        image_to_numpy(_Img(mono, "yuv422", 4), "cam")
    short = _Img(mono, "mono8", 4)
    short.step = 2
    with pytest.raises(ValueError, match="needs step >= 3"):
        image_to_numpy(short)


def test_bag_eval_metrics_latency_and_output_bag(sample_bag, tmp_path):
    from rosbags.highlevel import AnyReader

    torch.manual_seed(0)
    backend = TorchBackend(build_model("dtpnet", **TINY))
    out = str(tmp_path / "out")
    report = bag_eval(sample_bag, backend, gt_topic=T["gt"], left_info_topic=T["left_info"],
                      right_info_topic=T["right_info"], output_bag=out, warmup=1)
    assert report["frames"] == N and report["backend"] == "torch"
    m = report["metrics"]
    assert m["n_images"] == N and all(np.isfinite(m[k]) for k in ("epe", "d1", "bad_1", "bad_3"))
    lat = report["latency_ms"]
    assert lat["count"] == N - 1
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert report["infer_ms"]["p50"] <= lat["p50"]
    assert bag_topics(out) == {"/disparity": "stereo_msgs/msg/DisparityImage",
                               "/points2": "sensor_msgs/msg/PointCloud2"}
    in_stamps = [f.stamp_ns for f in _read_all(sample_bag)]
    with AnyReader([Path(out)]) as reader:
        msgs = [(c.topic, reader.deserialize(raw, c.msgtype)) for c, _, raw in reader.messages()]
    disp = [m for t, m in msgs if t == "/disparity"]
    clouds = [m for t, m in msgs if t == "/points2"]
    assert len(disp) == len(clouds) == N
    assert [_stamp(d) for d in disp] == in_stamps
    d0 = image_to_numpy(disp[0].image)
    assert d0.shape == (H, W) and np.isfinite(d0).all()
    assert disp[0].f == pytest.approx(0.8 * W) and disp[0].t == pytest.approx(BASELINE_M)
    c0 = clouds[0]
    # x, y, z and rgb from the left image, as the node publishes them (use_color)
    assert (c0.height, c0.width, c0.point_step) == (H, W, 16)
    assert [f.name for f in c0.fields] == ["x", "y", "z", "rgb"]
    pts = np.frombuffer(bytes(c0.data), np.float32).reshape(H, W, 4)[..., :3]
    good = d0 > 0
    # z = f * B / d for every pixel with a positive disparity
    np.testing.assert_allclose(pts[..., 2][good], 0.8 * W * BASELINE_M / d0[good], rtol=1e-4)
    assert np.isnan(pts[~good]).all()


def test_bag_cli(tmp_path, capsys):
    bag = tmp_path / "cli_bag"
    assert main(["make-sample-bag", str(bag), "--frames", "2", "--size", "32x64",
                 "--storage", "mcap", "--max-disparity", "16"]) == 0
    torch.manual_seed(0)
    from dtp_stereo.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("dtpnet", **TINY))
    report = tmp_path / "r.json"
    out = tmp_path / "out_bag"
    assert main(["bag-eval", str(bag), "--gt", T["gt"], "--checkpoint", str(ckpt),
                 "--threads", "1", "--output-bag", str(out), "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["frames"] == 2 and data["metrics"]["n_images"] == 2
    assert set(bag_topics(str(out))) == {"/disparity", "/points2"}  # infos found as siblings
    assert "EPE" in capsys.readouterr().out
    assert main(["bag-eval", str(bag), "--left", "/missing", "--checkpoint", str(ckpt)]) == 2
    assert "/missing" in capsys.readouterr().err


def test_bag_eval_applies_the_nodes_preprocessing_and_output_options(tmp_path, capsys):
    """bag-eval takes the node's head, input size and output masks: the left band x < d is
    invalid by default and kept with --keep-left-band, points lose colour with --no-color, and
    a fixed --input-size runs the network at that size."""
    from rosbags.highlevel import AnyReader

    from dtp_stereo.checkpoint import save_checkpoint

    bag = tmp_path / "bag"
    assert main(["make-sample-bag", str(bag), "--frames", "1", "--size", "32x64",
                 "--max-disparity", "16"]) == 0
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("dtpnet", **TINY))

    def run(*extra):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        assert main(["bag-eval", str(bag), "--checkpoint", str(ckpt), "--backend", "torch",
                     "--threads", "1", "--output-bag", str(out), *extra]) == 0
        with AnyReader([out]) as reader:
            msgs = {c.topic: reader.deserialize(raw, c.msgtype)
                    for c, _, raw in reader.messages()}
        return image_to_numpy(msgs["/disparity"].image), msgs["/points2"]

    masked, cloud = run()
    kept, plain = run("--keep-left-band", "--no-color", "--head", "fast",
                      "--input-size", "64x96")
    cols = np.arange(W)[None, :]
    band = (kept > 0) & (cols < kept)
    assert band.any() and (masked[band] < 0).all()  # invalid by default, kept on request
    assert [f.name for f in cloud.fields][-1] == "rgb" and len(plain.fields) == 3
    assert main(["bag-eval", str(bag), "--checkpoint", str(ckpt), "--input-size", "64"]) == 2
    assert "--input-size must be HxW" in capsys.readouterr().err


def test_camera_images_decode_as_the_node_does():
    """Bags give the pipeline what the node gives it: RGB, mono replicated, 12-bit scaled."""
    from dtp_stereo.bag import camera_image_to_rgb
    from dtp_stereo.ros.conversions import numpy_to_image_msg

    mono12 = numpy_to_image_msg(np.full((4, 6), 4095, np.uint16), "mono16")
    rgb = camera_image_to_rgb(mono12, "/left/image_rect", bit_depth=12)
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint16 and rgb.min() >= 65000
    with pytest.raises(ValueError, match="/left/image_rect: unsupported image encoding"):
        camera_image_to_rgb(numpy_to_image_msg(np.zeros((4, 6), np.float32), "32FC1"),
                            "/left/image_rect")


@pytest.mark.ros
def test_play_bag_publishes_through_rclpy(sample_bag, monkeypatch):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    monkeypatch.setenv("ROS_DOMAIN_ID", str(1 + os.getpid() % 200))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    expected = _read_all(sample_bag)
    rclpy.init()
    from rosgraph_msgs.msg import Clock

    got = {"img": [], "info": [], "clock": []}
    node = rclpy.create_node("test_bag_play_sub")
    executor = SingleThreadedExecutor()
    thread = threading.Thread(target=executor.spin, daemon=True)
    try:
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, T["left"], got["img"].append, qos)
        node.create_subscription(CameraInfo, T["right_info"], got["info"].append, qos)
        node.create_subscription(Clock, "/clock", got["clock"].append, 50)
        executor.add_node(node)
        thread.start()
        t0 = time.monotonic()
        count = play_bag(sample_bag, rate=1.0, topics=[T["left"], T["right_info"]],
                         wait_for_subscribers=10.0, clock=True)
        assert count == 2 * N
        assert time.monotonic() - t0 >= (N - 1) * 0.1 * 0.9  # recorded 10 Hz pacing
        deadline = time.monotonic() + 5.0
        while (len(got["img"]) < N or len(got["info"]) < N) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        executor.shutdown()
        thread.join(timeout=5.0)
        node.destroy_node()
        rclpy.shutdown()
    assert len(got["img"]) == N and len(got["info"]) == N
    for msg, fr in zip(got["img"], expected):
        assert _stamp(msg) == fr.stamp_ns and msg.encoding == "rgb8"
        arr = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :3 * W]
        np.testing.assert_array_equal(arr.reshape(H, W, 3), fr.left)
    info = got["info"][0]
    assert info.p[3] == pytest.approx(-0.8 * W * BASELINE_M) and list(info.d) == [0.0] * 5
    # --clock: one /clock tick per message, at the recorded time (use_sim_time follows the bag)
    ticks = sorted({c.clock.sec * 10**9 + c.clock.nanosec for c in got["clock"]})
    assert ticks == [fr.stamp_ns for fr in expected]


@pytest.mark.ros
def test_play_bag_restamp_keeps_frames_together(sample_bag, monkeypatch):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    monkeypatch.setenv("ROS_DOMAIN_ID", str(1 + (os.getpid() + 3) % 200))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context)
    got = {"left": [], "right": [], "info": []}
    node = rclpy.create_node("test_bag_restamp_sub", context=context)
    executor = SingleThreadedExecutor(context=context)
    thread = threading.Thread(target=executor.spin, daemon=True)
    try:
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, T["left"], got["left"].append, qos)
        node.create_subscription(Image, T["right"], got["right"].append, qos)
        node.create_subscription(CameraInfo, T["left_info"], got["info"].append, qos)
        executor.add_node(node)
        thread.start()
        before = time.time_ns()
        count = play_bag(sample_bag, rate=0.0, topics=[T["left"], T["right"], T["left_info"]],
                         wait_for_subscribers=10.0, restamp=True, context=context)
        after = time.time_ns()
        assert count == 3 * N
        deadline = time.monotonic() + 5.0
        while min(len(v) for v in got.values()) < N and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        executor.shutdown()
        thread.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    recorded = [f.stamp_ns for f in _read_all(sample_bag)]
    left = [_stamp(m) for m in got["left"]]
    assert len(left) == N and len(set(left)) == N and left == sorted(left)
    assert [_stamp(m) for m in got["right"]] == left  # a pair keeps one (new) stamp
    assert [_stamp(m) for m in got["info"]] == left
    assert all(before <= s <= after for s in left) and not set(left) & set(recorded)


def test_camera_info_recorded_after_the_images(tmp_path):
    """The usual driver order: every frame still gets its own calibration, the outputs the left
    image's frame_id, and every frame its point cloud (issue 12)."""
    from rosbags.highlevel import AnyReader

    path = str(tmp_path / "late_info")
    write_sample_bag(path, n_frames=N, height=H, width=W, seed=5, max_disparity=16,
                     info_last=True)
    frames = _read_all(path)
    assert len(frames) == N
    for fr in frames:
        assert _stamp(fr.left_info) == _stamp(fr.right_info) == fr.stamp_ns
        assert fr.frame_id == "stereo_left_optical_frame"
    torch.manual_seed(0)
    backend = TorchBackend(build_model("dtpnet", **TINY))
    out = str(tmp_path / "out")
    report = bag_eval(path, backend, left_info_topic=T["left_info"],
                      right_info_topic=T["right_info"], output_bag=out)
    assert report["frames"] == N and report["frames_without_camera"] == 0
    with AnyReader([Path(out)]) as reader:
        msgs = [(c.topic, reader.deserialize(raw, c.msgtype)) for c, _, raw in reader.messages()]
    disp = [m for t, m in msgs if t == "/disparity"]
    assert len(disp) == len([m for t, m in msgs if t == "/points2"]) == N
    assert all(d.f == pytest.approx(0.8 * W) and d.t == pytest.approx(BASELINE_M) for d in disp)
    assert {m.header.frame_id for _, m in msgs} == {"stereo_left_optical_frame"}


def test_frames_before_the_first_camera_info_are_counted(tmp_path):
    """Info topics that start late: a frame waits for its camera_info until the next frame's
    images are complete, then takes the latest one seen; before any, it has none (no cloud)."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    src = str(tmp_path / "src")
    write_sample_bag(src, n_frames=N, height=H, width=W, seed=5, max_disparity=16)
    path = str(tmp_path / "late_start")
    with AnyReader([Path(src)]) as reader, Writer(path, version=Writer.VERSION_LATEST) as w:
        conns = {c.topic: w.add_connection(c.topic, c.msgtype, typestore=reader.typestore)
                 for c in reader.connections}
        stamps = sorted({stamp for _, stamp, _ in reader.messages()})
        for conn, stamp, raw in reader.messages():
            if conn.topic.endswith("camera_info") and stamp < stamps[2]:
                continue  # frames 0 and 1 have no camera_info
            w.write(conns[conn.topic], stamp, raw)
    backend = TorchBackend(build_model("dtpnet", **TINY))
    report = bag_eval(path, backend, left_info_topic=T["left_info"],
                      right_info_topic=T["right_info"])
    # frame 1 is completed when frame 2's images are, after frame 2's camera_info
    assert report["frames"] == N and report["frames_without_camera"] == 1


def _shift_right_stamps(src: str, dst: str, shift_ns: int) -> None:
    """Copy a bag, stamping the right camera's messages ``shift_ns`` later (its own clock)."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    with AnyReader([Path(src)]) as reader, Writer(dst, version=Writer.VERSION_LATEST) as w:
        ts = reader.typestore
        conns = {c.topic: w.add_connection(c.topic, c.msgtype, typestore=ts)
                 for c in reader.connections}
        for conn, stamp, raw in reader.messages():
            if conn.topic.startswith("/right/"):
                msg = reader.deserialize(raw, conn.msgtype)
                ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec + shift_ns
                msg.header.stamp = type(msg.header.stamp)(sec=ns // 10**9, nanosec=ns % 10**9)
                raw = ts.serialize_cdr(msg, conn.msgtype)
            w.write(conns[conn.topic], stamp, raw)


def test_slop_pairs_cameras_stamped_apart(tmp_path):
    """Drivers that stamp each camera on its own: exact matching finds nothing and says so;
    with a slop every frame pairs its own images, stamped as the left one (issue 12)."""
    src = str(tmp_path / "src")
    write_sample_bag(src, n_frames=N, height=H, width=W, seed=5, max_disparity=16)
    path = str(tmp_path / "skewed")
    _shift_right_stamps(src, path, 3_000_000)  # 3 ms; frames are 100 ms apart
    assert list(read_stereo_pairs(path, T["left"], T["right"])) == []
    backend = TorchBackend(build_model("dtpnet", **TINY))
    with pytest.raises(ValueError, match="no synchronized frames"):
        bag_eval(path, backend)
    exact = _read_all(src)
    frames = list(read_stereo_pairs(path, T["left"], T["right"], T["gt"], T["left_info"],
                                    T["right_info"], slop_s=0.01))
    assert [f.stamp_ns for f in frames] == [f.stamp_ns for f in exact]
    for got, want in zip(frames, exact):
        assert np.array_equal(got.left, want.left) and np.array_equal(got.right, want.right)
        assert _stamp(got.right_info) == got.stamp_ns + 3_000_000
    report = bag_eval(path, backend, left_info_topic=T["left_info"],
                      right_info_topic=T["right_info"], slop_s=0.01)
    assert report["frames"] == N and report["frames_without_camera"] == 0
    with pytest.raises(ValueError, match="slop_s must be >= 0"):
        next(read_stereo_pairs(path, T["left"], T["right"], slop_s=-1.0))
    from dtp_stereo.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("dtpnet", **TINY))
    assert main(["bag-eval", path, "--backend", "torch", "--slop", "0.01",
                 "--checkpoint", str(ckpt)]) == 0
