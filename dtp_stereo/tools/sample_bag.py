"""The synthetic stereo rosbag2 writer (``dtp-stereo make-sample-bag``, the demo, the tests).

Topics (:data:`dtp_stereo.bag.DEFAULT_TOPICS`; all stamps of one frame identical):
``/left/image_rect``, ``/right/image_rect`` (sensor_msgs/Image rgb8), ``/left/camera_info``,
``/right/camera_info`` (plumb_bob, right ``P[3] = -fx * baseline``) and ``/gt/disparity``
(32FC1 pixels, 0 = no GT).
"""

from typing import Any, Tuple

import numpy as np

from dtp_stereo.bag import (DEFAULT_TOPICS, IMAGE, INFO, _blank, _cdr_ready, _header,
                            _typestore, _writer)
from dtp_stereo.ros.conversions import build_camera_info, numpy_to_image_msg
from dtp_stereo.ros.geometry import StereoCamera

__all__ = ["BASELINE_M", "START_TIME_NS", "write_sample_bag"]

BASELINE_M = 0.12  # metres
START_TIME_NS = 1_700_000_000 * 10**9  # stamp of frame 0


def _image_msg(ts, arr: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    msg = numpy_to_image_msg(arr, encoding, _header(ts, stamp_ns, frame_id),
                             msg_cls=_blank(ts, IMAGE))
    return _cdr_ready(msg)


def _camera_info_msgs(ts, height: int, width: int, stamp_ns: int) -> Tuple[Any, Any]:
    """Left/right rectified CameraInfo: fx = fy = 0.8 * width, baseline ``BASELINE_M``."""
    fx = 0.8 * width
    camera = StereoCamera(width=width, height=height, fx=fx, fy=fx, cx=(width - 1) / 2.0,
                          cy=(height - 1) / 2.0, cx_right=(width - 1) / 2.0,
                          baseline=BASELINE_M)
    info_cls, roi_cls = _blank(ts, INFO), _blank(ts, "sensor_msgs/msg/RegionOfInterest")
    return tuple(build_camera_info(camera, _header(ts, stamp_ns, f"stereo_{side}_optical_frame"),
                                   right=side == "right", msg_cls=info_cls, roi_cls=roi_cls)
                 for side in ("left", "right"))


def write_sample_bag(path: str, n_frames: int = 20, height: int = 128, width: int = 256,
                     rate_hz: float = 10.0, storage: str = "sqlite3", seed: int = 0,
                     max_disparity: int = 64, info_last: bool = False) -> str:
    """Write a synthetic stereo rosbag2 with exact ground truth.

    Args:
        path: bag directory to create (must not exist).
        n_frames: number of stereo frames.
        height, width: image size in pixels.
        rate_hz: frame rate; frame ``i`` is stamped ``START_TIME_NS + i / rate_hz`` seconds.
        storage: ``"sqlite3"`` or ``"mcap"``.
        seed: synthetic scene seed (:class:`dtp_stereo.data.synthetic.SyntheticStereo`).
        max_disparity: largest synthetic disparity, pixels.
        info_last: write each frame's camera_info after its images (the usual driver order)
            instead of before them.

    Returns:
        ``path``.
    """
    from dtp_stereo.data.synthetic import SyntheticStereo

    if n_frames <= 0 or rate_hz <= 0:
        raise ValueError(f"write_sample_bag: n_frames ({n_frames}) and rate_hz ({rate_hz}) "
                         "must be positive")
    ts = _typestore()
    gen = SyntheticStereo(height=height, width=width, max_disparity=max_disparity, seed=seed)
    with _writer(path, storage) as writer:
        # camera_info first in each frame, so a node sees a frame's calibration before its
        # images; info_last records it after them, as camera drivers usually do
        order = ("left", "right", "gt", "left_info", "right_info") if info_last else \
            ("left_info", "right_info", "left", "right", "gt")
        types = {k: INFO if k.endswith("_info") else IMAGE for k in order}
        conns = {k: writer.add_connection(DEFAULT_TOPICS[k], t, typestore=ts)
                 for k, t in types.items()}
        for i in range(n_frames):
            stamp = START_TIME_NS + int(round(i * 1e9 / rate_hz))
            sample = gen.sample(i)
            gt = np.where(sample["valid"], sample["disparity"], 0.0).astype(np.float32)
            info_l, info_r = _camera_info_msgs(ts, height, width, stamp)
            msgs = {"left_info": (info_l, INFO), "right_info": (info_r, INFO),
                    "left": (_image_msg(ts, sample["left"], "rgb8", stamp,
                                        "stereo_left_optical_frame"), IMAGE),
                    "right": (_image_msg(ts, sample["right"], "rgb8", stamp,
                                         "stereo_right_optical_frame"), IMAGE),
                    "gt": (_image_msg(ts, gt, "32FC1", stamp, "stereo_left_optical_frame"),
                           IMAGE)}
            for key in order:
                msg, typ = msgs[key]
                writer.write(conns[key], stamp, ts.serialize_cdr(msg, typ))
    return path
