"""Camera-sized images from another process reach the node (issue 12).

With Fast DDS defaults, best-effort messages over about 0.5 MB mostly do not cross processes
(docs/results/crossprocess-rate.json: 1-6 of 10 640x480 rgb8 pairs); with
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA in both processes, as the launch file sets for the node,
all of them do (10 of 10 in each of 3 runs).
"""

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from stereo_msgs.msg import DisparityImage  # noqa: E402

from dtp_stereo.node import StereoNode  # noqa: E402
from test_node_e2e import FakeBackend  # noqa: E402

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]
N, H, W = 10, 480, 640


def test_vga_pairs_cross_processes_with_large_data_transport(monkeypatch):
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")  # before the participant
    domain = 100 + uuid.uuid4().int % 100
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    ns = "/x" + uuid.uuid4().hex[:8]
    node = StereoNode(backend=FakeBackend(), namespace=ns, context=context)
    helper = rclpy.create_node("xp_helper", context=context)
    got = []
    helper.create_subscription(DisparityImage, f"{ns}/disparity", got.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(helper)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "dtp_stereo.tools.stereo_publisher", ns, str(N),
                        str(H), str(W)], env=env, timeout=120, check=True)
        deadline = time.time() + 5.0
        while len(got) < N and time.time() < deadline:
            time.sleep(0.05)
        assert node.diagnostics.images_in == [N, N]
        assert len(got) == N and (got[0].image.height, got[0].image.width) == (H, W)
    finally:
        executor.shutdown()
        node.destroy_node()
        helper.destroy_node()
        rclpy.shutdown(context=context)
        thread.join(timeout=5.0)
