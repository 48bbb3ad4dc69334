"""``dtp-stereo demo``: the shipped student through the real ROS 2 node on the sample bag.

Steps: write the synthetic sample bag (exact ground truth) to a temporary folder; start
:class:`dtp_stereo.node.StereoNode` in-process on a ``SingleThreadedExecutor`` thread; replay
the bag (stereo pairs, camera_info and ground truth) from **another process**
(``dtp-stereo bag-play``, as a camera driver would publish) at the recorded rate, restamped
with the current time so end-to-end latency (receive time - image stamp) is meaningful and
the ground truth keeps its frame's stamp; subscribe to ``disparity``, ``points2``,
``/diagnostics`` and the ground truth; print and save a summary (frames, rate,
latency percentiles, EPE/D1 against the ground truth, dropped pairs), colourised disparity PNGs
and one point cloud (PLY). A one-frame bag played first warms the node up and is not counted.

Everything runs on a private rclpy context in a random ROS domain (``ROS_DOMAIN_ID`` when set)
so it does not disturb other ROS graphs on the machine. Both processes get
``FASTDDS_BUILTIN_TRANSPORTS=SHM?sockets_size=16MB`` (shared memory only, segments large enough
for camera-sized images) unless the environment sets it: camera-sized images do not cross
processes best-effort with Fast DDS defaults (docs/results/crossprocess-rate.json).
"""

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from dtp_stereo.preprocess import parse_size
from dtp_stereo.ros.transport import LOCAL_ONLY_TRANSPORT

PROG = "dtp-stereo demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo demo``."""
    parser.add_argument("--frames", type=int, default=20, help="stereo frames (default 20)")
    parser.add_argument("--output-dir", type=Path, default=Path("demo_out"),
                        help="folder for PNGs, PLY and summary.json (default demo_out)")
    parser.add_argument("--backend", default="auto",
                        choices=("auto", "torch", "onnxruntime", "tensorrt"),
                        help="inference backend (default auto)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint file or operating-point name (default: 'default')")
    parser.add_argument("--head", default="checkpoint", choices=("checkpoint", "full", "fast"),
                        help="DTPnet regression head (default: the checkpoint's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="compute device (default cpu)")
    parser.add_argument("--engine-cache-dir", default=None,
                        help="ONNX export / TensorRT engine cache (default: backend default)")
    parser.add_argument("--rate", type=float, default=10.0, help="replay rate, Hz (default 10)")
    parser.add_argument("--size", type=parse_size, default=(128, 256),
                        help="sample-bag image HxW in pixels (default 128x256)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU inference threads (default 0 = library default)")
    parser.add_argument("--latency-budget-ms", type=float, default=200.0,
                        help="node latency budget for the diagnostics WARN level (default 200)")
    parser.add_argument("--save-images", type=int, default=3,
                        help="colourised disparity PNGs to write (default 3)")


class _Recorder:
    """Collects the node's outputs with their receive times (nanoseconds, ROS clock) and the
    replayed ground truth by stamp."""

    def __init__(self, node: Any, fqn: str, gt_topic: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, PointCloud2
        from stereo_msgs.msg import DisparityImage

        self.node, self.fqn = node, fqn
        self.lock = threading.Lock()
        self.disparity: List[Any] = []
        self.points: List[Any] = []
        self.gt: Dict[int, np.ndarray] = {}
        self.diagnostics: Optional[Any] = None
        node.create_subscription(DisparityImage, "disparity", self._on_disp, 50)
        node.create_subscription(PointCloud2, "points2", self._on_points, 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        node.create_subscription(Image, gt_topic, self._on_gt, QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE))

    def _now(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _on_disp(self, msg: Any) -> None:
        with self.lock:
            self.disparity.append((self._now(), msg))

    def _on_points(self, msg: Any) -> None:
        with self.lock:
            self.points.append((self._now(), msg))

    def _on_gt(self, msg: Any) -> None:
        from dtp_stereo.ros.conversions import image_msg_to_numpy
        from dtp_stereo.ros.sync import stamp_to_ns

        gt = np.array(image_msg_to_numpy(msg), dtype=np.float32)
        with self.lock:
            self.gt[stamp_to_ns(msg.header.stamp)] = gt

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.hardware_id == self.fqn:
                self.diagnostics = status

    def clear(self) -> None:
        """Forget everything received so far (after the warm-up)."""
        with self.lock:
            self.disparity.clear()
            self.points.clear()
            self.gt.clear()


def _wait(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _write_outputs(out_dir: Path, results: List[Any], gt_by_stamp: Dict[int, np.ndarray],
                   clouds: List[Any], n_images: int) -> List[str]:
    """Colourised disparity (and ground-truth) PNGs and one PLY; returns the files written."""
    import cv2

    from dtp_stereo.data.formats import colorize_disparity
    from dtp_stereo.ros.conversions import disparity_image_to_numpy, pointcloud2_to_numpy
    from dtp_stereo.ros.geometry import write_ply
    from dtp_stereo.ros.sync import stamp_to_ns

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, msg in enumerate(results[:n_images]):
        disp, _ = disparity_image_to_numpy(msg)
        path = out_dir / f"disparity_{i:03d}.png"
        cv2.imwrite(str(path), colorize_disparity(disp, msg.max_disparity,
                                                  min_disp=msg.min_disparity))
        written.append(str(path))
        gt = gt_by_stamp.get(stamp_to_ns(msg.header.stamp))
        if gt is not None:
            gt_path = out_dir / f"gt_{i:03d}.png"
            shown = np.where(gt > 0, gt, np.nan)
            cv2.imwrite(str(gt_path), colorize_disparity(shown, msg.max_disparity,
                                                         min_disp=msg.min_disparity))
            written.append(str(gt_path))
    if clouds:
        points, colors = pointcloud2_to_numpy(clouds[len(clouds) // 2])
        ply = out_dir / "cloud.ply"
        write_ply(ply, points, colors)
        written.append(str(ply))
    return written


def _play(bag: str, rate: float, domain: int) -> int:
    """Replay ``bag`` from a separate process (``dtp-stereo bag-play --restamp``); returns the
    number of messages it published."""
    import subprocess

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    proc = subprocess.run([sys.executable, "-m", "dtp_stereo.cli.main", "bag-play", bag,
                           "--rate", str(rate), "--wait", "10", "--restamp"], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bag-play failed ({proc.returncode}): {proc.stderr[-500:]}")
    words = proc.stdout.split()
    return int(words[words.index("published") + 1])


def run(args: argparse.Namespace) -> int:  # noqa: C901 (one linear script)
    """Run the demo; print the summary; return 0 on success."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from dtp_stereo.bag import DEFAULT_TOPICS
    from dtp_stereo.tools.sample_bag import write_sample_bag
    from dtp_stereo.metrics import MetricAccumulator, valid_mask
    from dtp_stereo.node import StereoNode
    from dtp_stereo.ros.conversions import disparity_image_to_numpy
    from dtp_stereo.ros.sync import stamp_to_ns
    from dtp_stereo.timing import LatencyStats

    if args.frames < 1 or args.rate <= 0:
        print(f"{PROG}: error: --frames and --rate must be positive", file=sys.stderr)
        return 2
    height, width = args.size
    from dtp_stereo.assets import resolve_model

    try:
        checkpoint = str(resolve_model(args.checkpoint))
    except FileNotFoundError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    tmp = tempfile.TemporaryDirectory(prefix="dtp_demo_")
    warm_bag, bag_path = str(Path(tmp.name) / "warmup_bag"), str(Path(tmp.name) / "sample_bag")
    write_sample_bag(warm_bag, n_frames=1, height=height, width=width, rate_hz=args.rate)
    write_sample_bag(bag_path, n_frames=args.frames, height=height, width=width,
                     rate_hz=args.rate)
    domain = int(os.environ.get("ROS_DOMAIN_ID") or random.randint(10, 101))
    # before any participant: the demo's graph stays on this machine, over shared memory with
    # segments for camera-sized images (dtp_stereo.ros.transport; not LOCALHOST discovery,
    # which makes rmw_fastrtps ignore this variable)
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", LOCAL_ONLY_TRANSPORT)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    executor = SingleThreadedExecutor(context=context)
    node = player = None
    thread = threading.Thread(target=executor.spin, daemon=True)
    try:
        params = {"backend": args.backend, "checkpoint": checkpoint, "device": args.device,
                  "head": args.head,
                  "threads": args.threads, "engine_cache_dir": args.engine_cache_dir or "",
                  "diagnostics_period_s": 0.25, "latency_budget_ms": args.latency_budget_ms}
        t_load = time.perf_counter()
        try:
            node = StereoNode(context=context, parameter_overrides=[
                Parameter(k, value=v) for k, v in params.items()])
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            print(f"{PROG}: error: cannot start the node: {exc}", file=sys.stderr)
            return 2
        load_s = time.perf_counter() - t_load
        player = rclpy.create_node("dtp_demo_listener", context=context)
        recorder = _Recorder(player, node.get_fully_qualified_name(), DEFAULT_TOPICS["gt"])
        executor.add_node(node)
        executor.add_node(player)
        thread.start()
        _wait(lambda: node.count_subscribers("disparity") > 0, 10.0)

        _play(warm_bag, 0.0, domain)
        if not _wait(lambda: bool(recorder.disparity), 60.0):
            v = node.diagnostics.report().as_dict()
            print(f"{PROG}: error: no disparity within 60 s of the warm-up frame (the node "
                  f"received {v['left_images_in']} left / {v['right_images_in']} right images, "
                  f"{v['frames_in']} pairs; last error: {v['last_error'] or 'none'})",
                  file=sys.stderr)
            return 1
        time.sleep(0.2)
        recorder.clear()
        base = node.diagnostics.report().as_dict()

        n_msgs = _play(bag_path, 1.0, domain)
        n_frames = n_msgs // len(DEFAULT_TOPICS)

        def settled() -> bool:
            values = node.diagnostics.report().as_dict()
            done = int(values["frames_out"]) + int(values["dropped_pairs"]) \
                + int(values.get("errors_total", 0))
            return done >= int(base["frames_out"]) + n_frames \
                and len(recorder.disparity) >= int(values["frames_out"]) - int(base["frames_out"])

        _wait(settled, 30.0)
        time.sleep(0.3)  # last diagnostics / points2 in flight
        node.publish_diagnostics()
        time.sleep(0.1)
        values = node.diagnostics.report().as_dict()
    finally:
        executor.shutdown()
        for n in (node, player):
            if n is not None:
                n.destroy_node()
        rclpy.try_shutdown(context=context)
        tmp.cleanup()

    with recorder.lock:
        gt_by_stamp = dict(recorder.gt)
        received = [(t, m) for t, m in recorder.disparity
                    if stamp_to_ns(m.header.stamp) in gt_by_stamp]
        clouds = [m for _, m in recorder.points]
    latency = LatencyStats()
    acc = MetricAccumulator()
    for t, msg in received:
        latency.record(max(t - stamp_to_ns(msg.header.stamp), 0) / 1e6)
        gt = gt_by_stamp[stamp_to_ns(msg.header.stamp)]
        pred, _ = disparity_image_to_numpy(msg)
        acc.update(pred, gt, valid_mask(gt, msg.max_disparity))
    metrics = acc.compute()
    times = [t for t, _ in received]
    rate = (len(times) - 1) / ((times[-1] - times[0]) / 1e9) if len(times) > 1 else 0.0
    stamps = sorted(gt_by_stamp)
    publish_rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9) \
        if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
    summary = {
        "backend": node.backend.name, "device": node.backend.device, "checkpoint": checkpoint,
        "head": args.head,
        "image_size": [height, width], "ros_domain_id": domain, "node_start_s": load_s,
        "player": "separate process (dtp-stereo bag-play --restamp)",
        "fastdds_builtin_transports": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS"),
        "frames_published": n_frames, "publish_rate_hz": publish_rate,
        "disparity_received": len(received), "points2_received": len(clouds),
        "output_rate_hz": rate,
        "dropped_pairs": int(values["dropped_pairs"]) - int(base["dropped_pairs"]),
        "errors": int(values["errors_total"]) - int(base["errors_total"]),
        "latency_end_to_end_ms": latency.summary(),
        "node_inference_ms_p50": float(values["inference_ms_p50"]),
        "node_diagnostics": values, "metrics": metrics,
        "diagnostics_received": None if recorder.diagnostics is None else {
            "level": int.from_bytes(bytes(recorder.diagnostics.level), "little"),
            "message": recorder.diagnostics.message},
    }
    written = _write_outputs(args.output_dir, [m for _, m in received], gt_by_stamp,
                             clouds, args.save_images)
    summary["files"] = written
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    lat = summary["latency_end_to_end_ms"]
    print(f"{PROG}: backend {summary['backend']} ({summary['device']}), {checkpoint}")
    print(f"  frames: published {n_frames} at {publish_rate:.1f} Hz, received "
          f"{len(received)} disparity / {len(clouds)} points2, dropped pairs "
          f"{summary['dropped_pairs']}, errors {summary['errors']}")
    print(f"  output rate {rate:.1f} Hz; end-to-end latency (stamp -> received) p50 "
          f"{lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms; node "
          f"inference p50 {summary['node_inference_ms_p50']:.1f} ms")
    print(f"  accuracy vs bag ground truth: EPE {metrics['epe']:.2f} px, D1 {metrics['d1']:.1f} % "
          f"({metrics['n_images']} images)")
    diag = summary["diagnostics_received"]
    if diag is not None:
        level = {0: "OK", 1: "WARN", 2: "ERROR"}.get(diag["level"], "STALE")
        print(f"  /diagnostics: {level}: {diag['message']}")
    print(f"  wrote {args.output_dir / 'summary.json'} and {len(written)} image/PLY files")
    return 0 if received else 1
