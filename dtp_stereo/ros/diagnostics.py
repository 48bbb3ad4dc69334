"""Node health bookkeeping and ``diagnostic_msgs/DiagnosticStatus`` building (no rclpy).

:class:`StereoDiagnostics` collects per-stage latencies (queue wait, convert, inference,
postprocess, publish), end-to-end latency from the image stamp, output rate, dropped pairs
and error counters, and turns them into a :class:`DiagnosticReport` (level, message,
key/values). The level rules:

* ERROR after a bad-input or processing error; it clears after ``error_clear_frames`` good
  frames in a row or ``error_timeout_s`` seconds without a new error.
* STALE when frames were processed but none for ``stale_after_s`` seconds (the camera stopped,
  or its topics went away); the rate then reads 0.
* WARN when left and right images both arrive but no synchronized pair came out of them for
  ``unsynchronized_after_s`` seconds (stamps that differ under exact sync, or a tolerance too
  small under approximate sync; stereo_image_proc warns the same way), when the median
  end-to-end latency of the last ``budget_window`` frames is above ``latency_budget_ms``, or
  while no frame has been processed yet.
* OK otherwise.

Message classes are passed to :func:`report_to_msg`, so this module is tested without ROS.
"""

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

import numpy as np

from dtp_stereo.timing import LatencyStats

__all__ = ["OK", "WARN", "ERROR", "STALE", "STAGES", "DiagnosticReport", "StereoDiagnostics",
           "report_to_msg"]

OK, WARN, ERROR, STALE = 0, 1, 2, 3
STAGES: Tuple[str, ...] = ("queue", "convert", "inference", "postprocess", "publish")


@dataclass
class DiagnosticReport:
    """A DiagnosticStatus-like snapshot.

    Attributes:
        level: OK (0), WARN (1), ERROR (2) or STALE (3).
        message: one-line summary.
        values: ordered (key, value) string pairs.
    """

    level: int
    message: str
    values: List[Tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> Dict[str, str]:
        """The key/values as a dict."""
        return dict(self.values)


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.2f}"


class StereoDiagnostics:
    """Thread-safe health counters of the stereo node.

    Args:
        latency_budget_ms: end-to-end latency above which the status is WARN, milliseconds.
        error_clear_frames: good frames in a row that clear an ERROR.
        error_timeout_s: seconds without a new error after which an ERROR clears.
        window: latency samples kept per stage for the percentiles.
        budget_window: recent frames whose median end-to-end latency is compared with the
            budget.
        rate_window_s: output rate is measured over this many seconds.
        stale_after_s: seconds without a processed frame after which the status is STALE.
        unsynchronized_after_s: seconds of images on both inputs without a synchronized pair
            after which the status is WARN.
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, latency_budget_ms: float = 100.0, *, error_clear_frames: int = 5,
                 error_timeout_s: float = 5.0, window: int = 300, budget_window: int = 10,
                 rate_window_s: float = 5.0, stale_after_s: float = 3.0,
                 unsynchronized_after_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if error_clear_frames < 1:
            raise ValueError(f"error_clear_frames must be >= 1, got {error_clear_frames}")
        self.latency_budget_ms = float(latency_budget_ms)
        self.error_clear_frames = int(error_clear_frames)
        self.error_timeout_s = float(error_timeout_s)
        self.rate_window_s = float(rate_window_s)
        self.stale_after_s = float(stale_after_s)
        self.unsynchronized_after_s = float(unsynchronized_after_s)
        self._clock = clock
        self.images_in = [0, 0]  # left, right image messages received
        self._first_image: List[Optional[float]] = [None, None]
        self._last_image: List[Optional[float]] = [None, None]
        self._last_pair: Optional[float] = None
        self._lock = threading.Lock()
        self.stages: Dict[str, LatencyStats] = {s: LatencyStats(window) for s in STAGES}
        self.end_to_end = LatencyStats(window)
        self._recent_e2e: Deque[float] = collections.deque(maxlen=max(1, int(budget_window)))
        self._out_times: Deque[float] = collections.deque()
        self.frames_in = 0
        self.frames_out = 0
        self.dropped_pairs = 0
        self.errors: Dict[str, int] = collections.defaultdict(int)
        self.last_error = ""
        self._last_error_time: Optional[float] = None
        self._error_active = False
        self._good_since_error = 0
        self.static: Dict[str, str] = {}

    def set_value(self, key: str, value: Any) -> None:
        """A key/value reported every time until changed (backend, device, sync counters, ...)."""
        with self._lock:
            self.static[key] = str(value)

    def record_image(self, side: int) -> None:
        """Count one image message of input ``side`` (0 left, 1 right) before synchronization."""
        now = self._clock()
        with self._lock:
            self.images_in[side] += 1
            if self._first_image[side] is None:
                self._first_image[side] = now
            self._last_image[side] = now

    def record_input(self, n: int = 1) -> None:
        """Count synchronized pairs handed to the node."""
        with self._lock:
            self.frames_in += n
            self._last_pair = self._clock()

    def record_dropped(self, n: int = 1) -> None:
        """Count pairs dropped before inference (replaced by a newer pair, or sync overflow)."""
        with self._lock:
            self.dropped_pairs += n

    def record_error(self, kind: str, text: str) -> None:
        """Record a bad-input/processing error: the status becomes ERROR."""
        with self._lock:
            self.errors[kind] += 1
            self.last_error = f"{kind}: {text}"
            self._last_error_time = self._clock()
            self._error_active = True
            self._good_since_error = 0

    def record_frame(self, stage_ms: Mapping[str, float],
                     end_to_end_ms: Optional[float] = None) -> None:
        """Record one processed frame.

        Args:
            stage_ms: milliseconds per stage (keys among :data:`STAGES`; others are ignored).
            end_to_end_ms: publish time minus the image stamp, ms (``None`` if unknown;
                negative values, from clocks out of step, are clamped to 0).
        """
        now = self._clock()
        with self._lock:
            for name, ms in stage_ms.items():
                if name in self.stages and math.isfinite(ms):
                    self.stages[name].record(max(0.0, ms))
            if end_to_end_ms is not None and math.isfinite(end_to_end_ms):
                e2e = max(0.0, float(end_to_end_ms))
                self.end_to_end.record(e2e)
                self._recent_e2e.append(e2e)
            self.frames_out += 1
            self._out_times.append(now)
            while self._out_times and now - self._out_times[0] > self.rate_window_s:
                self._out_times.popleft()
            if self._error_active:
                self._good_since_error += 1
                if self._good_since_error >= self.error_clear_frames:
                    self._error_active = False

    def rate_hz(self) -> float:
        """Output frames per second over the rate window (0 with fewer than 2 frames)."""
        with self._lock:
            return self._rate_locked(self._clock())

    def _unsynchronized_locked(self, now: float) -> Optional[float]:
        """Seconds both inputs have delivered images without a pair, if over the limit."""
        if None in self._first_image or None in self._last_image:
            return None
        since = max(self._first_image) if self._last_pair is None else self._last_pair
        recent = all(now - t <= self.unsynchronized_after_s for t in self._last_image)
        waited = now - since
        if recent and waited > self.unsynchronized_after_s and \
                min(self._last_image) > since:
            return waited
        return None

    def _rate_locked(self, now: float) -> float:
        times = [t for t in self._out_times if now - t <= self.rate_window_s]
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def error_active(self) -> bool:
        """Whether the status is currently ERROR (after applying the timeout)."""
        with self._lock:
            return self._error_active_locked(self._clock())

    def _error_active_locked(self, now: float) -> bool:
        if self._error_active and self._last_error_time is not None \
                and now - self._last_error_time >= self.error_timeout_s:
            self._error_active = False
        return self._error_active

    def report(self) -> DiagnosticReport:
        """Build the current status (level, message, key/values)."""
        now = self._clock()
        with self._lock:
            rate = self._rate_locked(now)
            recent = float(np.median(self._recent_e2e)) if self._recent_e2e else math.nan
            unsynced = self._unsynchronized_locked(now)
            idle = now - self._out_times[-1] if self._out_times else math.inf
            if self._error_active_locked(now):
                level, message = ERROR, f"bad input or processing error: {self.last_error}"
            elif unsynced is not None:
                level, message = WARN, (
                    f"left and right images arrive ({self.images_in[0]} / {self.images_in[1]}) "
                    f"but no synchronized pair for {unsynced:.1f} s: the topics do not appear "
                    "to be synchronized (exact sync needs identical stamps; try "
                    "approximate_sync)")
            elif self.frames_out > 0 and idle > self.stale_after_s:
                level, message = STALE, (f"no stereo pair processed for {idle:.1f} s "
                                         "(input stopped?)")
            elif self.frames_out == 0:
                level, message = WARN, "no stereo pair processed yet"
            elif math.isfinite(recent) and recent > self.latency_budget_ms:
                level, message = WARN, (f"end-to-end latency {recent:.1f} ms above budget "
                                        f"{self.latency_budget_ms:.1f} ms")
            else:
                level, message = OK, f"{rate:.1f} Hz, end-to-end p50 {_fmt(recent)} ms"
            values: List[Tuple[str, str]] = list(self.static.items())
            values += [("left_images_in", str(self.images_in[0])),
                       ("right_images_in", str(self.images_in[1])),
                       ("frames_in", str(self.frames_in)), ("frames_out", str(self.frames_out)),
                       ("dropped_pairs", str(self.dropped_pairs)), ("rate_hz", _fmt(rate)),
                       ("latency_budget_ms", _fmt(self.latency_budget_ms))]
            for name, stats in [("end_to_end", self.end_to_end)] + list(self.stages.items()):
                values += [(f"{name}_ms_{q}", _fmt(getattr(stats, q)))
                           for q in ("p50", "p90", "p99", "max")]
            values.append(("errors_total", str(sum(self.errors.values()))))
            values += [(f"errors_{kind}", str(n)) for kind, n in sorted(self.errors.items())]
            values.append(("last_error", self.last_error))
        return DiagnosticReport(level=level, message=message, values=values)


def report_to_msg(report: DiagnosticReport, name: str, hardware_id: str, status_cls: Any,
                  key_value_cls: Any) -> Any:
    """Fill a ``diagnostic_msgs/DiagnosticStatus`` (classes passed in) from a report."""
    status = status_cls()
    status.level = bytes([report.level]) if isinstance(status.level, bytes) else report.level
    status.name = name
    status.message = report.message
    status.hardware_id = hardware_id
    status.values = [key_value_cls(key=k, value=v) for k, v in report.values]
    return status
