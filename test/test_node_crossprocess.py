"""Camera-sized images from another process reach the node (issue 12).

With Fast DDS defaults, best-effort messages over about 0.5 MB mostly do not cross processes
(docs/results/crossprocess-rate.json: 2-3 of 10 640x480 rgb8 pairs); with
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA in both processes, as the launch file sets for the node,
all of them do, and so with the local-only shared-memory setting the demo uses
(``SHM?sockets_size=16MB``). Both sides run in fresh interpreters
(benchmarks.crossprocess_rate.measure): Fast DDS reads the variables once per process, so a
pytest process that already made participants cannot switch transports.
"""

import pytest

pytest.importorskip("rclpy")

from benchmarks.crossprocess_rate import measure  # noqa: E402
from dtp_stereo.ros.transport import LOCAL_ONLY_TRANSPORT  # noqa: E402

pytestmark = pytest.mark.ros
N, H, W = 10, 480, 640


@pytest.mark.parametrize("transport", ["LARGE_DATA", LOCAL_ONLY_TRANSPORT])
def test_vga_pairs_cross_processes(transport):
    env = {"FASTDDS_BUILTIN_TRANSPORTS": transport}
    got = measure(env, env, N, H, W)
    assert got["left_images"] == got["right_images"] == N
    assert got["pairs"] == got["processed"] == N
