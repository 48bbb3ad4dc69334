"""Publish N random stereo pairs with camera_info from their own process, as a camera driver.

Usage: python -m dtp_stereo.tools.stereo_publisher NAMESPACE N HEIGHT WIDTH
Publishes ``NAMESPACE/{left,right}/{image_rect,camera_info}`` best-effort (sensor-data QoS, as
camera drivers do), rgb8, at about 3 Hz once every topic has a subscriber (10 s at most). Used by
test/test_node_crossprocess.py and benchmarks/crossprocess_rate.py.
"""

import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, CameraInfo
from dtp_stereo.ros import conversions as conv
from dtp_stereo.ros.geometry import StereoCamera
ns, n, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rclpy.init()
node = rclpy.create_node("xp_pub")
pubs = {t: node.create_publisher(c, f"{ns}/{t}", qos_profile_sensor_data) for t, c in
        (("left/image_rect", Image), ("right/image_rect", Image),
         ("left/camera_info", CameraInfo), ("right/camera_info", CameraInfo))}
cam = StereoCamera(width=w, height=h, fx=0.8 * w, fy=0.8 * w, cx=(w - 1) / 2, cy=(h - 1) / 2,
                   cx_right=(w - 1) / 2, baseline=0.1)
deadline = time.time() + 10
while time.time() < deadline and min(p.get_subscription_count() for p in pubs.values()) == 0:
    time.sleep(0.05)
time.sleep(1.0)  # let the transports (TCP for LARGE_DATA) connect
rng = np.random.default_rng(0)
for i in range(n):
    stamp = node.get_clock().now().to_msg()
    for side in ("left", "right"):
        hdr = type(Image().header)()
        hdr.stamp, hdr.frame_id = stamp, side
        info = conv.build_camera_info(cam, hdr, right=side == "right")
        pubs[f"{side}/camera_info"].publish(info)
    for side in ("left", "right"):
        msg = conv.numpy_to_image_msg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "rgb8")
        msg.header.stamp, msg.header.frame_id = stamp, side
        pubs[f"{side}/image_rect"].publish(msg)
    time.sleep(0.3)
time.sleep(0.5)
node.destroy_node()
rclpy.shutdown()
