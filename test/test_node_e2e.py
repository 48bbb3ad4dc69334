"""End-to-end: the real StereoNode over rclpy / Fast DDS on loopback, in one process.

Each test runs its own node in its own namespace on a private context and ROS domain. The
good-path test uses a tiny DTPnet checkpoint through the torch backend; the others use fake
backends with known outputs (exact geometry checks) or a deliberate delay (overload).
"""

import os
import sys
import threading
import time
import types
import uuid
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("stereo_msgs.msg")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402
from rclpy.exceptions import InvalidHandle  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from stereo_msgs.msg import DisparityImage  # noqa: E402

from dtp_stereo.backends.base import InferenceResult  # noqa: E402
from dtp_stereo.node import PARAMETERS, StereoNode  # noqa: E402
from dtp_stereo.ros import conversions as conv  # noqa: E402

pytestmark = pytest.mark.ros

H, W, FX, BASELINE = 64, 128, 100.0, 0.1


class FakeBackend:
    """Returns a known disparity (a horizontal ramp, pixels); optionally sleeps per call."""

    name, device, max_disparity, size_divisor, input_size = "fake", "cpu", 48, 8, None

    def __init__(self, delay_s=0.0):
        self.delay_s = delay_s
        self.calls = 0

    def infer(self, left, right):
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        h, w = left.shape[:2]
        ramp = np.tile(np.linspace(2.0, 40.0, w, dtype=np.float32), (h, 1))
        ramp[:, :3] = -1.0  # invalid columns
        return InferenceResult(disparity=ramp, confidence=np.full((h, w), 0.5, np.float32))


def _spin(executor, context):
    """``executor.spin()`` that survives entities destroyed while it waits on them.

    Tests create and destroy nodes and subscriptions on the shared executor; rclpy can raise
    ``InvalidHandle`` ("destruction was requested") from the wait set when that races with a
    wait, which would end a plain ``spin()`` thread and stall every later test.
    """
    while context.ok():
        try:
            executor.spin_once(timeout_sec=0.05)
        except InvalidHandle:
            continue
        except ExternalShutdownException:
            break


@pytest.fixture(scope="module")
def ros():
    """A private rclpy context on a random domain, an executor thread and a helper node."""
    context = rclpy.Context()
    domain = int(os.environ.get("DTP_TEST_DOMAIN_ID", 100 + uuid.uuid4().int % 100))
    rclpy.init(context=context, domain_id=domain)
    executor = SingleThreadedExecutor(context=context)
    helper = rclpy.create_node("e2e_helper", context=context)
    executor.add_node(helper)
    thread = threading.Thread(target=_spin, args=(executor, context), daemon=True)
    thread.start()
    yield context, executor, helper
    executor.shutdown()
    helper.destroy_node()
    rclpy.shutdown(context=context)
    thread.join(timeout=5.0)


class Harness:
    """Publishes stereo input into a namespace and records the node's outputs."""

    def __init__(self, ros, backend=None, params=None):
        context, self.executor, self.helper = ros
        self.ns = "/t" + uuid.uuid4().hex[:8]
        overrides = [Parameter("diagnostics_period_s", value=0.1)]
        overrides += [Parameter(k, value=v) for k, v in (params or {}).items()]
        self.node = StereoNode(backend=backend, namespace=self.ns, context=context,
                               parameter_overrides=overrides)
        self.executor.add_node(self.node)
        self.got = {"disparity": [], "points2": [], "depth": [], "confidence": [],
                    "disparity/color": [], "diag": []}
        self._subs = []
        for topic, cls in (("disparity", DisparityImage), ("points2", PointCloud2),
                           ("depth", Image), ("confidence", Image), ("disparity/color", Image)):
            self._subs.append(self.helper.create_subscription(
                cls, f"{self.ns}/{topic}", lambda m, t=topic: self.got[t].append(m), 10))
        self._subs.append(self.helper.create_subscription(
            DiagnosticArray, "/diagnostics", self._on_diag, 50))
        self.pubs = {t: self.helper.create_publisher(c, f"{self.ns}/{t}", 10)
                     for t, c in (("left/image_rect", Image), ("right/image_rect", Image),
                                  ("left/camera_info", CameraInfo),
                                  ("right/camera_info", CameraInfo))}
        self.rng = np.random.default_rng(0)
        wait_for(lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values())
                 and self.node.count_subscribers(f"{self.ns}/disparity") > 0)

    def _on_diag(self, msg):
        for status in msg.status:
            if status.hardware_id == f"{self.ns}/dtp_stereo_node":
                self.got["diag"].append(status)

    def close(self):
        for sub in self._subs:
            self.helper.destroy_subscription(sub)
        for pub in self.pubs.values():
            self.helper.destroy_publisher(pub)
        self.executor.remove_node(self.node)
        self.node.destroy_node()

    def info(self, side, stamp, width=W, height=H, baseline=BASELINE, doffs=0.0):
        msg = CameraInfo()
        msg.header.stamp, msg.header.frame_id = stamp, "cam_left"
        msg.width, msg.height = width, height
        s = width / W
        fx, cx, cy = FX * s, (width - 1) / 2, (height - 1) / 2
        cx += doffs if side == "right" else 0.0  # doffs = cx_right - cx_left
        msg.k = [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0]
        tx = -fx * baseline if side == "right" else 0.0
        msg.p = [fx, 0.0, cx, tx, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return msg

    def publish(self, left=None, right=None, infos=True, info_kw=None, encoding="rgb8"):
        """Publish one stereo pair (random texture by default); returns its header."""
        stamp = self.helper.get_clock().now().to_msg()
        if infos:
            for side in ("left", "right"):
                self.pubs[f"{side}/camera_info"].publish(self.info(side, stamp,
                                                                   **(info_kw or {})))
            time.sleep(0.02)
        for side, img in (("left", left), ("right", right)):
            if img is None:
                img = self.rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            if isinstance(img, Image):
                msg = img
            else:
                msg = conv.numpy_to_image_msg(img, encoding)
            msg.header.stamp, msg.header.frame_id = stamp, f"cam_{side}"
            self.pubs[f"{side}/image_rect"].publish(msg)
        return stamp

    def last_diag(self):
        return self.got["diag"][-1] if self.got["diag"] else None

    def diag_values(self):
        return {kv.key: kv.value for kv in self.last_diag().values}


def wait_for(predicate, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    raise AssertionError("timed out waiting for a condition")


@pytest.fixture
def harness_factory(ros):
    made = []

    def make(**kw):
        made.append(Harness(ros, **kw))
        return made[-1]

    yield make
    for h in made:
        h.close()


def test_torch_backend_outputs_consistent_geometry(ros, harness_factory, tmp_path):
    import torch

    from dtp_stereo.checkpoint import save_checkpoint
    from dtp_stereo.models import build_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("dtpnet", max_disparity=16, stem=(8, 8, 8), layer1_mids=(8,),
                        layer1_out=8, layer2_mids=(8,), layer2_out=8, fuse=(8, 8), c2d=(8, 4),
                        pre=(8,), hourglass=(8, 8, 8, 8), classifier=8)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model, model_name="dtpnet")
    h = harness_factory(params={"backend": "torch", "checkpoint": str(ckpt),
                                "latency_budget_ms": 10000.0, "head": "fast",
                                "channels_last": True})
    backend = h.node.backend
    assert backend.name == "torch" and backend.channels_last and backend.fuse_bn
    assert backend.model.config.head == "fast"  # the checkpoint was saved with the full head
    stamp = h.publish()
    wait_for(lambda: h.got["disparity"] and h.got["points2"] and h.got["depth"])
    disp_msg, cloud = h.got["disparity"][0], h.got["points2"][0]
    for msg in (disp_msg, cloud, h.got["depth"][0]):
        assert msg.header.stamp == stamp and msg.header.frame_id == "cam_left"
    assert disp_msg.f == pytest.approx(FX) and disp_msg.t == pytest.approx(BASELINE)
    # soft-argmax over planes 0..D-1: the largest reportable disparity is D - 1 = 15 px
    assert disp_msg.max_disparity == pytest.approx(15.0) and disp_msg.min_disparity == 0.0
    assert disp_msg.delta_d == pytest.approx(conv.DELTA_D)
    win = disp_msg.valid_window
    assert (win.x_offset, win.y_offset, win.width, win.height) == (0, 0, W, H)
    disp, valid = conv.disparity_image_to_numpy(disp_msg)
    points, colors = conv.pointcloud2_to_numpy(cloud)
    assert disp.shape == (H, W) and points.shape == (H, W, 3) and colors is not None
    assert cloud.is_dense is False
    ok = valid & (disp > 0)
    assert ok.any()
    expected = FX * BASELINE / disp[ok]
    np.testing.assert_allclose(points[..., 2][ok], expected, rtol=1e-4)
    assert np.isnan(points[~ok]).all()
    wait_for(lambda: h.last_diag() is not None and h.diag_values()["frames_out"] == "1")
    assert h.last_diag().level == DiagnosticStatus.OK
    values = h.diag_values()
    assert values["model"] == f"dtpnet ({ckpt})" and values["backend"] == "torch"
    assert values["device"] == "cpu" and values["network_input"] == f"{H}x{W}"
    for key in ("rate_hz", "dropped_pairs", "end_to_end_ms_p50", "convert_ms_p50",
                "inference_ms_p50", "postprocess_ms_p50", "publish_ms_p50"):
        assert key in values


def test_known_disparity_gives_z_f_t_over_d_and_scaled_camera(harness_factory):
    h = harness_factory(backend=FakeBackend())
    # camera_info at twice the image resolution: intrinsics are scaled to the output size.
    h.publish(info_kw={"width": 2 * W, "height": 2 * H})
    wait_for(lambda: h.got["disparity"] and h.got["points2"] and h.got["confidence"])
    disp_msg = h.got["disparity"][0]
    assert disp_msg.f == pytest.approx(FX) and disp_msg.t == pytest.approx(BASELINE)
    assert disp_msg.max_disparity == pytest.approx(47.0)  # D - 1 (no resize)
    disp, valid = conv.disparity_image_to_numpy(disp_msg)
    ramp = np.linspace(2.0, 40.0, W, dtype=np.float32)
    np.testing.assert_allclose(disp[10, 3:], ramp[3:], rtol=1e-6)
    assert not valid[:, :3].any() and (disp[:, :3] < disp_msg.min_disparity).all()
    points, _ = conv.pointcloud2_to_numpy(h.got["points2"][0])
    for u in (3, 50, W - 1):
        assert points[20, u, 2] == pytest.approx(FX * BASELINE / ramp[u], rel=1e-5)
        assert points[20, u, 0] == pytest.approx((u - (W - 1) / 2) * points[20, u, 2] / FX,
                                                 rel=1e-4)
    assert np.isnan(points[:, :3]).all()
    conf = conv.image_msg_to_numpy(h.got["confidence"][0])
    np.testing.assert_allclose(conf, 0.5)
    # nearer than f·T / (D - 1 - 1) the network saturates: diagnostics say where that is
    wait_for(lambda: h.last_diag() is not None
             and "nearest_measurable_depth_m" in h.diag_values())
    assert float(h.diag_values()["nearest_measurable_depth_m"]) == \
        pytest.approx(FX * BASELINE / 46.0, abs=1e-3)


def test_resized_network_input_rescales_disparity_and_range(harness_factory):
    # max_width W/2: the network runs at half size, outputs come back at the input size
    h = harness_factory(backend=FakeBackend(), params={"max_width": W // 2})
    h.publish()
    wait_for(lambda: h.got["disparity"] and h.got["points2"])
    msg = h.got["disparity"][0]
    assert (msg.image.width, msg.image.height) == (W, H)
    assert msg.max_disparity == pytest.approx(2 * 47.0)  # (D - 1) x scale 2
    assert msg.delta_d == pytest.approx(2 * conv.DELTA_D)
    assert msg.f == pytest.approx(FX) and msg.t == pytest.approx(BASELINE)
    disp, valid = conv.disparity_image_to_numpy(msg)
    # network ramp 2..40 px over W/2 columns; input column u samples network x = (u+.5)/2-.5
    x = (W // 2 + 0.5) / 2 - 0.5
    assert disp[H // 2, W // 2] == pytest.approx(2 * (2.0 + 38.0 * x / (W // 2 - 1)), rel=1e-4)
    assert disp[H // 2, W - 1] == pytest.approx(80.0, rel=1e-4)
    points, _ = conv.pointcloud2_to_numpy(h.got["points2"][0])
    ok = valid & (disp > 0)
    np.testing.assert_allclose(points[..., 2][ok], FX * BASELINE / disp[ok], rtol=1e-4)
    wait_for(lambda: h.last_diag() is not None and "network_input" in h.diag_values())
    assert h.diag_values()["network_input"] == f"{H // 2}x{W // 2}"


def test_cuda_requested_without_cuda_runs_on_cpu_and_says_so(ros, harness_factory, tmp_path,
                                                             monkeypatch):
    """device:=cuda where onnxruntime lists CUDA but cannot use it: the backend reports the CPU
    it runs on, and diagnostics show the device asked for beside the one in use."""
    import onnxruntime
    import torch

    from dtp_stereo.checkpoint import save_checkpoint
    from dtp_stereo.models import build_model
    from dtp_test_utils import tiny_dtpnet_config

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("dtpnet", **tiny_dtpnet_config(16)),
                           model_name="dtpnet")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    h = harness_factory(params={"backend": "onnxruntime", "checkpoint": str(ckpt),
                                "device": "cuda", "engine_cache_dir": str(tmp_path / "cache")})
    assert h.node.backend.device == "cpu"
    wait_for(lambda: h.last_diag() is not None)
    values = h.diag_values()
    assert values["device"] == "cpu" and values["device_requested"] == "cuda"


def test_principal_point_offset_is_folded_into_disparity_image(harness_factory):
    h = harness_factory(backend=FakeBackend())
    h.publish(info_kw={"doffs": 4.0})
    wait_for(lambda: h.got["disparity"] and h.got["points2"])
    msg = h.got["disparity"][0]
    assert msg.min_disparity == 4.0 and msg.max_disparity == pytest.approx(47.0 + 4.0)
    disp, valid = conv.disparity_image_to_numpy(msg)
    ramp = np.linspace(2.0, 40.0, W, dtype=np.float32)
    np.testing.assert_allclose(disp[10, 3:], ramp[3:] + 4.0, rtol=1e-6)
    assert not valid[:, :3].any() and valid[:, 3:].all()
    points, _ = conv.pointcloud2_to_numpy(h.got["points2"][0])
    # a DisparityImage consumer's Z = f * T / value equals the published points' z
    np.testing.assert_allclose(points[..., 2][valid], msg.f * msg.t / disp[valid], rtol=1e-5)
    assert np.isnan(points[~valid]).all()


def test_live_parameters(harness_factory):
    h = harness_factory(backend=FakeBackend())
    node = h.node
    results = node.set_parameters([Parameter("max_depth", value=1.0),
                                   Parameter("use_color", value=False)])
    assert all(r.successful for r in results)
    assert not node.set_parameters([Parameter("backend", value="torch")])[0].successful
    assert not node.set_parameters([Parameter("latency_budget_ms", value=-5.0)])[0].successful
    h.publish()
    wait_for(lambda: h.got["points2"])
    points, colors = conv.pointcloud2_to_numpy(h.got["points2"][0])
    assert colors is None
    z = points[..., 2]
    assert np.nanmax(z) <= 1.0 and np.isnan(z).any()


@pytest.mark.parametrize("kind", ["encoding", "size", "empty", "truncated", "float_image",
                                  "baseline", "no_info", "nan_principal_point", "too_large"])
def test_bad_input_reports_error_and_node_recovers(harness_factory, kind):
    h = harness_factory(backend=FakeBackend(), params={
        "latency_budget_ms": 10000.0, "max_input_megapixels": 2.5 * H * W / 1e6})
    if kind == "nan_principal_point":  # camera_info with a NaN in P: refused, not all-NaN
        h.publish(info_kw={"doffs": float("nan")})
        text = "non-finite"
    elif kind == "too_large":
        big = np.zeros((2 * H, 2 * W, 3), np.uint8)
        h.publish(left=big, right=big, info_kw={"width": 2 * W, "height": 2 * H})
        text = "above max_input_megapixels"
    elif kind == "encoding":
        bad = Image(height=H, width=W, encoding="bgr16", step=W * 6, data=bytes(H * W * 6))
        h.publish(left=bad, right=bad)
        text = "bgr16"
    elif kind == "size":
        h.publish(right=np.zeros((H // 2, W // 2, 3), np.uint8))
        text = "size mismatch"
    elif kind == "empty":
        h.publish(left=Image(encoding="rgb8"), right=Image(encoding="rgb8"))
        text = "empty"
    elif kind == "float_image":  # a depth/disparity image on the camera topic
        flt = np.zeros((H, W), np.float32)
        h.publish(left=flt, right=flt, encoding="32FC1")
        text = "'32FC1'"
    elif kind == "truncated":  # a buffer shorter than step x height (a cut-off message)
        h.publish(left=Image(height=H, width=W, encoding="rgb8", step=W * 3,
                             data=bytes(H * W * 3 // 2)))
        text = "image data has"
    elif kind == "baseline":
        h.publish(info_kw={"baseline": 0.0})
        text = "no baseline"
    else:
        h.publish(infos=False)
        text = "no camera_info"
    wait_for(lambda: h.last_diag() is not None and h.last_diag().level == DiagnosticStatus.ERROR)
    assert text in h.last_diag().message
    assert h.got["disparity"] == []

    def recovered():  # good frames clear the ERROR (after error_clear_frames of them)
        h.publish()
        time.sleep(0.05)
        return h.last_diag().level == DiagnosticStatus.OK

    wait_for(recovered, timeout=15.0)
    assert len(h.got["disparity"]) >= 5
    values = h.diag_values()
    assert values["errors_bad_input"] == "1" and text in values["last_error"]


def test_backend_failure_is_reported_and_the_node_keeps_serving(harness_factory):
    """An exception inside inference (a processing error, not bad input) is counted under its
    own kind on /diagnostics; the next frames are served."""

    class FailsOnce(FakeBackend):
        def infer(self, left, right):
            if self.calls == 0:
                self.calls += 1
                raise RuntimeError("CUDA error: an illegal memory access")
            return super().infer(left, right)

    h = harness_factory(backend=FailsOnce(), params={"latency_budget_ms": 10000.0})
    h.publish()
    wait_for(lambda: h.last_diag() is not None and h.last_diag().level == DiagnosticStatus.ERROR)
    assert "processing" in h.last_diag().message and "illegal memory" in h.last_diag().message
    for _ in range(6):
        h.publish()
        time.sleep(0.05)
    wait_for(lambda: len(h.got["disparity"]) == 6)
    wait_for(lambda: h.last_diag().level == DiagnosticStatus.OK)
    assert h.diag_values()["errors_processing"] == "1"


def test_bad_pair_does_not_displace_a_waiting_good_pair(harness_factory):
    """A bad pair is refused on arrival (metadata checks), so the good pair waiting for the
    busy worker is still processed rather than dropped."""
    backend = FakeBackend(delay_s=0.6)
    h = harness_factory(backend=backend, params={"latency_budget_ms": 10000.0})
    h.publish()  # A: the worker takes it and is busy for 0.6 s
    wait_for(lambda: backend.calls == 1)
    h.publish()  # B: waits in the slot
    h.publish(left=Image(height=H, width=W, encoding="yuv422", step=W * 2,
                         data=bytes(H * W * 2)))  # C: bad, while B waits
    wait_for(lambda: len(h.got["disparity"]) == 2, timeout=10.0)
    wait_for(lambda: h.last_diag() is not None and h.diag_values().get("frames_out") == "2")
    values = h.diag_values()
    assert values["dropped_pairs"] == "0" and values["errors_bad_input"] == "1"
    assert "yuv422" in values["last_error"] and backend.calls == 2


def test_overload_drops_pairs_and_bounds_latency(harness_factory):
    delay = 0.15
    backend = FakeBackend(delay_s=delay)
    h = harness_factory(backend=backend, params={"latency_budget_ms": 10000.0,
                                                 "diagnostics_period_s": 0.5})
    n = 24
    for _ in range(n):
        h.publish(infos=True)
        time.sleep(0.01)

    def settled():  # every synchronized pair was either processed or dropped
        if h.last_diag() is None:
            return False
        v = h.diag_values()
        return int(v["frames_in"]) >= n * 0.8 and \
            int(v["frames_out"]) + int(v["dropped_pairs"]) == int(v["frames_in"])

    wait_for(settled, timeout=15.0)
    values = h.diag_values()
    n = int(values["frames_in"])
    dropped, out = int(values["dropped_pairs"]), int(values["frames_out"])
    assert dropped > n // 3 and out < n
    assert backend.calls == out
    # a pair waits at most for the one in progress: latency stays near 2 inference times
    # (p90; the max also holds DDS start-up outliers on a loaded 2-core machine)
    assert float(values["end_to_end_ms_p90"]) < (2 * delay + 0.5) * 1e3
    assert float(values["end_to_end_ms_max"]) < (2 * delay + 2.0) * 1e3


def test_parameter_table_matches_declared_parameters(harness_factory):
    h = harness_factory(backend=FakeBackend())
    builtin = set(h.helper.list_parameters([], 0).names)  # use_sim_time, ...
    names = set(h.node.list_parameters([], 0).names) - builtin
    declared = {n for n in names
                if not n.startswith(("diagnostic_updater.", "qos_overrides."))}
    assert declared == {p.name for p in PARAMETERS}
    # every input and output topic's QoS is overridable (stereo_image_proc does the same)
    for topic in ("left/image_rect", "right/image_rect", "left/camera_info", "disparity",
                  "points2"):
        kind = "publisher" if topic in ("disparity", "points2") else "subscription"
        assert f"qos_overrides.{h.ns}/{topic}.{kind}.reliability" in names, topic
    for p in PARAMETERS:
        desc = h.node.describe_parameter(p.name)
        assert desc.description and desc.read_only == p.read_only
        if p.range is not None:
            assert desc.floating_point_range or desc.integer_range


def _fake_message_filters(calls):
    """A stand-in with message_filters' Python API (Subscriber(node, type, topic, **kw) with
    registerCallback, TimeSynchronizer(fs, queue_size), ApproximateTimeSynchronizer(fs,
    queue_size, slop))."""
    from dtp_stereo.ros.sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer

    class Subscriber:
        def __init__(self, node, msg_type, topic, **kwargs):
            calls.append(("Subscriber", topic, kwargs))
            self.targets = []
            self.sub = node.create_subscription(
                msg_type, topic, lambda m: [t(m) for t in self.targets], kwargs["qos_profile"])

        def registerCallback(self, cb):  # noqa: N802 (SimpleFilter's name)
            self.targets.append(cb)

    class _Sync:
        def __init__(self, fs, impl):
            self.impl = impl
            for i, f in enumerate(fs):
                f.targets.append(lambda m, i=i: impl.add(i, m))

        def registerCallback(self, cb):  # noqa: N802 (message_filters' name)
            self.impl.register_callback(cb)

    def exact(fs, queue_size):
        calls.append(("TimeSynchronizer", queue_size))
        return _Sync(fs, ExactTimeSynchronizer(len(fs), queue_size))

    def approximate(fs, queue_size, slop):
        calls.append(("ApproximateTimeSynchronizer", queue_size, slop))
        return _Sync(fs, ApproximateTimeSynchronizer(len(fs), queue_size, slop))

    mod = types.ModuleType("message_filters")
    mod.Subscriber, mod.TimeSynchronizer = Subscriber, exact
    mod.ApproximateTimeSynchronizer = approximate
    return mod


def _fake_diagnostic_updater():
    """A stand-in with diagnostic_updater's Python API; the status wrapper is a real
    DiagnosticStatus subclass, so a wrongly typed level is caught on the wire."""

    class Wrapper(DiagnosticStatus):
        def summary(self, level, message):
            self.level, self.message = level, message

        def add(self, key, value):
            self.values.append(KeyValue(key=key, value=str(value)))

    class Updater:
        def __init__(self, node, period=1.0):
            self.tasks, self.hwid = [], ""
            self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.timer = node.create_timer(period, self.force_update)

        def setHardwareID(self, hwid):  # noqa: N802 (diagnostic_updater's name)
            self.hwid = hwid

        def add(self, name, task):
            self.tasks.append((name, task))

        def force_update(self):
            array = DiagnosticArray()
            for name, task in self.tasks:
                stat = task(Wrapper())
                stat.name, stat.hardware_id = name, self.hwid
                array.status.append(stat)
            self.pub.publish(array)

    mod = types.ModuleType("diagnostic_updater")
    mod.Updater = Updater
    return mod


def test_uses_message_filters_and_diagnostic_updater_when_importable(harness_factory,
                                                                     monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "message_filters", _fake_message_filters(calls))
    monkeypatch.setitem(sys.modules, "diagnostic_updater", _fake_diagnostic_updater())
    h = harness_factory(backend=FakeBackend(), params={
        "approximate_sync": True, "approximate_sync_tolerance_seconds": 0.01,
        "latency_budget_ms": 10000.0})
    subs = [c for c in calls if c[0] == "Subscriber"]
    assert [c[1] for c in subs] == ["left/image_rect", "right/image_rect"]
    assert all(c[2]["qos_profile"] == qos_profile_sensor_data for c in subs)
    assert ("ApproximateTimeSynchronizer", 5, 0.01) in calls
    h.publish()
    wait_for(lambda: h.got["disparity"])
    wait_for(lambda: h.last_diag() is not None and h.diag_values()["frames_out"] == "1")
    assert h.last_diag().level == DiagnosticStatus.OK  # a bytes level, as the message wants
    assert h.diag_values()["backend"] == "fake"


def test_shipped_params_file_applies_in_any_namespace(ros, tmp_path):
    """config/params.yaml is keyed "/**": a node in a namespace (as the launch file's example,
    namespace:=stereo) reads it; a "dtp_stereo_node:" key would be silently ignored there."""
    context = ros[0]
    shipped = Path(__file__).resolve().parents[1] / "config" / "params.yaml"
    text = shipped.read_text()
    assert "latency_budget_ms: 100.0" in text
    params = tmp_path / "params.yaml"
    params.write_text(text.replace("latency_budget_ms: 100.0", "latency_budget_ms: 55.0"))
    node = StereoNode(backend=FakeBackend(), namespace="/stereo_" + uuid.uuid4().hex[:6],
                      context=context, cli_args=["--ros-args", "--params-file", str(params)])
    try:
        assert node.get_parameter("latency_budget_ms").value == 55.0
    finally:
        node.destroy_node()


def test_approximate_sync_with_default_tolerance_pairs_skewed_stamps(harness_factory):
    """approximate_sync:=true with tolerance 0 (the default) pairs the nearest stamps, as
    stereo_image_proc's ApproximateTime policy; the inputs are counted in diagnostics."""
    h = harness_factory(backend=FakeBackend(), params={"approximate_sync": True})
    for _ in range(3):
        stamp = h.helper.get_clock().now().to_msg()
        for side in ("left", "right"):
            h.pubs[f"{side}/camera_info"].publish(h.info(side, stamp))
        time.sleep(0.02)
        for side, skew_ns in (("left", 0), ("right", 3_000_000)):  # right 3 ms later
            msg = conv.numpy_to_image_msg(h.rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                                          "rgb8")
            msg.header.stamp = stamp
            msg.header.stamp.nanosec = (stamp.nanosec + skew_ns) % 1_000_000_000
            msg.header.frame_id = f"cam_{side}"
            h.pubs[f"{side}/image_rect"].publish(msg)
        time.sleep(0.1)
    wait_for(lambda: len(h.got["disparity"]) >= 2)
    wait_for(lambda: h.last_diag() is not None
             and int(h.diag_values()["right_images_in"]) >= 3)
    assert int(h.diag_values()["left_images_in"]) >= 3


def test_exact_sync_with_skewed_stamps_warns_and_stopped_camera_goes_stale(harness_factory):
    """Exact sync and a right camera stamped 3 ms late: nothing pairs, and diagnostics say why
    (stereo_image_proc's warning); then good frames, then none: the status goes STALE."""
    h = harness_factory(backend=FakeBackend(), params={"latency_budget_ms": 10000.0})
    img = conv.numpy_to_image_msg(np.zeros((H, W, 3), np.uint8), "rgb8")

    def skewed():
        stamp = h.helper.get_clock().now().to_msg()
        for side, skew_ns in (("left", 0), ("right", 3_000_000)):
            img.header.stamp = stamp
            img.header.stamp.nanosec = (stamp.nanosec + skew_ns) % 1_000_000_000
            h.pubs[f"{side}/image_rect"].publish(img)
        time.sleep(0.1)
        return h.last_diag() is not None and "not appear to be synchronized" in \
            h.last_diag().message

    wait_for(skewed, timeout=15.0)
    assert h.last_diag().level == DiagnosticStatus.WARN and h.got["disparity"] == []
    for _ in range(3):
        h.publish()
    wait_for(lambda: len(h.got["disparity"]) == 3)
    wait_for(lambda: h.last_diag().level == DiagnosticStatus.STALE, timeout=10.0)
    assert "no stereo pair processed" in h.last_diag().message


def test_qos_overrides_and_reliable_input_option(ros, harness_factory):
    """use_system_default_qos subscribes RELIABLE (not the RMW's best-effort default), and a
    qos_overrides parameter changes one topic's policy at start-up."""
    from rclpy.qos import ReliabilityPolicy

    def reliability(node, topic):
        return [i.qos_profile.reliability for i in node.get_subscriptions_info_by_topic(topic)
                if i.node_name == "dtp_stereo_node"]

    h = harness_factory(backend=FakeBackend(), params={"use_system_default_qos": True})
    assert reliability(h.node, f"{h.ns}/left/image_rect") == [ReliabilityPolicy.RELIABLE]
    ns = "/q" + uuid.uuid4().hex[:8]
    key = f"qos_overrides.{ns}/right/image_rect.subscription.reliability"
    node = StereoNode(backend=FakeBackend(), namespace=ns, context=ros[0],
                      parameter_overrides=[Parameter(key, value="reliable")])
    try:
        assert reliability(node, f"{ns}/right/image_rect") == [ReliabilityPolicy.RELIABLE]
        assert reliability(node, f"{ns}/left/image_rect") == [ReliabilityPolicy.BEST_EFFORT]
    finally:
        node.destroy_node()


def test_integer_value_for_a_double_parameter_is_accepted(harness_factory):
    """max_depth:=5 (an integer on the command line or in YAML) for a double parameter."""
    h = harness_factory(backend=FakeBackend(), params={"max_depth": 5, "latency_budget_ms": 80})
    assert h.node.get_parameter("max_depth").value == 5.0
    assert h.node.get_parameter("latency_budget_ms").value == 80.0


def test_camera_info_topics_follow_remapped_image_topics(ros):
    """As image_transport's camera subscriber: remapping only the image topic moves its
    camera_info along; an explicit camera_info remapping wins."""
    ns = "/r" + uuid.uuid4().hex[:8]
    node = StereoNode(backend=FakeBackend(), namespace=ns, context=ros[0], cli_args=[
        "--ros-args", "-r", "left/image_rect:=/cam/left/image_rect",
        "-r", "right/image_rect:=/cam/right/image_rect",
        "-r", "right/camera_info:=/calib/right"])
    try:
        assert node._info_topics == {"left": "/cam/left/camera_info", "right": "/calib/right"}
        assert node.count_subscribers("/cam/left/camera_info") == 1
    finally:
        node.destroy_node()


def test_stale_camera_info_is_refused_beyond_its_max_age(harness_factory):
    h = harness_factory(backend=FakeBackend(), params={"camera_info_max_age_s": 0.5})
    old = h.helper.get_clock().now().to_msg()
    for side in ("left", "right"):
        h.pubs[f"{side}/camera_info"].publish(h.info(side, old))
    time.sleep(1.0)
    h.publish(infos=False)  # images 1 s after the only camera_info
    wait_for(lambda: h.last_diag() is not None and h.last_diag().level == DiagnosticStatus.ERROR)
    assert "away from the image stamp" in h.last_diag().message
    assert h.got["disparity"] == []


@pytest.mark.parametrize("params, text", [
    (["-p", "checkpoint:=/nonexistent/model.pt"], "/nonexistent/model.pt"),
    (["-p", "backend:=tpu"], "backend must be one of"),
    (["-p", "input_width:=640"], "must be set together"),
    (["-p", "threads:=999"], "threads"),  # outside the declared range
    (["-p", "threads:=abc"], "threads"),  # a string for an integer
    (["-p", "checkpoint:=CORRUPT"], "not a readable PyTorch file"),
])
def test_start_up_failures_end_in_one_clear_line(params, text, tmp_path):
    """issue 12: no AttributeError from a half-built node, no bare traceback; exit code 1."""
    import subprocess

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    params = [p.replace("CORRUPT", str(corrupt)) for p in params]

    env = dict(os.environ, ROS_DOMAIN_ID=str(100 + uuid.uuid4().int % 100))
    proc = subprocess.run([sys.executable, "-c", "from dtp_stereo.node import main; main()",
                           "--ros-args", *params], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "start-up failed" in out and text in out, out
    assert "Traceback" not in out and "AttributeError" not in out, out


def test_recorded_bag_adapted_then_served_by_the_node(ros, harness_factory, tmp_path):
    """Issue 10's path end to end: record a bag -> ``dtp-train adapt --bag`` (checkpoint and
    ONNX) -> the node serves the adapted model on both backends."""
    import torch

    from dtp_stereo.checkpoint import load_checkpoint, save_checkpoint
    from dtp_stereo.models import build_model
    from dtp_stereo.tools.sample_bag import write_sample_bag
    from dtp_test_utils import tiny_dtpnet_config
    from training.cli import main as train_main

    torch.manual_seed(0)
    bag = str(tmp_path / "recorded")
    write_sample_bag(bag, n_frames=3, height=H, width=W, seed=4, max_disparity=16)
    student = save_checkpoint(tmp_path / "student.pt",
                              build_model("dtpnet", **tiny_dtpnet_config(16, head="fast")),
                              model_name="dtpnet")
    adapted, onnx = tmp_path / "adapted.pt", tmp_path / "adapted.onnx"
    assert train_main(["adapt", "--checkpoint", str(student), "--bag", bag,
                       "--left", "/left/image_rect", "--right", "/right/image_rect",
                       "--output", str(adapted), "--onnx", str(onnx), "--steps", "3",
                       "--batch-size", "1", "--crop", "64x96", "--lr", "1e-3", "--quiet",
                       "--threads", "1"]) == 0
    before, after = load_checkpoint(student), load_checkpoint(adapted)
    assert after.provenance["adapt"]["data"]["kind"] == "bag"
    assert any(not torch.equal(before.state_dict[k], after.state_dict[k])
               for k in before.state_dict)
    for params in ({"backend": "torch", "checkpoint": str(adapted)},
                   {"backend": "onnxruntime", "checkpoint": str(adapted),
                    "onnx_path": str(onnx)}):
        h = harness_factory(params={**params, "latency_budget_ms": 10000.0})
        stamp = h.publish()
        wait_for(lambda: h.got["disparity"] and h.got["points2"])
        assert h.got["disparity"][0].header.stamp == stamp
        disp, valid = conv.disparity_image_to_numpy(h.got["disparity"][0])
        assert disp.shape == (H, W) and np.isfinite(disp[valid]).all() and valid.any()
        assert h.node.backend.name == params["backend"]
