"""Publish N stereo pairs with camera_info from their own process, as a camera driver.

Usage: python -m dtp_stereo.tools.stereo_publisher NAMESPACE N HEIGHT WIDTH
[--rate HZ] [--fault-every K]

Publishes ``NAMESPACE/{left,right}/{image_rect,camera_info}`` best-effort (sensor-data QoS, as
camera drivers do), rgb8, at ``--rate`` Hz (default about 3 Hz) on a fixed schedule, once every
topic has a subscriber (10 s at most). The images are random (a few pre-drawn pairs, cycled, so
that 30 Hz VGA costs no drawing time). With ``--fault-every K`` every K-th frame is replaced by a
bad one, cycling through :data:`FAULTS`. At the end one JSON line goes to stdout: frames
published, faults by kind, achieved rate. Used by test/test_node_crossprocess.py,
benchmarks/crossprocess_rate.py and benchmarks/soak.py.
"""

import argparse
import json
import math
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np

# bad frames, in the order they are injected: what a faulty driver or a bad bag sends
FAULTS = (
    "right_size_mismatch",  # right image of another size than the left
    "unknown_encoding",  # an encoding the node does not decode (yuv422)
    "truncated_data",  # data shorter than step x height
    "nan_camera_info",  # camera_info with a NaN principal point
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stereo_publisher", description=__doc__.split("\n")[0])
    parser.add_argument("namespace")
    parser.add_argument("frames", type=int)
    parser.add_argument("height", type=int)
    parser.add_argument("width", type=int)
    parser.add_argument("--rate", type=float, default=1 / 0.3, help="frames per second")
    parser.add_argument("--fault-every", type=int, default=0,
                        help="replace every K-th frame by a bad one (0 = none)")
    return parser


def _fault_of(index: int, fault_every: int) -> Optional[str]:
    """The fault injected at frame ``index`` (0-based), or None for a good frame."""
    if fault_every <= 0 or (index + 1) % fault_every:
        return None
    return FAULTS[((index + 1) // fault_every - 1) % len(FAULTS)]


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.rate > 0 or args.frames < 1:
        parser.error("--rate must be > 0 and frames >= 1")
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, CameraInfo
    from dtp_stereo.ros import conversions as conv
    from dtp_stereo.ros.geometry import StereoCamera

    ns, n, h, w = args.namespace, args.frames, args.height, args.width
    rclpy.init()
    node = rclpy.create_node("xp_pub")
    pubs = {t: node.create_publisher(c, f"{ns}/{t}", qos_profile_sensor_data) for t, c in
            (("left/image_rect", Image), ("right/image_rect", Image),
             ("left/camera_info", CameraInfo), ("right/camera_info", CameraInfo))}
    cam = StereoCamera(width=w, height=h, fx=0.8 * w, fy=0.8 * w, cx=(w - 1) / 2,
                       cy=(h - 1) / 2, cx_right=(w - 1) / 2, baseline=0.1)
    rng = np.random.default_rng(0)
    pairs = [[conv.numpy_to_image_msg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "rgb8")
              for _ in range(2)] for _ in range(min(n, 4))]
    small = conv.numpy_to_image_msg(np.zeros((max(h // 2, 1), max(w // 2, 1), 3), np.uint8),
                                    "rgb8")
    deadline = time.time() + 10
    while time.time() < deadline and min(p.get_subscription_count() for p in pubs.values()) == 0:
        time.sleep(0.05)
    time.sleep(1.0)  # let the transports (TCP for LARGE_DATA) connect
    faults: Dict[str, int] = {}
    t0 = time.perf_counter()
    for i in range(n):
        time.sleep(max(0.0, t0 + i / args.rate - time.perf_counter()))
        fault = _fault_of(i, args.fault_every)
        if fault:
            faults[fault] = faults.get(fault, 0) + 1
        stamp = node.get_clock().now().to_msg()
        for side in ("left", "right"):
            hdr = type(Image().header)()
            hdr.stamp, hdr.frame_id = stamp, side
            info = conv.build_camera_info(cam, hdr, right=side == "right")
            if fault == "nan_camera_info":
                info.k[2] = math.nan
                info.p[2] = math.nan
            pubs[f"{side}/camera_info"].publish(info)
        for side, msg in zip(("left", "right"), pairs[i % len(pairs)]):
            if side == "right" and fault == "right_size_mismatch":
                msg = small
            if side == "left" and fault in ("unknown_encoding", "truncated_data"):
                bad = Image()
                bad.height, bad.width, bad.step = msg.height, msg.width, msg.step
                bad.encoding = "yuv422" if fault == "unknown_encoding" else msg.encoding
                bad.data = msg.data if fault == "unknown_encoding" else \
                    bytes(msg.data[:len(msg.data) // 2])
                msg = bad
            msg.header.stamp, msg.header.frame_id = stamp, side
            pubs[f"{side}/image_rect"].publish(msg)
    elapsed = time.perf_counter() - t0
    time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
    summary = {"frames_published": n, "faults": faults,
               "rate_hz": (n - 1) / elapsed if n > 1 and elapsed > 0 else 0.0}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
