"""The ROS 2 stereo node: rectified image pairs in, disparity, depth and points out.

Topics (relative, remappable; see docs/design.md): subscribes ``left/image_rect``,
``right/image_rect``, ``left/camera_info``, ``right/camera_info`` (sensor-data QoS); publishes
``disparity`` (stereo_msgs/DisparityImage), ``points2`` (organized PointCloud2),
``disparity/image`` (32FC1), ``disparity/color`` (bgr8), ``depth`` (32FC1 metres),
``confidence`` (32FC1) and ``/diagnostics``.

Threading: the two image topics are synchronized (``message_filters`` when importable, else
:mod:`dtp_stereo.ros.sync`); camera_info messages are cached (same stamp preferred, else the
latest). Each synchronized pair goes to a single-slot buffer consumed by one worker thread, so
inference never queues: a pair replaced before it was processed is dropped and counted.
Outputs carry the left image header. DisparityImage: ``f`` and ``T`` from the right camera_info
scaled to the output (= input image) resolution, ``max_disparity`` = (D - 1) x the resize
scale, ``delta_d`` = 1/16 px x that scale, values ``d + doffs`` (``cx_right - cx_left``, as
stereo_image_proc, so Z = f * T / value), invalid pixels written below ``min_disparity``, and
``valid_window`` = the whole image (see
:func:`dtp_stereo.ros.conversions.build_disparity_image` for why). Bad input (unsupported
encoding, empty or mismatched images, missing camera_info or one without baseline) raises an
ERROR diagnostic and a throttled log; the node keeps running.
"""

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from dtp_stereo.backends import BackendError, BackendOptions
from dtp_stereo.checkpoint import CheckpointError
from dtp_stereo.pipeline import StereoPipeline
from dtp_stereo.preprocess import StereoPreprocessor
from dtp_stereo.ros import conversions as conv
from dtp_stereo.ros.diagnostics import StereoDiagnostics, report_to_msg
from dtp_stereo.ros.geometry import StereoCamera
from dtp_stereo.ros.outputs import OutputOptions, output_messages
from dtp_stereo.ros.sync import ApproximateTimeSynchronizer, ExactTimeSynchronizer, LatestSlot
from dtp_stereo.ros.sync import stamp_to_ns
from dtp_stereo.ros.transport import transport_advice

__all__ = ["NODE_NAME", "PARAMETERS", "LIVE_PARAMETERS", "ParamSpec", "StereoNode",
           "backend_options", "main"]

NODE_NAME = "dtp_stereo_node"


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: name, default, description, optional range and choices."""

    name: str
    default: Any
    description: str
    range: Optional[Tuple[float, float, float]] = None  # (from, to, step); step 0 = any
    read_only: bool = True
    choices: Tuple[str, ...] = ()


PARAMETERS: List[ParamSpec] = [
    ParamSpec("backend", "auto", "inference backend", choices=("auto", "torch", "onnxruntime",
                                                               "tensorrt")),
    ParamSpec("checkpoint", "", "dtp_stereo checkpoint file or shipped operating-point name "
              "(dtp_stereo.assets.OPERATING_POINTS); empty = the runtime default"),
    ParamSpec("onnx_path", "", "exported ONNX file (onnxruntime/tensorrt); empty = export "
                               "on demand"),
    ParamSpec("engine_cache_dir", "", "TensorRT engine / ONNX export cache; empty = backend "
                                      "default"),
    ParamSpec("device", "cpu", "compute device", choices=("cpu", "cuda")),
    ParamSpec("fp16", False, "half precision (CUDA torch autocast, TensorRT FP16)"),
    ParamSpec("threads", 0, "CPU inference threads; 0 = library default", (0, 256, 1)),
    ParamSpec("head", "checkpoint", "DTPnet regression head: the checkpoint's, full (upsample "
                                    "D logit planes) or fast (regress at 1/4, upsample the "
                                    "disparity; 2.6x faster for the shipped student on ORT)",
              choices=("checkpoint", "full", "fast")),
    ParamSpec("fuse_bn", True, "torch backend: fold BatchNorm into the convolutions"),
    ParamSpec("channels_last", False, "torch backend: channels-last memory format"),
    ParamSpec("torch_compile", False, "torch backend: torch.compile the model (the first "
                                      "frame then compiles, tens of seconds on a small CPU)"),
    ParamSpec("input_width", 0, "fixed network input width px; 0 = native size padded",
              (0, 8192, 1)),
    ParamSpec("input_height", 0, "fixed network input height px; 0 = native size padded",
              (0, 8192, 1)),
    ParamSpec("max_width", 0, "downscale wider images to this width px; 0 = no limit",
              (0, 8192, 1)),
    ParamSpec("image_bit_depth", 16, "significant bits of mono16/16UC1 images (12 for 12-bit "
              "sensors: scaled to the full range)", (9, 16, 1)),
    ParamSpec("max_input_megapixels", 8.5, "larger images are refused (bad input) instead of "
              "taking seconds and GBs per frame, Mpx; 0 = no limit", (0.0, 1000.0, 0.0)),
    ParamSpec("approximate_sync", False, "pair left/right images by nearest stamp, not exact"),
    ParamSpec("approximate_sync_tolerance_seconds", 0.0, "largest stamp spread of a pair, s; "
              "0 = adaptive: half the frame period, measured from the stamps", (0.0, 1.0, 0.0)),
    ParamSpec("camera_info_max_age_s", 5.0, "use the latest camera_info when none has the image "
              "stamp only if it is at most this much older (or newer), s; 0 = any age",
              (0.0, 3600.0, 0.0)),
    ParamSpec("queue_size", 5, "synchronizer queue per input, messages", (1, 100, 1)),
    ParamSpec("use_system_default_qos", False, "subscribe reliable instead of sensor-data QoS "
                                               "(best effort)"),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics, s", (0.1, 60.0, 0.0)),
    ParamSpec("use_color", True, "add rgb from the left image to points2", read_only=False),
    ParamSpec("max_depth", 0.0, "points/depth farther than this are NaN, m; 0 = no limit",
              (0.0, 10000.0, 0.0), read_only=False),
    ParamSpec("min_disparity", 0.0, "disparities below this are invalid, px", (0.0, 1000.0, 0.0),
              read_only=False),
    ParamSpec("confidence_threshold", 0.0, "pixels whose confidence is below this are invalid "
              "in every output; 0 = off", (0.0, 1.0, 0.0), read_only=False),
    ParamSpec("keep_left_band", False, "keep estimates in the left band x < d, where the match "
              "lies outside the right image (invalid by default)", read_only=False),
    ParamSpec("publish_depth", True, "publish depth (32FC1 metres)", read_only=False),
    ParamSpec("publish_confidence", True, "publish confidence (32FC1) when the model has one",
              read_only=False),
    ParamSpec("latency_budget_ms", 100.0, "end-to-end latency above which diagnostics WARN, ms",
              (1.0, 100000.0, 0.0), read_only=False),
]
LIVE_PARAMETERS = tuple(p.name for p in PARAMETERS if not p.read_only)
_OUTPUT_OPTION_NAMES = ("min_disparity", "max_depth", "use_color", "publish_depth",
                        "publish_confidence", "confidence_threshold", "keep_left_band")
_SPECS: Dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    text = spec.description + (f" ({'|'.join(spec.choices)})" if spec.choices else "")
    desc = ParameterDescriptor(description=text, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None:
        lo, hi, step = spec.range
        if isinstance(spec.default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(lo), to_value=float(hi), step=float(step))]
        else:
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi),
                                               step=int(step))]
    return desc


def _validate(name: str, value: Any) -> Optional[str]:
    """Why ``value`` is not acceptable for ``name``, or None if it is."""
    spec = _SPECS.get(name)
    if spec is None:
        return None
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if spec.range is not None and not (spec.range[0] <= value <= spec.range[1]):
        return f"{name} must be in [{spec.range[0]}, {spec.range[1]}], got {value}"
    return None


def backend_options(p: Dict[str, Any]) -> BackendOptions:
    """The :class:`~dtp_stereo.backends.BackendOptions` of the node's parameter values."""
    size = (p["input_height"], p["input_width"]) if p["input_width"] and p["input_height"] \
        else None
    return BackendOptions(device=p["device"], fp16=p["fp16"], threads=p["threads"] or None,
                          input_size=size, head=None if p["head"] == "checkpoint" else p["head"],
                          engine_cache_dir=p["engine_cache_dir"] or None,
                          channels_last=p["channels_last"], fuse_bn=p["fuse_bn"],
                          compile=p["torch_compile"])


def input_qos(reliable: bool, depth: int) -> QoSProfile:
    """QoS of the image and camera_info subscriptions: sensor-data (best effort, as camera
    drivers publish) or, with ``use_system_default_qos``, explicitly reliable (the RMW's
    "system default" reliability is best effort on Fast DDS, so it is not left to it)."""
    if not reliable:
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, int(depth)),
                      reliability=ReliabilityPolicy.RELIABLE)


class _BadInput(ValueError):
    """Input that cannot be processed; reported as ERROR and skipped."""


def _stereo_camera(left_info: Any, right_info: Any) -> StereoCamera:
    """The stereo camera of two camera_info messages; an unusable one is bad input."""
    try:
        return StereoCamera.from_camera_info(left_info, right_info)
    except ValueError as exc:
        raise _BadInput(str(exc)) from exc


class StereoNode(Node):
    """Deep stereo inference node (``dtp_stereo_node``).

    Args:
        backend: a ready :class:`~dtp_stereo.backends.StereoBackend` (tests, demos); when
            None one is created from the ``backend``/``checkpoint``/... parameters.
        node_name: ROS node name.
        **kwargs: passed to :class:`rclpy.node.Node` (``parameter_overrides``, ``namespace``, ...).
    """

    def __init__(self, *, backend: Any = None, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._widen_integer_overrides()
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        p = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        for name, value in p.items():
            reason = _validate(name, value)
            if reason:
                raise ValueError(f"{self.get_name()}: parameter {reason}")
        if (p["input_width"] > 0) != (p["input_height"] > 0):
            raise ValueError(f"{self.get_name()}: parameters input_width and input_height must "
                             f"be set together (got {p['input_width']}x{p['input_height']})")
        self._live = {name: p[name] for name in LIVE_PARAMETERS}
        self._max_megapixels = float(p["max_input_megapixels"])
        self._bit_depth = int(p["image_bit_depth"])
        self._info_max_age_s = float(p["camera_info_max_age_s"])
        self._live_lock = threading.Lock()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._model_source = "backend given by the caller"
        self.backend = backend if backend is not None else self._create_backend(p)
        if backend is None and not str(self.backend.device).startswith(p["device"]):
            self.get_logger().warning(
                f"device {p['device']} requested but backend {self.backend.name} runs on "
                f"{self.backend.device} (no usable CUDA device or execution provider)")
        input_size = getattr(self.backend, "input_size", None)
        if input_size is None and p["input_width"] > 0 and p["input_height"] > 0:
            input_size = (p["input_height"], p["input_width"])
        self._pipeline = StereoPipeline(self.backend, StereoPreprocessor(
            self.backend.size_divisor, input_size, p["max_width"] or None))
        self.diagnostics = StereoDiagnostics(p["latency_budget_ms"],
                                             stale_after_s=max(3.0, 3 * p["diagnostics_period_s"]))
        model = getattr(self.backend, "model_name", type(self.backend).__name__)
        for key, value in (("backend", self.backend.name), ("device", self.backend.device),
                           ("device_requested", p["device"]),
                           ("model", f"{model} ({self._model_source})"),
                           ("max_disparity_px", self.backend.max_disparity),
                           ("input_size", f"{input_size[0]}x{input_size[1]}" if input_size
                            else f"native, padded to /{self.backend.size_divisor}"
                            + (f", max width {p['max_width']}" if p["max_width"] else ""))):
            self.diagnostics.set_value(key, value)

        # every topic's QoS can be overridden at start-up, as in stereo_image_proc:
        # qos_overrides./<ns>/<topic>.{publisher,subscription}.{reliability,history,depth,...}
        overridable = QoSOverridingOptions.with_default_policies()
        out_qos = QoSProfile(depth=5)
        types = {"disparity": DisparityImage, "points2": PointCloud2, "disparity/image": Image,
                 "disparity/color": Image, "depth": Image, "confidence": Image}
        self._pubs = {topic: self.create_publisher(cls, topic, out_qos,
                                                   qos_overriding_options=overridable)
                      for topic, cls in types.items()}
        in_qos = input_qos(p["use_system_default_qos"], p["queue_size"])
        self._qos_options = overridable
        self._infos: Dict[str, Dict[int, Any]] = {"left": {}, "right": {}}
        self._info_cap = 4 * p["queue_size"]
        self._info_lock = threading.Lock()
        self._info_topics = {side: self._camera_info_topic(side) for side in ("left", "right")}
        for side in ("left", "right"):
            self.create_subscription(CameraInfo, self._info_topics[side],
                                     lambda msg, s=side: self._on_info(s, msg), in_qos,
                                     qos_overriding_options=overridable)
        self._sync = self._make_sync(p, in_qos)

        self._net_height, self._net_width = 0, 0
        self._slot = LatestSlot()
        self._worker = threading.Thread(target=self._run_worker, name="dtp_stereo_inference",
                                        daemon=True)
        self._worker.start()
        self._updater = None
        try:
            import diagnostic_updater
        except ImportError:
            diagnostic_updater = None
        if diagnostic_updater is not None:
            self._updater = diagnostic_updater.Updater(self, period=p["diagnostics_period_s"])
            self._updater.setHardwareID(self.get_fully_qualified_name())
            self._updater.add("stereo", self._fill_updater_status)
        else:
            self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 1)
            self._diag_timer = self.create_timer(p["diagnostics_period_s"],
                                                 self.publish_diagnostics,
                                                 callback_group=MutuallyExclusiveCallbackGroup())
        advice = transport_advice(os.environ, rclpy.get_rmw_implementation_identifier())
        if advice is not None:
            level, text = advice
            (self.get_logger().warning if level == "warn" else self.get_logger().info)(text)
        self.get_logger().info(
            f"ready: backend {self.backend.name} on {self.backend.device}, max disparity "
            f"{self.backend.max_disparity} px, "
            f"{'approximate' if p['approximate_sync'] else 'exact'} sync, queue {p['queue_size']}")

    # ---------------------------------------------------------------- setup helpers
    def _widen_integer_overrides(self) -> None:
        """Accept ``max_depth:=5`` for a double parameter (YAML and the command line give an
        integer): rclpy would reject the override's type and the node would not start."""
        overrides = getattr(self, "_parameter_overrides", None)  # rclpy.Node's own table
        if not isinstance(overrides, dict):
            return
        for spec in PARAMETERS:
            given = overrides.get(spec.name)
            if isinstance(spec.default, float) and given is not None \
                    and given.type_ == Parameter.Type.INTEGER:
                overrides[spec.name] = Parameter(spec.name, Parameter.Type.DOUBLE,
                                                 float(given.value))

    def _create_backend(self, p: Dict[str, Any]) -> Any:
        from dtp_stereo.backends import create_backend

        checkpoint = None
        if p["checkpoint"] or not p["onnx_path"]:
            from dtp_stereo.assets import resolve_model

            checkpoint = str(resolve_model(p["checkpoint"]))
        self._model_source = p["onnx_path"] or checkpoint
        return create_backend(p["backend"], checkpoint, onnx=p["onnx_path"] or None,
                              options=backend_options(p))

    def _camera_info_topic(self, side: str) -> str:
        """``<side>/camera_info``, or, when only the image topic was remapped, the camera_info
        next to it (``/cam/left/image_rect`` -> ``/cam/left/camera_info``), as
        image_transport's camera subscriber and stereo_image_proc do."""
        info = f"{side}/camera_info"
        if self.resolve_topic_name(info) != self.resolve_topic_name(info, only_expand=True):
            return self.resolve_topic_name(info)  # remapped explicitly: as given
        image = self.resolve_topic_name(f"{side}/image_rect")
        return image.rsplit("/", 1)[0] + "/camera_info"

    def _make_sync(self, p: Dict[str, Any], qos: QoSProfile) -> Any:
        topics = ("left/image_rect", "right/image_rect")
        # tolerance > 0: pairs spread at most that much (stereo_image_proc's
        # ApproximateEpsilonTime); 0: adaptive, half the frame period measured from the stamps
        # (the built-in synchronizer: message_filters has no such mode, and an unlimited slop
        # pairs a frame whose partner was lost with the next frame's partner)
        slop = p["approximate_sync_tolerance_seconds"] or None
        try:
            import message_filters
        except ImportError:
            message_filters = None
        if p["approximate_sync"] and slop is None:
            message_filters = None
        if message_filters is not None:
            subs = [message_filters.Subscriber(self, Image, t, qos_profile=qos,
                                               qos_overriding_options=self._qos_options)
                    for t in topics]
            for i, sub in enumerate(subs):
                sub.registerCallback(lambda msg, i=i: self.diagnostics.record_image(i))
            if p["approximate_sync"]:
                sync = message_filters.ApproximateTimeSynchronizer(subs, p["queue_size"], slop)
            else:
                sync = message_filters.TimeSynchronizer(subs, p["queue_size"])
            sync.registerCallback(self._on_pair)
            return sync
        if p["approximate_sync"]:
            sync = ApproximateTimeSynchronizer(2, p["queue_size"], slop, self._on_pair)
        else:
            sync = ExactTimeSynchronizer(2, p["queue_size"], self._on_pair)
        for i, topic in enumerate(topics):
            self.create_subscription(Image, topic, lambda msg, i=i: self._on_image(sync, i, msg),
                                     qos, qos_overriding_options=self._qos_options)
        return sync

    def _on_image(self, sync: Any, index: int, msg: Image) -> None:
        self.diagnostics.record_image(index)
        sync.add(index, msg)

    def _on_set_parameters(self, params: List[Any]) -> SetParametersResult:
        updates = {}
        for param in params:
            if param.name not in _SPECS:
                continue
            if param.name not in LIVE_PARAMETERS:
                return SetParametersResult(successful=False,
                                           reason=f"{param.name} is read-only; restart the node")
            reason = _validate(param.name, param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            updates[param.name] = param.value
        with self._live_lock:
            self._live.update(updates)
        if "latency_budget_ms" in updates:
            self.diagnostics.latency_budget_ms = float(updates["latency_budget_ms"])
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- callbacks
    def _on_info(self, side: str, msg: CameraInfo) -> None:
        with self._info_lock:
            cache = self._infos[side]
            cache[stamp_to_ns(msg.header.stamp)] = msg
            while len(cache) > self._info_cap:
                del cache[min(cache)]

    def _camera_info(self, side: str, stamp_ns: int) -> Any:
        """camera_info of ``side`` at the image stamp, else the latest within the max age.

        Raises:
            _BadInput: the latest camera_info is older (or newer) than camera_info_max_age_s.
        """
        with self._info_lock:
            cache = self._infos[side]
            if not cache:
                return None
            if stamp_ns in cache:
                return cache[stamp_ns]
            latest = max(cache)
            info = cache[latest]
        age_s = abs(stamp_ns - latest) / 1e9
        if 0 < self._info_max_age_s < age_s:
            raise _BadInput(f"{self._info_topics[side]}: the latest camera_info is {age_s:.2f} s "
                            f"away from the image stamp (camera_info_max_age_s "
                            f"{self._info_max_age_s:g}; 0 accepts any age, for calibration "
                            "published once)")
        return info

    def _on_pair(self, left: Image, right: Image) -> None:
        self.diagnostics.record_input()
        try:  # metadata only (constant time): a bad pair never displaces a good one waiting
            self._check_pair(left, right)
        except _BadInput as exc:
            self._report_error("bad_input", str(exc))
            return
        if self._slot.put((left, right, time.perf_counter())) is not None:
            self.diagnostics.record_dropped()

    def _check_pair(self, left: Image, right: Image) -> None:
        """Encodings, buffers, equal sizes and the size limit of a pair, from its metadata, and
        its camera_info when that of the same stamp has arrived (drivers usually send it first).

        Raises:
            _BadInput: naming the topic and the problem.
        """
        for side, msg in (("left", left), ("right", right)):
            try:
                conv.check_image_msg(msg)
                if msg.encoding == "32FC1":  # decodable, but not a camera image
                    raise conv.UnsupportedEncodingError("32FC1")
            except conv.ImageConversionError as exc:
                raise _BadInput(f"{side}/image_rect: {exc}") from exc
        if (left.height, left.width) != (right.height, right.width):
            raise _BadInput(f"left/right size mismatch: left is {left.width}x{left.height}, "
                            f"right is {right.width}x{right.height}")
        megapixels = left.height * left.width / 1e6
        if 0 < self._max_megapixels < megapixels:
            raise _BadInput(f"left/right image_rect: {left.width}x{left.height} is "
                            f"{megapixels:.1f} Mpx, above max_input_megapixels "
                            f"{self._max_megapixels:g}; publish smaller images or raise it")
        stamp = stamp_to_ns(left.header.stamp)
        with self._info_lock:  # camera_info of this very stamp, when it came first
            infos = [self._infos[side].get(stamp) for side in ("left", "right")]
        if None not in infos:
            _stereo_camera(*infos)

    def _run_worker(self) -> None:
        while not self._slot.closed:
            item = self._slot.get(timeout=0.2)
            if item is None:
                continue
            try:
                self._process(*item)
            except _BadInput as exc:
                self._report_error("bad_input", str(exc))
            except Exception as exc:  # keep the node alive; the error is reported
                self._report_error("processing", f"{type(exc).__name__}: {exc}")

    def _report_error(self, kind: str, text: str) -> None:
        self.diagnostics.record_error(kind, text)
        self.get_logger().error(f"{kind}: {text}", throttle_duration_sec=2.0)

    # ---------------------------------------------------------------- processing
    def _camera_for(self, left: Image) -> StereoCamera:
        """The cameras of the pair (camera_info at the left stamp, else the latest)."""
        stamp = stamp_to_ns(left.header.stamp)
        infos = {side: self._camera_info(side, stamp) for side in ("left", "right")}
        for side, info in infos.items():
            if info is None:
                raise _BadInput(f"no camera_info received on {self._info_topics[side]}")
        return _stereo_camera(infos["left"], infos["right"])

    def _process(self, left_msg: Image, right_msg: Image, t_in: float) -> None:
        t0 = time.perf_counter()
        try:
            left = conv.image_msg_to_rgb(left_msg, self._bit_depth)
            right = conv.image_msg_to_rgb(right_msg, self._bit_depth)
        except conv.ImageConversionError as exc:
            raise _BadInput(f"left/right image_rect: {exc}") from exc
        camera = self._camera_for(left_msg)
        t1 = time.perf_counter()
        try:
            result = self._pipeline.run(left, right, camera)
        except ValueError as exc:  # images or camera unusable (named in the message)
            raise _BadInput(str(exc)) from exc
        frame = result.frame
        if frame.net_width != self._net_width or frame.net_height != self._net_height:
            self._net_height, self._net_width = frame.net_height, frame.net_width
            self.diagnostics.set_value("network_input", f"{frame.net_height}x{frame.net_width}")
        # nearer than this, disparity exceeds the network's range (those pixels are invalid)
        nearest = result.camera.focal_baseline / max(result.max_disparity - frame.scale, 1e-6)
        self.diagnostics.set_value("nearest_measurable_depth_m", f"{nearest:.3f}")
        t2 = time.perf_counter()
        with self._live_lock:
            options = OutputOptions(**{k: self._live[k] for k in _OUTPUT_OPTION_NAMES})
        msgs = output_messages(result, left_msg.header, left, options, self._wanted)
        t3 = time.perf_counter()
        for topic, msg in msgs.items():
            self._pubs[topic].publish(msg)
        t4 = time.perf_counter()
        now_ns = self.get_clock().now().nanoseconds
        e2e_ms = (now_ns - stamp_to_ns(left_msg.header.stamp)) / 1e6
        self.diagnostics.record_frame({"convert": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                                       "postprocess": (t3 - t2) * 1e3, "publish": (t4 - t3) * 1e3,
                                       "queue": (t0 - t_in) * 1e3}, e2e_ms)

    def _wanted(self, topic: str) -> bool:
        return self._pubs[topic].get_subscription_count() > 0

    # ---------------------------------------------------------------- diagnostics / shutdown
    def _fill_updater_status(self, stat: Any) -> Any:
        """diagnostic_updater task: copy the report into its DiagnosticStatusWrapper."""
        self.diagnostics.set_value("sync_evicted", getattr(self._sync, "dropped", "n/a"))
        report = self.diagnostics.report()
        self._log_unsynchronized(report)
        # DiagnosticStatus.level is a ROS byte: an int is accepted by the setter but
        # serialized as garbage, so pass bytes (as DiagnosticStatus.OK/WARN/ERROR are)
        stat.summary(bytes([report.level]), report.message)
        for key, value in report.values:
            stat.add(key, value)
        return stat

    def _log_unsynchronized(self, report: Any) -> None:
        """Say it in the log too, as stereo_image_proc does, when images never pair."""
        if "do not appear to be synchronized" in report.message:
            self.get_logger().warning(report.message, throttle_duration_sec=10.0)

    def publish_diagnostics(self) -> None:
        """Publish the node's status on ``/diagnostics`` now (the timer also calls this)."""
        if self._updater is not None:
            self._updater.force_update()
            return
        self.diagnostics.set_value("sync_evicted", getattr(self._sync, "dropped", "n/a"))
        report = self.diagnostics.report()
        self._log_unsynchronized(report)
        status = report_to_msg(report,
                               f"{self.get_fully_qualified_name()}: stereo",
                               self.get_fully_qualified_name(), DiagnosticStatus, KeyValue)
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._diag_pub.publish(array)

    def destroy_node(self) -> None:
        """Stop the inference worker, then destroy the node (also a half-built one, whose
        constructor failed before the worker existed: rclpy destroys it on collection)."""
        slot = getattr(self, "_slot", None)
        if slot is not None:
            slot.close()
        worker = getattr(self, "_worker", None)
        if worker is not None and worker.is_alive():
            worker.join(timeout=5.0)
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> None:
    """Console script ``stereo_node``: run :class:`StereoNode` on a single-threaded executor.

    Callbacks are light (inference runs on the node's own worker thread), and rclpy's
    MultiThreadedExecutor busy-waits while callbacks run, starving that worker of the GIL
    (measured: inference and post-processing 2-10x slower in-process).
    """
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = StereoNode()
        except (BackendError, CheckpointError, OSError, ValueError, ParameterException) as exc:
            # a bad checkpoint, backend or parameter: one clear line, not a traceback
            rclpy.logging.get_logger(NODE_NAME).fatal(f"start-up failed: {exc}")
            raise SystemExit(1) from None
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
