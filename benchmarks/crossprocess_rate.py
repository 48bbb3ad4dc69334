"""How many camera-sized stereo pairs from another process reach the node, per DDS transport.

For each setting of ``FASTDDS_BUILTIN_TRANSPORTS`` (unset = Fast DDS defaults; LARGE_DATA on both
sides; LARGE_DATA on the node's side only) a fresh interpreter runs a StereoNode (stand-in
backend: transport, not inference, is measured) and a publisher process
(:mod:`dtp_stereo.tools.stereo_publisher`) sends N pairs best-effort. Writes
``docs/results/crossprocess-rate.json``. Usage (repository root)::

    .venv/bin/python benchmarks/crossprocess_rate.py --pairs 10 --size 480x640 \\
        --output docs/results/crossprocess-rate.json
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]

_RUN = r'''
import json, os, subprocess, sys, threading, time, uuid
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from dtp_stereo.backends.base import InferenceResult
from dtp_stereo.node import StereoNode

class Constant:
    name, device, max_disparity, size_divisor, input_size = "constant", "cpu", 64, 8, None
    def infer(self, left, right):
        h, w = left.shape[:2]
        return InferenceResult(np.full((h, w), 8.0, np.float32))

n, h, w, pub_env = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
domain = 100 + uuid.uuid4().int % 100
context = rclpy.Context()
rclpy.init(context=context, domain_id=domain)
ns = "/x" + uuid.uuid4().hex[:8]
node = StereoNode(backend=Constant(), namespace=ns, context=context)
executor = SingleThreadedExecutor(context=context)
executor.add_node(node)
threading.Thread(target=executor.spin, daemon=True).start()
env = {k: v for k, v in os.environ.items() if k != "FASTDDS_BUILTIN_TRANSPORTS"}  # the node's env
if pub_env:
    env["FASTDDS_BUILTIN_TRANSPORTS"] = pub_env
env["ROS_DOMAIN_ID"] = str(domain)
subprocess.run([sys.executable, "-m", "dtp_stereo.tools.stereo_publisher", ns, str(n), str(h),
                str(w)], env=env, timeout=120, check=True)
time.sleep(1.0)
d = node.diagnostics
print(json.dumps({"left_images": d.images_in[0], "right_images": d.images_in[1],
                  "pairs": d.frames_in, "processed": d.frames_out}), flush=True)
executor.shutdown()  # a clean shutdown: os._exit alone leaves Fast DDS shared-memory segments
node.destroy_node()
rclpy.shutdown(context=context)
os._exit(0)
'''


def measure(node_env: Optional[str], pub_env: Optional[str], pairs: int, h: int,
            w: int) -> Dict[str, int]:
    """One run in a fresh interpreter (DDS reads the variable when the participant starts)."""
    # Both variables are set here, not inherited: with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
    # (which other tools of this repository set) LARGE_DATA lost VGA pairs here (seen in failed
    # test runs; not kept as a JSON)
    drop = ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if node_env:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = node_env
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", _RUN, str(pairs), str(h), str(w),
                          pub_env or ""], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: Optional[List[str]] = None) -> int:
    from dtp_stereo.preprocess import parse_size
    from dtp_stereo.tools.bench import write_report

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--size", default="480x640", help="HxW pixels (default 480x640)")
    p.add_argument("--repeats", type=int, default=2, help="runs per setting")
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)
    h, w = parse_size(args.size)
    settings = [("defaults", None, None), ("LARGE_DATA both", "LARGE_DATA", "LARGE_DATA"),
                ("LARGE_DATA node only", "LARGE_DATA", None)]
    rows = []
    for label, node_env, pub_env in settings:
        runs = [measure(node_env, pub_env, args.pairs, h, w) for _ in range(args.repeats)]
        rows.append({"setting": label, "node_env": node_env, "publisher_env": pub_env,
                     "runs": runs})
        print(f"{label:22s} pairs received per run: {[r['pairs'] for r in runs]} of "
              f"{args.pairs}")
    report = {"benchmark": "crossprocess_rate", "size": [h, w], "encoding": "rgb8",
              "image_bytes": h * w * 3, "pairs_sent": args.pairs, "qos": "sensor data",
              "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)"),
              "rows": rows}
    if args.output:
        write_report(str(args.output), report, threads=1, script="benchmarks/crossprocess_rate.py",
                     argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
