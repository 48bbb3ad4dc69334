"""Soak: camera-sized stereo frames at camera rate from another process through the real node.

Three processes, as on a robot: the node as users start it (``python -m dtp_stereo.node``, the
``stereo_node`` entry point, with the shipped default unless ``--checkpoint`` names another),
a camera-driver stand-in (:mod:`dtp_stereo.tools.stereo_publisher`, best effort, rgb8, on a
fixed ``--rate`` schedule, every ``--fault-every``-th frame replaced by a bad one of
:data:`~dtp_stereo.tools.stereo_publisher.FAULTS`), and this process, which subscribes to the
node's ``disparity`` and ``/diagnostics`` and samples the node's memory from
``/proc/<pid>/status`` every 0.25 s. All three use the same DDS transport
(``FASTDDS_BUILTIN_TRANSPORTS``, shared memory with 16 MB segments by default, as the demo).

Reported (JSON): the node's RSS at start (backend ready, no frame yet), after warm-up (the
``--warmup-frames``-th disparity), its peak (``VmHWM``) and at the end, and the largest
deviation from the warm-up value afterwards; end-to-end latency (image stamp -> disparity
received here) p50/p99 over the frames after warm-up, and the node's own inference p50;
frames published / received as images / paired / processed / dropped (replaced by a newer
pair while inference ran) / refused as bad input; the distinct bad-input messages seen on
``/diagnostics``. Targets (issue 12): RSS within 10 % of its warm-up value, p99 end-to-end
under 3x the inference p50, every injected fault kind reported. Usage (repository root)::

    .venv/bin/python benchmarks/soak.py --frames 1200 --rate 30 --size 480x640 \\
        --fault-every 100 --output docs/results/soak.json
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# what the node's last_error says for each injected fault (dtp_stereo.tools.stereo_publisher)
FAULT_TEXT = {"right_size_mismatch": "size mismatch", "unknown_encoding": "'yuv422'",
              "truncated_data": "image data has", "nan_camera_info": "non-finite"}


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Listener:
    """Records disparity receipt times and the node's diagnostics (its status only)."""

    def __init__(self, node: Any, ns: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile
        from stereo_msgs.msg import DisparityImage

        self.lock = threading.Lock()
        self.ns = ns
        self.receipts: List[Tuple[int, int]] = []  # (received ns, stamp ns)
        self.diag: Optional[Dict[str, str]] = None
        self.diag_count = 0
        self.errors_seen: List[str] = []
        self.levels_seen: Dict[int, int] = {}
        self._clock = node.get_clock()
        node.create_subscription(DisparityImage, f"{ns}/disparity", self._on_disp,
                                 QoSProfile(depth=10))
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_disp(self, msg: Any) -> None:
        now = self._clock.now().nanoseconds
        stamp = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec
        with self.lock:
            self.receipts.append((now, stamp))

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if not status.name.startswith(self.ns + "/"):
                continue
            values = {kv.key: kv.value for kv in status.values}
            level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
            with self.lock:
                self.diag = values
                self.diag_count += 1
                self.levels_seen[level] = self.levels_seen.get(level, 0) + 1
                err = values.get("last_error", "")
                if err and (not self.errors_seen or self.errors_seen[-1] != err):
                    self.errors_seen.append(err)

    def received(self) -> int:
        with self.lock:
            return len(self.receipts)


def wait(predicate: Any, timeout: float, poll: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return bool(predicate())


def run(args: argparse.Namespace) -> Dict[str, Any]:  # noqa: C901 (one linear script)
    from dtp_stereo.ros.transport import LOCAL_ONLY_TRANSPORT
    from dtp_stereo.tools.bench import proc_status_mb

    height, width = args.size
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = args.transport or LOCAL_ONLY_TRANSPORT
    domain = random.randint(110, 199)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS=str(args.threads))
    ns = "/soak" + uuid.uuid4().hex[:6]
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    helper = rclpy.create_node("soak_listener", context=context)
    listener = Listener(helper, ns)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(helper)
    threading.Thread(target=executor.spin, daemon=True).start()

    log = tempfile.NamedTemporaryFile(prefix="soak_node_", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "dtp_stereo.node", "--ros-args", "-r", f"__ns:={ns}",
           "-p", f"backend:={args.backend}", "-p", f"threads:={args.threads}",
           "-p", "diagnostics_period_s:=0.5", "-p", "latency_budget_ms:=1000.0"]
    if args.checkpoint:
        cmd += ["-p", f"checkpoint:={args.checkpoint}"]
    node = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    samples: List[Tuple[float, float, int]] = []  # (s since start, RSS MiB, disparities so far)
    stop = threading.Event()
    t_start = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            rss = proc_status_mb("VmRSS", node.pid)
            if rss is not None:
                samples.append((time.monotonic() - t_start, rss, listener.received()))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        # ready: the node publishes diagnostics once its backend is built
        if not wait(lambda: listener.diag_count > 0 or node.poll() is not None, 300.0):
            raise RuntimeError("soak: the node published no diagnostics within 300 s")
        if node.poll() is not None:
            raise RuntimeError(f"soak: the node exited ({node.returncode}); see {log.name}")
        time.sleep(1.0)
        rss_start = proc_status_mb("VmRSS", node.pid)
        t_pub = time.monotonic()
        pub = subprocess.run([sys.executable, "-m", "dtp_stereo.tools.stereo_publisher", ns,
                              str(args.frames), str(height), str(width), "--rate",
                              str(args.rate), "--fault-every", str(args.fault_every)],
                             env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=args.frames / args.rate + 120, check=True)
        published = json.loads(pub.stdout.strip().splitlines()[-1])

        def settled() -> bool:
            with listener.lock:
                v = listener.diag or {}
            done = int(v.get("frames_out", 0)) + int(v.get("dropped_pairs", 0)) \
                + int(v.get("errors_total", 0))
            return done >= int(v.get("frames_in", 0)) > 0 and \
                listener.received() >= int(v.get("frames_out", 0))

        wait(settled, 30.0)
        time.sleep(1.5)  # two more diagnostics periods
        rss_end = proc_status_mb("VmRSS", node.pid)
        rss_peak = proc_status_mb("VmHWM", node.pid)
        alive = node.poll() is None
    finally:
        stop.set()
        sampler.join()
        node.terminate()
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
        executor.shutdown()
        helper.destroy_node()
        rclpy.try_shutdown(context=context)

    with listener.lock:
        receipts = list(listener.receipts)
        diag = dict(listener.diag or {})
        errors_seen = list(listener.errors_seen)
        levels = dict(listener.levels_seen)
    latencies = [max(r - s, 0) / 1e6 for r, s in receipts]
    after = latencies[args.warmup_frames:]
    warm = [rss for _, rss, n in samples if n >= args.warmup_frames]
    rss_warm = warm[0] if warm else None
    deviation = max(abs(r - rss_warm) / rss_warm for r in warm) if warm else None
    inference_p50 = float(diag.get("inference_ms_p50", "nan"))
    p99 = percentile(after, 99)
    kinds = {k: any(FAULT_TEXT[k] in e for e in errors_seen) for k in published["faults"]}
    times = [r for r, _ in receipts]
    out_rate = (len(times) - 1) / ((times[-1] - times[0]) / 1e9) if len(times) > 1 else 0.0
    return {
        "command": "python benchmarks/soak.py " + " ".join(sys.argv[1:]),
        "image_size": [height, width], "rate_hz_requested": args.rate,
        "rate_hz_published": published["rate_hz"], "threads": args.threads,
        "checkpoint": args.checkpoint or "runtime default", "backend": diag.get("backend"),
        "fastdds_builtin_transports": os.environ["FASTDDS_BUILTIN_TRANSPORTS"],
        "publish_seconds": time.monotonic() - t_pub,
        "frames": {"published": published["frames_published"],
                   "faults_injected": published["faults"],
                   "left_images_in": int(diag.get("left_images_in", 0)),
                   "right_images_in": int(diag.get("right_images_in", 0)),
                   "pairs_in": int(diag.get("frames_in", 0)),
                   "processed": int(diag.get("frames_out", 0)),
                   "dropped_replaced_by_newer": int(diag.get("dropped_pairs", 0)),
                   "refused_bad_input": int(diag.get("errors_bad_input", 0)),
                   "processing_errors": int(diag.get("errors_processing", 0)),
                   "disparity_received": len(receipts)},
        "output_rate_hz": out_rate,
        "rss_mb": {"start": rss_start, "after_warmup": rss_warm, "peak_vmhwm": rss_peak,
                   "end": rss_end, "max_deviation_after_warmup": deviation,
                   "samples": len(samples)},
        "latency_ms": {"end_to_end_p50": percentile(after, 50), "end_to_end_p99": p99,
                       "end_to_end_max": max(after) if after else None,
                       "frames": len(after), "warmup_frames_excluded": args.warmup_frames,
                       "node_inference_p50": inference_p50,
                       "node_end_to_end_p50": float(diag.get("end_to_end_ms_p50", "nan")),
                       "node_end_to_end_p99": float(diag.get("end_to_end_ms_p99", "nan"))},
        "diagnostics": {"levels_seen": {str(k): v for k, v in sorted(levels.items())},
                        "bad_input_messages": errors_seen, "fault_kinds_reported": kinds},
        "node_alive_at_end": alive,
        "targets": {"rss_within_10_percent": deviation is not None and deviation <= 0.10,
                    "p99_under_3x_inference_p50": bool(p99 < 3 * inference_p50),
                    "every_fault_kind_reported": all(kinds.values()),
                    "node_alive": alive},
        "node_log": log.name,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--rate", type=float, default=30.0, help="published frames per second")
    parser.add_argument("--size", default="480x640", help="HxW of the images")
    parser.add_argument("--fault-every", type=int, default=100,
                        help="replace every K-th frame by a bad one (0 = none)")
    parser.add_argument("--warmup-frames", type=int, default=50,
                        help="disparities before the warm-up RSS and the latency window")
    parser.add_argument("--threads", type=int, default=2, help="node inference threads")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--checkpoint", default="", help="empty = the runtime default")
    parser.add_argument("--transport", default="",
                        help="FASTDDS_BUILTIN_TRANSPORTS for all three processes "
                             "(default: shared memory with 16 MB segments)")
    parser.add_argument("--output", default="", help="write the JSON here")
    args = parser.parse_args(argv)
    from dtp_stereo.preprocess import parse_size

    args.size = parse_size(args.size)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        from dtp_stereo.files import atomic_write_text

        atomic_write_text(args.output, text + "\n")
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
