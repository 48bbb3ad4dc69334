"""rosbag2 tools without a ROS install (``rosbags``): stereo reader, offline evaluation, and live
playback through rclpy. (The synthetic sample-bag writer is a tool:
:mod:`dtp_stereo.tools.sample_bag`.)

Default topics (:data:`DEFAULT_TOPICS`): ``/left/image_rect``, ``/right/image_rect``
(sensor_msgs/Image), ``/left/camera_info``, ``/right/camera_info`` and ``/gt/disparity``
(32FC1 pixels, 0 = no GT).
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
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import numpy as np

from dtp_stereo.ros.conversions import (ImageConversionError, image_msg_to_numpy,
                                        image_msg_to_rgb)
from dtp_stereo.ros.geometry import StereoCamera
from dtp_stereo.ros.sync import stamp_to_ns

__all__ = ["StereoFrame", "bag_topics", "read_stereo_pairs", "bag_eval", "play_bag",
           "image_to_numpy", "to_rclpy_message", "DEFAULT_TOPICS"]

_LOG = logging.getLogger(__name__)

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


def camera_image_to_rgb(msg: Any, topic: str = "image", bit_depth: int = 16) -> np.ndarray:
    """Decode a camera image as the node does (:func:`~.conversions.image_msg_to_rgb`):
    H×W×3 RGB, mono replicated, 16-bit data of ``bit_depth`` significant bits scaled up.

    Raises:
        ImageConversionError (a ValueError): as :func:`image_to_numpy`, message starting with
            ``topic``.
    """
    try:
        return np.ascontiguousarray(image_msg_to_rgb(msg, bit_depth))
    except ImageConversionError as exc:
        raise ImageConversionError(f"{topic}: {exc}") from exc


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
        left, right: H×W×3 RGB arrays (uint8, or uint16 from 16-bit cameras), decoded as the
            node decodes them (:func:`camera_image_to_rgb`).
        gt: H×W float32 ground-truth disparity in pixels, or ``None``.
        left_info, right_info: the CameraInfo messages (rosbags objects), or ``None``.
        frame_id: the left image's ``header.frame_id`` (the outputs' frame).
    """

    stamp_ns: int
    left: np.ndarray
    right: np.ndarray
    gt: Optional[np.ndarray] = None
    left_info: Any = None
    right_info: Any = None
    frame_id: str = ""


def read_stereo_pairs(path: str, left_topic: str, right_topic: str,
                      gt_topic: Optional[str] = None, left_info_topic: Optional[str] = None,
                      right_info_topic: Optional[str] = None,
                      max_pending: int = 200, slop_s: float = 0.0,
                      bit_depth: int = 16) -> Iterator[StereoFrame]:
    """Yield frames whose images share a header stamp (within ``slop_s``), in stamp order.

    With ``slop_s`` = 0, images on ``left_topic``, ``right_topic`` (and ``gt_topic``) must have
    identical stamps. With ``slop_s`` > 0 (seconds; keep it under half the frame interval), a
    message joins the pending frame with the nearest stamp within ``slop_s`` that lacks its
    topic, as message_filters' ApproximateTime pairs drivers that stamp each camera on its own;
    the frame's stamp is its left image's. Camera infos are taken at the same stamp: a frame
    whose images are complete waits for them, as drivers usually record camera_info after the
    images; it is given the latest camera_info
    seen instead when the next frame's images are complete first (or the bag ends), and
    ``None`` (with a warning) when there has been none yet. At most ``max_pending`` unmatched
    stamps are kept (oldest dropped with a warning).

    Raises:
        FileNotFoundError: no bag at ``path``.
        ValueError: a requested topic is not in the bag (the message lists the bag's topics),
            or a negative ``slop_s``.
    """
    from rosbags.highlevel import AnyReader

    if not Path(path).exists():
        raise FileNotFoundError(f"rosbag {path} does not exist")
    if not slop_s >= 0.0:
        raise ValueError(f"read_stereo_pairs: slop_s must be >= 0 seconds, got {slop_s}")
    slop_ns = int(round(slop_s * 1e9))
    images = {"left": left_topic, "right": right_topic}
    if gt_topic:
        images["gt"] = gt_topic
    infos = {k: t for k, t in (("left_info", left_info_topic), ("right_info", right_info_topic))
             if t}
    wanted = {**images, **infos}
    pending: Dict[int, Dict[str, Any]] = {}  # stamp -> messages so far
    latest_info: Dict[str, Any] = {}
    without_info = 0
    last_stamp = -1  # newest frame yielded

    def frame(stamp: int, slot: Dict[str, Any]) -> StereoFrame:
        nonlocal without_info, last_stamp
        last_stamp = max(last_stamp, stamp)
        info = {k: slot.get(k, latest_info.get(k)) for k in ("left_info", "right_info")}
        if infos and any(info[k] is None for k in infos):
            without_info += 1
        return StereoFrame(
            stamp_ns=stamp_to_ns(slot["left"].header.stamp),
            left=camera_image_to_rgb(slot["left"], left_topic, bit_depth),
            right=camera_image_to_rgb(slot["right"], right_topic, bit_depth),
            gt=(image_to_numpy(slot["gt"], gt_topic).astype(np.float32) if gt_topic else None),
            left_info=info["left_info"], right_info=info["right_info"],
            frame_id=str(getattr(slot["left"].header, "frame_id", "") or ""))

    def complete(slot: Dict[str, Any]) -> bool:
        return all(k in slot for k in images)

    def frame_key(stamp: int, key: str) -> int:
        """The pending frame this message joins: its own stamp, or with a slop the nearest
        pending stamp within it that has no ``key`` message yet."""
        if not slop_ns or stamp in pending:
            return stamp
        near = [k for k in pending if abs(k - stamp) <= slop_ns and key not in pending[k]]
        return min(near, key=lambda k: (abs(k - stamp), k)) if near else stamp

    def flush(before: Optional[int]) -> Iterator[StereoFrame]:
        """Frames with complete images stamped before ``before`` (all if None), in order."""
        for stamp in sorted(pending):
            if before is not None and stamp >= before:
                break
            if complete(pending[stamp]):
                yield frame(stamp, pending.pop(stamp))

    with AnyReader([Path(path)], default_typestore=_typestore()) as reader:
        present = {c.topic for c in reader.connections}
        missing = sorted(t for t in wanted.values() if t not in present)
        if missing:
            raise ValueError(f"rosbag {path}: topic(s) {missing} not found; the bag has "
                             f"{sorted(present)}")
        by_topic = {t: k for k, t in wanted.items()}
        conns = [c for c in reader.connections if c.topic in by_topic]
        dropped = 0
        for conn, _, raw in reader.messages(connections=conns):
            key = by_topic[conn.topic]
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = frame_key(stamp_to_ns(msg.header.stamp), key)
            if key in infos:
                latest_info[key] = msg
                if stamp not in pending and stamp <= last_stamp:
                    continue  # its frame went out already, with the latest camera_info
            slot = pending.setdefault(stamp, {})
            slot[key] = msg
            if not complete(slot):
                if len(pending) > max_pending:
                    pending.pop(min(pending))
                    dropped += 1
                continue
            if key in images:  # this frame's images just completed: earlier ones wait no more
                yield from flush(stamp)
            if all(k in slot for k in infos):
                yield from flush(stamp)
                yield frame(stamp, pending.pop(stamp))
        yield from flush(None)
        if dropped:
            _LOG.warning("rosbag %s: dropped %d unmatched stamps", path, dropped)
        if without_info:
            _LOG.warning("rosbag %s: %d frame(s) before the first camera_info on %s have no "
                         "camera", path, without_info, " and ".join(infos.values()))


def bag_eval(path: str, backend: Any, *, left_topic: str = DEFAULT_TOPICS["left"],
             right_topic: str = DEFAULT_TOPICS["right"], gt_topic: Optional[str] = None,
             left_info_topic: Optional[str] = None, right_info_topic: Optional[str] = None,
             output_bag: Optional[str] = None, output_storage: str = "sqlite3",
             max_frames: Optional[int] = None, warmup: int = 1,
             preprocessor: Optional[Any] = None, slop_s: float = 0.0,
             options: Optional[Any] = None, bit_depth: int = 16) -> Dict[str, Any]:
    """Run a backend over a bag's stereo pairs (:class:`~dtp_stereo.pipeline.StereoPipeline`):
    metrics (with GT) and latency.

    Latency (ms) covers preprocessing + ``backend.infer`` + mapping back (``latency_ms``) and
    ``infer`` alone (``infer_ms``); the first ``warmup`` frames are not timed. Output bags get
    ``/disparity`` always and ``/points2`` for frames with both camera infos, built by
    :func:`dtp_stereo.ros.outputs.output_messages` (as the node; header = the left image's).
    ``preprocessor`` (a :class:`~dtp_stereo.preprocess.StereoPreprocessor`) applies the node's
    resize rules (``max_width``, ``input_size``); default: pad only. ``slop_s`` pairs stamps
    that differ by up to that many seconds (:func:`read_stereo_pairs`; 0 = exact).
    ``options`` (:class:`~dtp_stereo.ros.outputs.OutputOptions`, the node's live output
    parameters) shape the output bag's messages; ``bit_depth`` is the node's
    ``image_bit_depth``. Metrics score the network's dense disparity, before those masks.

    Returns:
        ``{"bag", "backend", "device", "frames", "frames_without_camera", "metrics" (None
        without GT), "latency_ms": {count, mean, p50, p90, p99, max}, "infer_ms": {...},
        "output_bag"}``.
    """
    from dtp_stereo.metrics import MetricAccumulator, valid_mask
    from dtp_stereo.pipeline import StereoPipeline
    from dtp_stereo.ros.outputs import MessageClasses, OutputOptions, output_messages
    from dtp_stereo.timing import LatencyStats

    pipeline = StereoPipeline(backend, preprocessor)
    acc = MetricAccumulator() if gt_topic else None
    total, infer = LatencyStats(), LatencyStats()
    ts = _typestore()
    classes = MessageClasses(disparity=_blank(ts, DISPARITY), image=_blank(ts, IMAGE),
                             roi=_blank(ts, "sensor_msgs/msg/RegionOfInterest"),
                             cloud=_blank(ts, CLOUD),
                             field=_blank(ts, "sensor_msgs/msg/PointField"))
    writer = _writer(output_bag, output_storage) if output_bag else None
    conns: Dict[str, Any] = {}
    n = no_camera = 0
    try:
        if writer is not None:
            writer.open()
            conns["disparity"] = writer.add_connection("/disparity", DISPARITY, typestore=ts)
            if left_info_topic and right_info_topic:
                conns["points2"] = writer.add_connection("/points2", CLOUD, typestore=ts)
        frames = read_stereo_pairs(path, left_topic, right_topic, gt_topic, left_info_topic,
                                   right_info_topic, slop_s=slop_s, bit_depth=bit_depth)
        for fr in frames:
            if max_frames is not None and n >= max_frames:
                break
            camera = None
            if fr.left_info is not None and fr.right_info is not None:
                camera = StereoCamera.from_camera_info(fr.left_info, fr.right_info)
            elif left_info_topic and right_info_topic:
                no_camera += 1
            result = pipeline.run(fr.left, fr.right, camera)
            if n >= warmup:
                total.record(result.total_ms)
                infer.record(result.timings_ms["inference"])
            if acc is not None:
                acc.update(result.disparity, fr.gt,
                           valid_mask(fr.gt, backend.max_disparity * result.frame.scale))
            if writer is not None:
                header = _header(ts, fr.stamp_ns, fr.frame_id)
                msgs = output_messages(result, header, fr.left, options or OutputOptions(),
                                       wanted=conns.__contains__, classes=classes)
                for topic, msg in msgs.items():
                    writer.write(conns[topic], fr.stamp_ns,
                                 ts.serialize_cdr(_cdr_ready(msg), msg.__msgtype__))
            n += 1
    finally:
        if writer is not None:
            writer.close()
    if n == 0:
        raise ValueError(f"rosbag {path}: no synchronized frames on {left_topic} and "
                         f"{right_topic}" + (f" and {gt_topic}" if gt_topic else ""))
    return {"bag": str(path), "backend": backend.name, "device": backend.device, "frames": n,
            "frames_without_camera": no_camera,
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
             clock: bool = False, settle_s: float = 0.5, context: Any = None) -> int:
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
        clock: publish ``/clock`` (rosgraph_msgs/Clock) with the recorded time of each message
            before it, as ``ros2 bag play --clock``; nodes with ``use_sim_time`` follow the bag.
        settle_s: seconds to wait after every publisher has a subscriber, before the first
            message: a publisher sees a match before the subscriber has finished matching it,
            and messages sent in between are lost (issue 12 saw 3 to 12 of 12 frames arrive
            in four runs without a settle time).
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
            clock_pub = None
            if clock:
                from rosgraph_msgs.msg import Clock

                clock_pub = node.create_publisher(Clock, "/clock", 10)
            deadline = time.monotonic() + wait_for_subscribers
            while time.monotonic() < deadline and any(
                    p.get_subscription_count() == 0 for p in pubs.values()):
                time.sleep(0.02)
            if wait_for_subscribers > 0 and settle_s > 0:
                time.sleep(settle_s)
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
                    if clock_pub is not None:
                        tick = Clock()
                        tick.clock.sec, tick.clock.nanosec = divmod(int(stamp), 10**9)
                        clock_pub.publish(tick)
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
