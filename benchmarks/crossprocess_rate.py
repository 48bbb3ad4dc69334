"""How many camera-sized stereo pairs from another process reach the node, per DDS transport.

For each setting of the DDS environment (``FASTDDS_BUILTIN_TRANSPORTS`` and
``ROS_AUTOMATIC_DISCOVERY_RANGE``, each on the node's side and the publisher's; unset = Fast DDS
defaults) a fresh interpreter runs a StereoNode (stand-in backend: transport, not inference, is
measured) and a publisher process (:mod:`dtp_stereo.tools.stereo_publisher`) sends N pairs
best-effort. Writes ``docs/results/crossprocess-rate.json``.

Why LOCALHOST discovery undoes LARGE_DATA: for ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``
rmw_fastrtps sets ``use_builtin_transports = false`` and adds its own shared-memory and UDP
transports with default settings (rmw_fastrtps_shared_cpp/src/participant.cpp), and Fast DDS reads
``FASTDDS_BUILTIN_TRANSPORTS`` only when the builtin transports are on; the default shared-memory
segment (512 KiB) is smaller than one 640×480 rgb8 image (900 KiB), whose dropped fragments never
complete a best-effort sample. Usage (repository root)::

    .venv/bin/python benchmarks/crossprocess_rate.py --pairs 10 --size 480x640 \\
        --output docs/results/crossprocess-rate.json
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

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

n, h, w, pub_env = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
pub_args = sys.argv[5:]
domain = 100 + uuid.uuid4().int % 100
context = rclpy.Context()
rclpy.init(context=context, domain_id=domain)
ns = "/x" + uuid.uuid4().hex[:8]
node = StereoNode(backend=Constant(), namespace=ns, context=context)
executor = SingleThreadedExecutor(context=context)
executor.add_node(node)
threading.Thread(target=executor.spin, daemon=True).start()
env = {k: v for k, v in os.environ.items() if k not in pub_env["drop"]}  # the node's, less DDS
env.update(pub_env["set"])
env["ROS_DOMAIN_ID"] = str(domain)
subprocess.run([sys.executable, "-m", "dtp_stereo.tools.stereo_publisher", ns, str(n), str(h),
                str(w), *pub_args], env=env, timeout=120, check=True,
               stdout=subprocess.DEVNULL)
time.sleep(1.0)
d = node.diagnostics
print(json.dumps({"left_images": d.images_in[0], "right_images": d.images_in[1],
                  "pairs": d.frames_in, "processed": d.frames_out,
                  "bad_input": d.errors.get("bad_input", 0),
                  "last_error": d.last_error}), flush=True)
executor.shutdown()  # a clean shutdown: os._exit alone leaves Fast DDS shared-memory segments
node.destroy_node()
rclpy.shutdown(context=context)
os._exit(0)
'''


DDS_VARIABLES = ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_AUTOMATIC_DISCOVERY_RANGE")


def measure(node_env: Dict[str, str], pub_env: Dict[str, str], pairs: int, h: int,
            w: int, publisher_args: Sequence[str] = ()) -> Dict[str, Any]:
    """One run in a fresh interpreter (DDS reads the variables when the participant starts);
    ``node_env`` / ``pub_env``: the DDS variables of each side (others of :data:`DDS_VARIABLES`
    unset); ``publisher_args``: more options of the publisher (``--fault-every K``, ...)."""
    env = {k: v for k, v in os.environ.items() if k not in DDS_VARIABLES}
    env.update(node_env)
    env["PYTHONPATH"] = str(ROOT)
    publisher = json.dumps({"drop": list(DDS_VARIABLES), "set": pub_env})
    out = subprocess.run([sys.executable, "-c", _RUN, str(pairs), str(h), str(w), publisher,
                          *publisher_args],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


LARGE = {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
LOCAL = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
SHM = {"FASTDDS_BUILTIN_TRANSPORTS": "SHM"}  # shared memory only: data and discovery stay local
SHM_BIG = {"FASTDDS_BUILTIN_TRANSPORTS": "SHM?sockets_size=16MB"}
# (label, node side, publisher side)
SETTINGS = (("defaults", {}, {}),
            ("LARGE_DATA both", LARGE, LARGE),
            ("LARGE_DATA node only", LARGE, {}),
            ("LOCALHOST both", LOCAL, LOCAL),
            ("LARGE_DATA + LOCALHOST both", {**LARGE, **LOCAL}, {**LARGE, **LOCAL}),
            ("SHM both", SHM, SHM),
            ("SHM 16MB both", SHM_BIG, SHM_BIG))


def main(argv: Optional[List[str]] = None) -> int:
    from dtp_stereo.preprocess import parse_size
    from dtp_stereo.tools.bench import write_report

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--size", default="480x640", help="HxW pixels (default 480x640)")
    p.add_argument("--repeats", type=int, default=2, help="runs per setting")
    p.add_argument("--output", type=Path, default=None)
    p.add_argument("--settings", nargs="*", default=None,
                   help="labels of SETTINGS to run (default: all)")
    args = p.parse_args(argv)
    h, w = parse_size(args.size)
    rows = []
    for label, node_env, pub_env in SETTINGS:
        if args.settings and label not in args.settings:
            continue
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
