"""The one stereo pipeline: an image pair (and its cameras) in, disparity at the input size out.

Every consumer runs the same steps through :class:`StereoPipeline`: the ROS node, ``bag-eval``,
``dtp-stereo infer`` / ``eval`` and the benchmarks::

    prepare (resize keeping aspect, pad to the divisor) -> backend.infer -> restore (crop the
    padding, resize back, scale the values) -> the camera at the input resolution

No ROS here: messages are built from a :class:`StereoResult` by :mod:`dtp_stereo.ros.outputs`.
The two rules that the copies of this code once disagreed on live here and nowhere else:

- **Camera scaling** (:func:`camera_for_image`): a camera_info of another resolution than the
  images is scaled to the image size (:meth:`StereoCamera.scaled`), and only when the aspect
  ratios agree (within 1 %): otherwise the calibration is not for these images.
- **Output range** (:attr:`StereoResult.max_disparity`, :attr:`StereoResult.delta_d`): a
  network with D planes reports ``0 .. D - 1`` network pixels, times the resize scale
  (:func:`dtp_stereo.ros.conversions.disparity_output_range`). The disparity offset ``doffs``
  of the DisparityImage is applied by :func:`dtp_stereo.ros.outputs.disparity_message`.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from dtp_stereo.preprocess import Frame, StereoPreprocessor
from dtp_stereo.ros.conversions import disparity_output_range
from dtp_stereo.ros.geometry import StereoCamera

__all__ = ["ASPECT_TOLERANCE", "StereoPipeline", "StereoResult", "camera_for_image"]

ASPECT_TOLERANCE = 0.01  # relative aspect-ratio difference accepted between camera and image


def camera_for_image(camera: StereoCamera, width: int, height: int) -> StereoCamera:
    """``camera`` at the image size ``width``×``height`` (pixels), scaled if it differs.

    Raises:
        ValueError: the aspect ratios differ by more than :data:`ASPECT_TOLERANCE` (an
            anisotropic scale would silently distort depth); the message names both sizes.
    """
    if (camera.width, camera.height) == (width, height):
        return camera
    cam_aspect, img_aspect = camera.width / camera.height, width / height
    if abs(cam_aspect / img_aspect - 1.0) > ASPECT_TOLERANCE:
        raise ValueError(f"camera_info is {camera.width}x{camera.height} but the images are "
                         f"{width}x{height}: another aspect ratio, so the calibration does not "
                         "belong to these images")
    return camera.scaled(width, height)


@dataclass(frozen=True)
class StereoResult:
    """One pair through the pipeline.

    Attributes:
        disparity: H×W float32, left-referenced disparity in pixels of the input images.
        confidence: H×W float32 in [0, 1] at the input size, or ``None`` (model without one).
        frame: how the pair was mapped to the network input (sizes, scale).
        max_disparity: largest disparity the network can report, input pixels ((D - 1)·scale).
        delta_d: smallest disparity step, input pixels (1/16 px × scale).
        camera: the cameras at the input resolution, or ``None`` when none was given.
        timings_ms: ``prepare``, ``inference`` (``backend.infer`` alone) and ``restore``, ms.
    """

    disparity: np.ndarray
    confidence: Optional[np.ndarray]
    frame: Frame
    max_disparity: float
    delta_d: float
    camera: Optional[StereoCamera] = None
    timings_ms: Dict[str, float] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        """prepare + inference + restore, ms."""
        return float(sum(self.timings_ms.values()))


class StereoPipeline:
    """A backend and its preprocessing: image pair in, :class:`StereoResult` out.

    Args:
        backend: a :class:`~dtp_stereo.backends.StereoBackend`.
        preprocessor: resize/pad rules; default: pad to the backend's divisor, to its fixed
            ``input_size`` when it has one.
    """

    def __init__(self, backend: Any, preprocessor: Optional[StereoPreprocessor] = None) -> None:
        self.backend = backend
        self.preprocessor = preprocessor or StereoPreprocessor(
            backend.size_divisor, getattr(backend, "input_size", None))

    @classmethod
    def from_checkpoint(cls, checkpoint: Union[str, Path], *, backend: str = "torch",
                        max_width: Optional[int] = None, options: Any = None,
                        **overrides: Any) -> "StereoPipeline":
        """A pipeline on ``checkpoint`` through :func:`~dtp_stereo.backends.create_backend`.

        ``max_width`` (pixels) caps the network input width (aspect kept); ``options`` (a
        :class:`~dtp_stereo.backends.BackendOptions`) and single-field ``overrides``
        (``device``, ``threads``, ``input_size``, ...) say how the backend runs.
        """
        from dtp_stereo.backends import create_backend

        net = create_backend(backend, str(checkpoint), options=options, **overrides)
        size = getattr(net, "input_size", None) or (options.input_size if options else None) \
            or overrides.get("input_size")
        return cls(net, StereoPreprocessor(net.size_divisor, size, max_width))

    @property
    def max_disparity(self) -> int:
        """D, the network's disparity planes (network pixels)."""
        return int(self.backend.max_disparity)

    def run(self, left: np.ndarray, right: np.ndarray,
            camera: Optional[StereoCamera] = None) -> StereoResult:
        """Run one pair.

        Args:
            left, right: H×W(×C) images, same size (uint8, uint16 or float in [0, 1]).
            camera: the rectified cameras (any resolution of the same aspect ratio), or None.

        Raises:
            ValueError: empty or mismatched images, unsupported dtype/channels, or a camera of
                another aspect ratio (see :func:`camera_for_image`).
        """
        t0 = time.perf_counter()
        net_left, net_right, frame = self.preprocessor.prepare(left, right)
        if camera is not None:
            camera = camera_for_image(camera, frame.orig_width, frame.orig_height)
        t1 = time.perf_counter()
        out = self.backend.infer(net_left, net_right)
        t2 = time.perf_counter()
        disparity = frame.restore(out.disparity)
        confidence = (frame.restore(out.confidence, scale_values=False)
                      if out.confidence is not None else None)
        t3 = time.perf_counter()
        max_d, delta_d = disparity_output_range(self.max_disparity, frame.scale)
        return StereoResult(disparity=disparity, confidence=confidence, frame=frame,
                            max_disparity=max_d, delta_d=delta_d, camera=camera,
                            timings_ms={"prepare": (t1 - t0) * 1e3,
                                        "inference": (t2 - t1) * 1e3,
                                        "restore": (t3 - t2) * 1e3})

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Disparity (H×W float32, pixels of the input) of a pair: :meth:`run`'s disparity."""
        return self.run(left, right).disparity
