"""rosbag2 tools without a ROS install (``rosbags``): sample-bag writer, stereo reader, offline
evaluation, and live playback through rclpy.

Sample-bag topics (all stamps of one frame identical): ``/left/image_rect``,
``/right/image_rect`` (sensor_msgs/Image rgb8), ``/left/camera_info``, ``/right/camera_info``
(plumb_bob, right ``P[3] = -fx * baseline``) and ``/gt/disparity`` (32FC1 pixels, 0 = no GT).
Evaluation output bags hold ``/disparity`` (stereo_msgs/DisparityImage) and ``/points2``
(sensor_msgs/PointCloud2 x, y, z float32 metres in the left optical frame, NaN = no depth).
"""

import collections
import dataclasses
import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from dtp_stereo.ros.conversions import (ImageConversionError, build_camera_info,
                                        build_disparity_image, build_pointcloud2,
                                        disparity_output_range, image_msg_to_numpy,
                                        numpy_to_image_msg)
from dtp_stereo.ros.geometry import StereoCamera, disparity_to_points
from dtp_stereo.ros.sync import stamp_to_ns

__all__ = ["StereoFrame", "bag_topics", "write_sample_bag", "read_stereo_pairs", "bag_eval",
           "play_bag", "image_to_numpy", "to_rclpy_message", "BASELINE_M", "DEFAULT_TOPICS"]

_LOG = logging.getLogger(__name__)

BASELINE_M = 0.12
START_TIME_NS = 1_700_000_000 * 10**9
DEFAULT_TOPICS = {"left": "/left/image_rect", "right": "/right/image_rect",
                  "left_info": "/left/camera_info", "right_info": "/right/camera_info",
                  "gt": "/gt/disparity"}
IMAGE = "sensor_msgs/msg/Image"
INFO = "sensor_msgs/msg/CameraInfo"
DISPARITY = "stereo_msgs/msg/DisparityImage"
CLOUD = "sensor_msgs/msg/PointCloud2"


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    kilted = getattr(Stores, "ROS2_KILTED", Stores.LATEST)
    return get_typestore(kilted)


def _writer(path: str, storage: str):
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if storage not in plugins:
        raise ValueError(f"unknown rosbag2 storage {storage!r}; choose sqlite3 or mcap")
    if Path(path).exists():
        raise FileExistsError(f"output bag {path} exists already; choose another path")
    return Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugins[storage])


def _header(ts, stamp_ns: int, frame_id: str):
    time_cls = ts.types["builtin_interfaces/msg/Time"]
    stamp = time_cls(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return ts.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _blank(ts, typename: str) -> Callable[[], Any]:
    """A no-argument constructor for a typestore class (its fields are assigned afterwards).

    :mod:`dtp_stereo.ros.conversions` builds messages as ``cls()`` and then sets fields, as
    rclpy classes allow; rosbags dataclasses need every field in ``__init__``, so this fills
    the required ones with ``None`` first.
    """
    cls = ts.types[typename]
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return lambda: cls(**dict.fromkeys(required))


def _cdr_ready(msg: Any) -> Any:
    """Turn the ``bytes`` payloads the conversions write into the uint8 arrays rosbags wants."""
    if isinstance(getattr(msg, "data", None), bytes):
        msg.data = np.frombuffer(msg.data, dtype=np.uint8)
    if hasattr(msg, "image"):
        _cdr_ready(msg.image)
    return msg


def image_to_numpy(msg: Any, topic: str = "image") -> np.ndarray:
    """Decode a sensor_msgs/Image-like object with :func:`~.conversions.image_msg_to_numpy`.

    Returns:
        A C-contiguous H×W (mono8/mono16/32FC1) or H×W×3 RGB (rgb8/bgr8/rgba8/bgra8; alpha
        dropped) array.

    Raises:
        ImageConversionError (a ValueError): unsupported encoding or a bad step/buffer; the
            message starts with ``topic``.
    """
    try:
        return np.ascontiguousarray(image_msg_to_numpy(msg))
    except ImageConversionError as exc:
        raise ImageConversionError(f"{topic}: {exc}") from exc


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
                     max_disparity: int = 64) -> str:
    """Write a synthetic stereo rosbag2 with exact ground truth.

    Args:
        path: bag directory to create (must not exist).
        n_frames: number of stereo frames.
        height, width: image size in pixels.
        rate_hz: frame rate; frame ``i`` is stamped ``START_TIME_NS + i / rate_hz`` seconds.
        storage: ``"sqlite3"`` or ``"mcap"``.
        seed: synthetic scene seed (:class:`dtp_stereo.data.synthetic.SyntheticStereo`).
        max_disparity: largest synthetic disparity, pixels.

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
        # camera_info first in each frame, so a node sees a frame's calibration before its images
        types = {"left_info": INFO, "right_info": INFO, "left": IMAGE, "right": IMAGE,
                 "gt": IMAGE}
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
            for key, (msg, typ) in msgs.items():
                writer.write(conns[key], stamp, ts.serialize_cdr(msg, typ))
    return path


def bag_topics(path: str) -> Dict[str, str]:
    """``{topic: message type}`` of a rosbag2 (sqlite3 or mcap)."""
    from rosbags.highlevel import AnyReader

    if not Path(path).exists():
        raise FileNotFoundError(f"rosbag {path} does not exist")
    with AnyReader([Path(path)], default_typestore=_typestore()) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


@dataclass
class StereoFrame:
    """One synchronized frame of a bag.

    Attributes:
        stamp_ns: header stamp, nanoseconds.
        left, right: H×W×3 RGB (or H×W mono) arrays as decoded from the messages.
        gt: H×W float32 ground-truth disparity in pixels, or ``None``.
        left_info, right_info: the CameraInfo messages (rosbags objects), or ``None``.
    """

    stamp_ns: int
    left: np.ndarray
    right: np.ndarray
    gt: Optional[np.ndarray] = None
    left_info: Any = None
    right_info: Any = None


def read_stereo_pairs(path: str, left_topic: str, right_topic: str,
                      gt_topic: Optional[str] = None, left_info_topic: Optional[str] = None,
                      right_info_topic: Optional[str] = None,
                      max_pending: int = 200) -> Iterator[StereoFrame]:
    """Yield frames whose images share an exact header stamp, in bag order.

    Images on ``left_topic``, ``right_topic`` (and ``gt_topic``) must have identical stamps;
    camera infos are taken at the same stamp, else the latest one seen before. At most
    ``max_pending`` unmatched stamps are kept (oldest dropped with a warning).

    Raises:
        FileNotFoundError: no bag at ``path``.
        ValueError: a requested topic is not in the bag (the message lists the bag's topics).
    """
    from rosbags.highlevel import AnyReader

    if not Path(path).exists():
        raise FileNotFoundError(f"rosbag {path} does not exist")
    images = {"left": left_topic, "right": right_topic}
    if gt_topic:
        images["gt"] = gt_topic
    infos = {k: t for k, t in (("left_info", left_info_topic), ("right_info", right_info_topic))
             if t}
    wanted = {**images, **infos}
    with AnyReader([Path(path)], default_typestore=_typestore()) as reader:
        present = {c.topic for c in reader.connections}
        missing = sorted(t for t in wanted.values() if t not in present)
        if missing:
            raise ValueError(f"rosbag {path}: topic(s) {missing} not found; the bag has "
                             f"{sorted(present)}")
        by_topic = {t: k for k, t in wanted.items()}
        conns = [c for c in reader.connections if c.topic in by_topic]
        pending: Dict[int, Dict[str, Any]] = {}
        latest_info: Dict[str, Any] = {}
        dropped = 0
        for conn, _, raw in reader.messages(connections=conns):
            key = by_topic[conn.topic]
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
            if key in infos:
                latest_info[key] = msg
            pending.setdefault(stamp, {})[key] = msg
            slot = pending[stamp]
            if not all(k in slot for k in images):
                if len(pending) > max_pending:
                    pending.pop(min(pending))
                    dropped += 1
                continue
            del pending[stamp]
            yield StereoFrame(
                stamp_ns=stamp, left=image_to_numpy(slot["left"], left_topic),
                right=image_to_numpy(slot["right"], right_topic),
                gt=(image_to_numpy(slot["gt"], gt_topic).astype(np.float32)
                    if gt_topic else None),
                left_info=slot.get("left_info", latest_info.get("left_info")),
                right_info=slot.get("right_info", latest_info.get("right_info")))
        if dropped:
            _LOG.warning("rosbag %s: dropped %d unmatched stamps", path, dropped)


def _disparity_msgs(ts, disp: np.ndarray, camera: Any, stamp: int,
                    disp_range: Tuple[float, float]):
    """DisparityImage and PointCloud2 (x, y, z float32) rosbags messages for one frame.

    ``disp_range`` is ``(max_disparity, delta_d)`` from
    :func:`~dtp_stereo.ros.conversions.disparity_output_range`. Without a camera the
    DisparityImage has ``f = t = 0`` and there is no cloud.
    """
    frame = camera.frame_id if camera is not None else "stereo_left_optical_frame"
    header = _header(ts, stamp, frame)
    off = float(camera.doffs) if camera is not None else 0.0  # Z = f*T/value, as the node
    dmsg = build_disparity_image(
        disp + np.float32(off), header, f=camera.fx if camera else 0.0,
        t=camera.baseline if camera else 0.0, min_disparity=off,
        max_disparity=float(disp_range[0]) + off, delta_d=float(disp_range[1]),
        msg_cls=_blank(ts, DISPARITY), image_cls=_blank(ts, IMAGE),
        roi_cls=_blank(ts, "sensor_msgs/msg/RegionOfInterest"))
    if camera is None:
        return _cdr_ready(dmsg), None
    cloud = build_pointcloud2(disparity_to_points(disp, camera), header,
                              msg_cls=_blank(ts, CLOUD),
                              field_cls=_blank(ts, "sensor_msgs/msg/PointField"))
    return _cdr_ready(dmsg), _cdr_ready(cloud)


def bag_eval(path: str, backend: Any, *, left_topic: str = DEFAULT_TOPICS["left"],
             right_topic: str = DEFAULT_TOPICS["right"], gt_topic: Optional[str] = None,
             left_info_topic: Optional[str] = None, right_info_topic: Optional[str] = None,
             output_bag: Optional[str] = None, output_storage: str = "sqlite3",
             max_frames: Optional[int] = None, warmup: int = 1) -> Dict[str, Any]:
    """Run a backend over a bag's stereo pairs: metrics (with GT) and latency.

    Latency (ms) covers preprocessing + ``backend.infer`` + mapping back (``latency_ms``) and
    ``infer`` alone (``infer_ms``); the first ``warmup`` frames are not timed. Output bags get
    ``/disparity`` always and ``/points2`` when both camera-info topics are given.

    Returns:
        ``{"bag", "backend", "device", "frames", "metrics" (None without GT),
        "latency_ms": {count, mean, p50, p90, p99, max}, "infer_ms": {...}, "output_bag"}``.
    """
    from dtp_stereo.metrics import MetricAccumulator, valid_mask
    from dtp_stereo.preprocess import StereoPreprocessor
    from dtp_stereo.timing import LatencyStats

    prep = StereoPreprocessor(backend.size_divisor, backend.input_size)
    acc = MetricAccumulator() if gt_topic else None
    total, infer = LatencyStats(), LatencyStats()
    ts = _typestore()
    writer = _writer(output_bag, output_storage) if output_bag else None
    conns: Dict[str, Any] = {}
    n = 0
    try:
        if writer is not None:
            writer.open()
            conns["disp"] = writer.add_connection("/disparity", DISPARITY,
                                                  typestore=ts)
            if left_info_topic and right_info_topic:
                conns["points"] = writer.add_connection("/points2", CLOUD, typestore=ts)
        frames = read_stereo_pairs(path, left_topic, right_topic, gt_topic, left_info_topic,
                                   right_info_topic)
        for fr in frames:
            if max_frames is not None and n >= max_frames:
                break
            t0 = time.perf_counter()
            left, right, geo = prep.prepare(fr.left, fr.right)
            t1 = time.perf_counter()
            result = backend.infer(left, right)
            t2 = time.perf_counter()
            disp = geo.restore(result.disparity)
            t3 = time.perf_counter()
            if n >= warmup:
                total.record((t3 - t0) * 1e3)
                infer.record((t2 - t1) * 1e3)
            if acc is not None:
                acc.update(disp, fr.gt, valid_mask(fr.gt, backend.max_disparity * geo.scale))
            if writer is not None:
                camera = None
                if fr.left_info is not None and fr.right_info is not None:
                    camera = StereoCamera.from_camera_info(fr.left_info, fr.right_info)
                    if (camera.height, camera.width) != disp.shape:  # info at another size
                        camera = camera.scaled(disp.shape[1], disp.shape[0])
                dmsg, cloud = _disparity_msgs(
                    ts, disp, camera, fr.stamp_ns,
                    disparity_output_range(backend.max_disparity, geo.scale))
                writer.write(conns["disp"], fr.stamp_ns,
                             ts.serialize_cdr(dmsg, DISPARITY))
                if cloud is not None and "points" in conns:
                    writer.write(conns["points"], fr.stamp_ns,
                                 ts.serialize_cdr(cloud, CLOUD))
            n += 1
    finally:
        if writer is not None:
            writer.close()
    if n == 0:
        raise ValueError(f"rosbag {path}: no synchronized frames on {left_topic} and "
                         f"{right_topic}" + (f" and {gt_topic}" if gt_topic else ""))
    return {"bag": str(path), "backend": backend.name, "device": backend.device, "frames": n,
            "metrics": acc.compute() if acc is not None else None,
            "latency_ms": total.summary(), "infer_ms": infer.summary(),
            "output_bag": str(output_bag) if output_bag else None}


def _rclpy_class(typename: str):
    """``sensor_msgs/msg/Image`` (or ``sensor_msgs/Image``) -> the rclpy message class."""
    parts = typename.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"no Python message package for {typename!r}; install its "
                         "ROS 2 interface package") from exc


def to_rclpy_message(obj: Any, typename: str) -> Any:
    """Copy a rosbags message object into a new rclpy message of ``typename``, recursively."""
    msg = _rclpy_class(typename)()
    for name, ftype in msg.get_fields_and_field_types().items():
        value, default = getattr(obj, name), getattr(msg, name)
        inner = ftype.split("<", 1)[1].rsplit(">", 1)[0].split(",")[0] if "<" in ftype else ftype
        inner = inner.split("[")[0]
        if "/" in inner and ("<" in ftype or "[" in ftype):
            value = [to_rclpy_message(v, inner) for v in value]
        elif "/" in inner:
            value = to_rclpy_message(value, inner)
        elif isinstance(default, np.ndarray):
            value = np.asarray(value, dtype=default.dtype)
        elif type(default).__name__ == "array":
            arr = type(default)(default.typecode)
            arr.frombytes(np.ascontiguousarray(value, dtype=np.dtype(default.typecode)).tobytes())
            value = arr
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(default, bool):
            value = bool(value)
        setattr(msg, name, value)
    return msg


class _Restamper:
    """Maps recorded header stamps to publish times: the first message of a recorded stamp
    takes the clock's current time and later messages with that stamp get the same one."""

    def __init__(self, clock: Any, keep: int = 256) -> None:
        self._clock, self._keep = clock, keep
        self._stamps: "collections.OrderedDict[int, Any]" = collections.OrderedDict()

    def reset(self) -> None:
        """Forget the mapping (a new pass over the bag gets new times)."""
        self._stamps.clear()

    def __call__(self, msg: Any) -> Any:
        """Restamp ``msg`` (an rclpy message) in place if it has a header; return it."""
        header = getattr(msg, "header", None)
        if header is None:
            return msg
        recorded = stamp_to_ns(header.stamp)
        if recorded not in self._stamps:
            self._stamps[recorded] = self._clock.now().to_msg()
            if len(self._stamps) > self._keep:
                self._stamps.popitem(last=False)
        header.stamp = self._stamps[recorded]
        return msg


def play_bag(path: str, rate: float = 1.0, topics: Optional[Sequence[str]] = None,
             loop: bool = False, *, wait_for_subscribers: float = 1.0, qos_depth: int = 100,
             max_loops: Optional[int] = None, restamp: bool = False,
             context: Any = None) -> int:
    """Publish a bag's messages live through rclpy at the recorded rate.

    Args:
        path: rosbag2 directory (sqlite3 or mcap).
        rate: playback speed factor (2.0 = twice as fast); 0 publishes as fast as possible.
        topics: topics to publish (default all).
        loop: start again at the end (until Ctrl-C, or ``max_loops`` passes).
        wait_for_subscribers: seconds to wait, before publishing, until every publisher
            has a subscriber (DDS discovery); 0 does not wait.
        qos_depth: reliable keep-last depth of the publishers.
        max_loops: with ``loop``, stop after this many passes.
        restamp: replace ``header.stamp`` by the current ROS time of the player node when the
            first message with that recorded stamp is published; messages that shared a
            recorded stamp (a stereo pair, its camera_info) share the new one, so exact-time
            synchronizers still pair them and ``receive time - stamp`` is a true latency.
        context: rclpy context to publish in (default: the global one).

    Returns:
        The number of messages published. ``rclpy`` (the context) is initialised here if
        needed and shut down only if it was initialised here.
    """
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader

    if rate < 0:
        raise ValueError(f"play_bag: rate must be >= 0, got {rate}")
    if not Path(path).exists():
        raise FileNotFoundError(f"rosbag {path} does not exist")
    owns = not rclpy.ok(context=context)
    if owns:
        rclpy.init(context=context)
    node = rclpy.create_node("dtp_bag_player", context=context)
    stamper = _Restamper(node.get_clock()) if restamp else None
    count = 0
    try:
        with AnyReader([Path(path)], default_typestore=_typestore()) as reader:
            conns = [c for c in reader.connections if topics is None or c.topic in topics]
            if topics is not None:
                missing = sorted(set(topics) - {c.topic for c in conns})
                if missing:
                    raise ValueError(f"rosbag {path}: topic(s) {missing} not found")
            qos = QoSProfile(depth=qos_depth, reliability=ReliabilityPolicy.RELIABLE)
            pubs = {c.topic: node.create_publisher(_rclpy_class(c.msgtype), c.topic, qos)
                    for c in conns}
            deadline = time.monotonic() + wait_for_subscribers
            while time.monotonic() < deadline and any(
                    p.get_subscription_count() == 0 for p in pubs.values()):
                time.sleep(0.02)
            passes = 0
            while True:
                start_wall, first = time.monotonic(), None
                if stamper is not None:
                    stamper.reset()
                for conn, stamp, raw in reader.messages(connections=conns):
                    first = stamp if first is None else first
                    if rate > 0:
                        delay = start_wall + (stamp - first) / 1e9 / rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    msg = to_rclpy_message(reader.deserialize(raw, conn.msgtype), conn.msgtype)
                    pubs[conn.topic].publish(stamper(msg) if stamper is not None else msg)
                    count += 1
                passes += 1
                if not loop or (max_loops is not None and passes >= max_loops):
                    break
    finally:
        node.destroy_node()
        if owns:
            rclpy.shutdown(context=context)
    return count
