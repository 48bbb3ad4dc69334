"""Node overhead: latency through the ROS 2 node vs the bare backend on the same model.

The node (:class:`dtp_stereo.node.StereoNode`, in this process, with a ready backend) and a
driver node run on one multi-threaded executor in a private namespace. For each frame the driver
publishes ``left/camera_info``, ``right/camera_info``, then ``left/image_rect`` and
``right/image_rect`` (rgb8, unique stamp) and waits for the ``disparity`` (DisparityImage) with
that stamp; node latency = publish of the left image -> receipt of the disparity, through rclpy
and the middleware on loopback (image conversion, preprocessing, inference, DisparityImage
building and both transports included). Frames are sent one at a time, so nothing queues. The
bare latency is ``backend.infer`` on the already-converted float32 pair (as ``dtp-stereo
bench``), timed right before each node frame (interleaved, so a slow spell of a shared machine
hits both). Target: overhead <= 10 % of the bare latency at 256x512.

Usage (from the repository root)::

    .venv/bin/python benchmarks/node_overhead.py --size 256x512 --threads 2 --repeats 30 \\
        --output docs/results/node-overhead-cpu.json
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

__all__ = ["make_backend", "node_latency_ms", "measure_node_overhead", "main"]


def make_backend(model_spec: str, backend: str, height: int, width: int, threads: int,
                 work_dir: str) -> Any:
    """A torch or onnxruntime backend of ``model_spec`` (alias or LABEL=CHECKPOINT)."""
    from dtp_stereo.tools.bench import build_spec_model, parse_model_spec

    model = build_spec_model(parse_model_spec(model_spec))
    if backend == "torch":
        from dtp_stereo.backends.torch_backend import TorchBackend

        return TorchBackend(model, device="cpu", threads=threads)
    if backend == "onnxruntime":
        from dtp_stereo.backends.onnx_backend import OnnxRuntimeBackend
        from dtp_stereo.export import export_onnx

        path = export_onnx(model, os.path.join(work_dir, "model.onnx"), height, width)
        return OnnxRuntimeBackend(path, threads=threads)
    raise ValueError(f"backend must be torch or onnxruntime, got {backend!r}")


def _pair_uint8(height: int, width: int, seed: int) -> np.ndarray:
    """Left and right H×W×3 uint8 RGB images (smooth random texture, right = left shifted)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
    left = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)[:height, :width]
    left = (0.7 * left + 0.3 * rng.integers(0, 256, left.shape)).astype(np.uint8)
    return np.stack([left, np.ascontiguousarray(np.roll(left, -8, axis=1))])


def _camera_info(header: Any, height: int, width: int, baseline_m: float, right: bool) -> Any:
    from dtp_stereo.ros.conversions import build_camera_info
    from dtp_stereo.ros.geometry import StereoCamera

    fx = 0.8 * width
    camera = StereoCamera(width=width, height=height, fx=fx, fy=fx, cx=width / 2.0,
                          cy=height / 2.0, cx_right=width / 2.0, baseline=baseline_m)
    return build_camera_info(camera, header, right=right)


def node_latency_ms(backend: Any, images: np.ndarray, repeats: int, warmup: int,
                    timeout_s: float = 60.0,
                    bare: Optional[Callable[[], Any]] = None) -> Dict[str, Any]:
    """Latencies (ms) of frames sent through a :class:`StereoNode` in this process.

    Args:
        bare: when given, called (and timed) right before each frame is sent: the bare
            backend run interleaved with the node frames, so both see the same machine state.

    Returns:
        ``{"times_ms": [...], "bare_ms": [...] (with ``bare``; paired with times_ms), "lost":
        frames with no disparity within ``timeout_s``}``.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from stereo_msgs.msg import DisparityImage

    from dtp_stereo.node import StereoNode
    from dtp_stereo.ros.conversions import numpy_to_image_msg

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    namespace = f"/node_overhead_{os.getpid()}"
    context = rclpy.Context()
    rclpy.init(context=context)
    height, width = images.shape[1:3]
    received: Dict[int, float] = {}
    arrived = threading.Condition()

    def on_disparity(msg: Any) -> None:
        now = time.perf_counter()
        with arrived:
            received[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = now
            arrived.notify_all()

    node = StereoNode(backend=backend, namespace=namespace, context=context)
    driver = rclpy.create_node("node_overhead_driver", namespace=namespace, context=context)
    pubs = {topic: driver.create_publisher(CameraInfo if topic.endswith("info") else Image,
                                           topic, qos_profile_sensor_data)
            for topic in ("left/camera_info", "right/camera_info", "left/image_rect",
                          "right/image_rect")}
    driver.create_subscription(DisparityImage, "disparity", on_disparity, QoSProfile(depth=5))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(driver)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    times, bare_times, lost = [], [], 0
    try:
        deadline = time.monotonic() + 10.0  # let discovery match the endpoints
        while time.monotonic() < deadline and (
                pubs["left/image_rect"].get_subscription_count() == 0
                or driver.count_publishers(f"{namespace}/disparity") == 0):
            time.sleep(0.05)
        for i in range(warmup + repeats):
            header = Header(frame_id="left_optical")
            header.stamp.sec, header.stamp.nanosec = 1000 + i, 0
            for side in ("left", "right"):
                pubs[f"{side}/camera_info"].publish(
                    _camera_info(header, height, width, 0.1, side == "right"))
            time.sleep(0.005)  # camera_info is cached before the pair arrives
            left_msg = numpy_to_image_msg(images[0], "rgb8", header)
            right_msg = numpy_to_image_msg(images[1], "rgb8", header)
            key = header.stamp.sec * 10**9
            t_bare = None
            if bare is not None:
                t0 = time.perf_counter()
                bare()
                t_bare = (time.perf_counter() - t0) * 1000.0
            start = time.perf_counter()
            pubs["left/image_rect"].publish(left_msg)
            pubs["right/image_rect"].publish(right_msg)
            with arrived:
                ok = arrived.wait_for(lambda: key in received, timeout=timeout_s)
            if not ok:
                lost += 1
            elif i >= warmup:
                times.append((received[key] - start) * 1000.0)
                if t_bare is not None:
                    bare_times.append(t_bare)
    finally:
        executor.shutdown()
        node.destroy_node()
        driver.destroy_node()
        rclpy.try_shutdown(context=context)
        spin.join(timeout=5.0)
    return {"times_ms": times, "bare_ms": bare_times, "lost": lost}


def measure_node_overhead(backend: Any, height: int, width: int, *, repeats: int = 30,
                          warmup: int = 3, seed: int = 0) -> Dict[str, Any]:
    """Bare backend vs node latency at ``height``×``width`` pixels, interleaved frame by frame.

    Each frame first times ``backend.infer`` on the converted pair (bare), then sends the
    same images through the node; the overhead is the median over frames of
    ``node - bare`` (and of ``node / bare - 1``), so drifts of a shared machine cancel.

    Returns:
        ``{"size", "bare_ms", "node_ms" (medians), "overhead_ms", "overhead_pct" (medians of
        the per-frame differences), "overhead_pct_p10", "overhead_pct_p90", "bare_p90_ms",
        "node_p90_ms", "repeats", "lost"}``.
    """
    images = _pair_uint8(height, width, seed)
    left, right = (np.ascontiguousarray(im, dtype=np.float32) / np.float32(255) for im in images)
    node = node_latency_ms(backend, images, repeats, warmup,
                           bare=lambda: backend.infer(left, right))
    if not node["times_ms"]:
        raise RuntimeError(f"no disparity came back from the node ({node['lost']} frames lost)")
    bare, times = node["bare_ms"], node["times_ms"]
    diffs = [n - b for n, b in zip(times, bare)]
    pcts = [100.0 * (n / b - 1.0) for n, b in zip(times, bare)]
    return {"size": f"{height}x{width}", "bare_ms": statistics.median(bare),
            "node_ms": statistics.median(times), "overhead_ms": statistics.median(diffs),
            "overhead_pct": statistics.median(pcts),
            "overhead_pct_p10": float(np.percentile(pcts, 10)),
            "overhead_pct_p90": float(np.percentile(pcts, 90)),
            "bare_p90_ms": float(np.percentile(bare, 90)),
            "node_p90_ms": float(np.percentile(times, 90)),
            "repeats": len(times), "lost": node["lost"]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print (and optionally write) the node overhead at one size."""
    from dtp_stereo.tools.bench import parse_size, write_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dtpnet",
                        help="alias (dtpnet, dtpnet_fast, psmnet) or LABEL=CHECKPOINT")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    parser.add_argument("--size", default="256x512", help="HxW pixels (a valid network size)")
    parser.add_argument("--threads", type=int, default=2, help="CPU inference threads")
    parser.add_argument("--repeats", type=int, default=30, help="timed frames")
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames first")
    parser.add_argument("--output", default=None, help="write JSON here")
    args = parser.parse_args(argv)
    height, width = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="dtp_node_overhead_") as tmp:
        backend = make_backend(args.model, args.backend, height, width, args.threads, tmp)
        res = measure_node_overhead(backend, height, width, repeats=args.repeats,
                                    warmup=args.warmup)
    res.update(model=args.model, backend=args.backend, threads=args.threads)
    verdict = "meets" if res["overhead_pct"] <= 10.0 else "misses"
    print(f"{args.model} {args.backend} {res['size']}: bare {res['bare_ms']:.1f} ms, node "
          f"{res['node_ms']:.1f} ms, overhead {res['overhead_ms']:.1f} ms "
          f"({res['overhead_pct']:.1f} %, frames p10-p90 {res['overhead_pct_p10']:.1f} to "
          f"{res['overhead_pct_p90']:.1f} %; {verdict} the 10 % target), lost {res['lost']}")
    if args.output:
        write_report(args.output, {"result": res}, threads=args.threads,
                     script="benchmarks/node_overhead.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
