"""The output messages of one :class:`~dtp_stereo.pipeline.StereoResult` (no rclpy here).

One set of builders for the node (rclpy classes) and the bag tools (rosbags classes, passed in
a :class:`MessageClasses`). Every output carries the header given (the left image's, as
stereo_image_proc does).

Disparity-offset convention (``doffs = cx_right - cx_left``, 0 for standard rectification):
as stereo_image_proc, the DisparityImage values are ``d + doffs`` so that ``Z = f·T / value``
agrees with ``points2`` and ``depth``. stereo_image_proc leaves ``min_disparity`` and
``max_disparity`` at the matcher's search range; here they are shifted by ``doffs`` too
(``min_disparity = min + doffs``), so that the message's own rule, "values below
``min_disparity`` are invalid", holds for the shifted values. With ``doffs = 0`` both agree.

Range cap: a network with D planes cannot report more than ``D - 1`` network pixels, so a
point nearer than ``f·T / max_disparity`` comes out at (or just below) the cap, and wrong.
Disparities within one network pixel of the cap (above ``result.max_disparity - scale``) are
therefore invalid in every output, as those below ``min_disparity`` are
(:func:`saturated`); the node reports the nearest measurable depth in its diagnostics.

Also invalid (:func:`invalid_mask`): the left band where a pixel's match would lie outside the
right image (column ``x < d``; the network guesses there from context, block matchers such as
stereo_image_proc leave it empty) unless ``keep_left_band``, and pixels whose confidence is
below ``confidence_threshold`` (as Isaac ROS ESS's threshold).
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import numpy as np

from dtp_stereo.data.formats import colorize_disparity
from dtp_stereo.ros import conversions as conv
from dtp_stereo.ros.geometry import depth_to_points, disparity_to_depth

__all__ = ["OUTPUT_TOPICS", "MessageClasses", "OutputOptions", "disparity_message",
           "invalid_mask", "output_messages", "saturated"]

OUTPUT_TOPICS = ("disparity", "points2", "disparity/image", "disparity/color", "depth",
                 "confidence")


@dataclass(frozen=True)
class MessageClasses:
    """Message constructors (no-argument callables); ``None`` = the rclpy message class."""

    disparity: Any = None  # stereo_msgs/DisparityImage
    image: Any = None  # sensor_msgs/Image
    roi: Any = None  # sensor_msgs/RegionOfInterest
    cloud: Any = None  # sensor_msgs/PointCloud2
    field: Any = None  # sensor_msgs/PointField


@dataclass(frozen=True)
class OutputOptions:
    """What the outputs contain (the node's live parameters of the same names).

    Attributes:
        min_disparity: disparities below this are invalid, pixels.
        max_depth: points and depth farther than this are NaN, metres; 0 = no limit.
        use_color: add rgb from the left image to points2.
        publish_depth: build ``depth``.
        publish_confidence: build ``confidence`` when the model gives one.
        confidence_threshold: pixels whose confidence (0..1) is below it are invalid; 0 = off.
        keep_left_band: keep the estimates where ``x < d`` (no match in the right image).
    """

    min_disparity: float = 0.0
    max_depth: float = 0.0
    use_color: bool = True
    publish_depth: bool = True
    publish_confidence: bool = True
    confidence_threshold: float = 0.0
    keep_left_band: bool = False


def _everything(topic: str) -> bool:
    return True


def saturated(result: Any) -> np.ndarray:
    """H×W bool: disparities at the network's range cap (within one network pixel of it)."""
    with np.errstate(invalid="ignore"):
        return result.disparity > result.max_disparity - float(result.frame.scale)


def invalid_mask(result: Any, options: OutputOptions) -> np.ndarray:
    """H×W bool: pixels no output reports (besides those below ``min_disparity``):
    saturated ones, the left band ``x < d`` (unless ``keep_left_band``) and those below
    ``confidence_threshold``."""
    mask = saturated(result)
    d = result.disparity
    if not options.keep_left_band:
        columns = np.arange(d.shape[1], dtype=np.float32)[None, :]
        with np.errstate(invalid="ignore"):
            mask |= columns < d
    if options.confidence_threshold > 0 and result.confidence is not None:
        mask |= result.confidence < np.float32(options.confidence_threshold)
    return mask


def _valid_only(result: Any, options: OutputOptions) -> np.ndarray:
    """The result's disparity with :func:`invalid_mask` pixels set to NaN."""
    mask = invalid_mask(result, options)
    if not mask.any():
        return result.disparity
    return np.where(mask, np.float32(np.nan), result.disparity).astype(np.float32)


def disparity_message(result: Any, header: Any, options: Optional[OutputOptions] = None,
                      classes: MessageClasses = MessageClasses()) -> Any:
    """The ``stereo_msgs/DisparityImage`` of a result (see the module's offset convention).

    Without a camera (``result.camera is None``) ``f`` and ``T`` are 0 and no offset applies.
    """
    options = options or OutputOptions()
    min_disparity = float(options.min_disparity)
    camera = result.camera
    off = float(camera.doffs) if camera is not None else 0.0
    disparity = _valid_only(result, options)
    disparity = disparity + np.float32(off) if off else disparity
    return conv.build_disparity_image(
        disparity, header, f=camera.fx if camera is not None else 0.0,
        t=camera.baseline if camera is not None else 0.0, min_disparity=min_disparity + off,
        max_disparity=result.max_disparity + off, delta_d=result.delta_d,
        msg_cls=classes.disparity, image_cls=classes.image, roi_cls=classes.roi)


def _colors(left_rgb: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 RGB for points2 from an H×W×3 uint8/uint16 left image."""
    if left_rgb.dtype == np.uint8:
        return left_rgb
    return (left_rgb >> 8).astype(np.uint8)


def output_messages(result: Any, header: Any, left_rgb: Optional[np.ndarray] = None,
                    options: OutputOptions = OutputOptions(),
                    wanted: Callable[[str], bool] = _everything,
                    classes: MessageClasses = MessageClasses()) -> Dict[str, Any]:
    """The messages of :data:`OUTPUT_TOPICS` that ``wanted(topic)`` asks for.

    Args:
        result: a :class:`~dtp_stereo.pipeline.StereoResult`.
        header: the output header (left image's stamp and frame).
        left_rgb: H×W×3 uint8/uint16 RGB left image, for points2's colour (None = no colour).
        options: contents (:class:`OutputOptions`).
        wanted: which topics to build (the node asks whether anybody subscribes).
        classes: message constructors (rosbags classes for bags; rclpy when omitted).

    ``points2`` and ``depth`` need ``result.camera``; without one they are left out.
    """
    min_d = float(options.min_disparity)
    disparity = _valid_only(result, options)
    msgs: Dict[str, Any] = {}
    if wanted("disparity"):
        msgs["disparity"] = disparity_message(result, header, options, classes)
    if wanted("disparity/image"):
        with np.errstate(invalid="ignore"):
            shown = np.where(disparity >= min_d, disparity, np.float32(np.nan)).astype(np.float32)
        msgs["disparity/image"] = conv.numpy_to_image_msg(shown, "32FC1", header,
                                                          msg_cls=classes.image)
    if wanted("disparity/color"):
        color = colorize_disparity(disparity, result.max_disparity, min_disp=min_d)
        msgs["disparity/color"] = conv.numpy_to_image_msg(color, "bgr8", header,
                                                          msg_cls=classes.image)
    camera = result.camera
    want_depth = options.publish_depth and wanted("depth")
    if camera is not None and (want_depth or wanted("points2")):
        depth = disparity_to_depth(disparity, camera, min_disparity=min_d,
                                   max_depth=float(options.max_depth) or None)
        if want_depth:
            msgs["depth"] = conv.numpy_to_image_msg(depth, "32FC1", header,
                                                    msg_cls=classes.image)
        if wanted("points2"):
            colors = None
            if options.use_color and left_rgb is not None and left_rgb.ndim == 3:
                colors = _colors(left_rgb)
            msgs["points2"] = conv.build_pointcloud2(depth_to_points(depth, camera), header,
                                                     colors, msg_cls=classes.cloud,
                                                     field_cls=classes.field)
    if (result.confidence is not None and options.publish_confidence
            and wanted("confidence")):
        msgs["confidence"] = conv.numpy_to_image_msg(result.confidence.astype(np.float32),
                                                     "32FC1", header, msg_cls=classes.image)
    return msgs
