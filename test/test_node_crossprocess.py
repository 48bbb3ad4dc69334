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


def test_bad_frames_from_another_process_are_reported_and_good_ones_still_processed():
    """The fault-injection path across processes: every 4th of 12 VGA frames is bad (each kind
    of dtp_stereo.tools.stereo_publisher.FAULTS once, cycling); the node refuses exactly those,
    processes every good one, and names the last fault."""
    from dtp_stereo.tools.stereo_publisher import FAULTS

    env = {"FASTDDS_BUILTIN_TRANSPORTS": LOCAL_ONLY_TRANSPORT}
    got = measure(env, env, 12, H, W, ["--fault-every", "4"])
    assert got["pairs"] == 12
    assert got["bad_input"] == 3 and got["processed"] == 9
    assert FAULTS[2] == "truncated_data" and "image data has" in got["last_error"]
