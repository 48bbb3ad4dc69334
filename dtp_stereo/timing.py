"""Latency measurement shared by the CLI, the node and the benchmarks: timer and stats."""

import collections
import contextlib
import math
import time
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Union

import numpy as np


class LatencyStats:
    """Latency samples in milliseconds with mean and percentiles.

    Args:
        window: keep only the last ``window`` samples (a rolling window, e.g. for diagnostics);
            ``None`` keeps all of them.
    """

    def __init__(self, window: Optional[int] = None) -> None:
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.window = window
        self._samples: Deque[float] = collections.deque(maxlen=window)
        self.total_count = 0

    def record(self, ms: float) -> None:
        """Add one latency sample, milliseconds (must be finite and >= 0)."""
        ms = float(ms)
        if not math.isfinite(ms) or ms < 0:
            raise ValueError(f"latency must be a finite non-negative number of ms, got {ms}")
        self._samples.append(ms)
        self.total_count += 1

    def reset(self) -> None:
        """Drop all samples."""
        self._samples.clear()
        self.total_count = 0

    @property
    def samples(self) -> List[float]:
        """The samples in the window, oldest first, milliseconds."""
        return list(self._samples)

    @property
    def count(self) -> int:
        """Number of samples in the window."""
        return len(self._samples)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100, linear interpolation) in ms; NaN when empty."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        if not self._samples:
            return math.nan
        return float(np.percentile(np.fromiter(self._samples, dtype=np.float64), q))

    @property
    def mean(self) -> float:
        """Mean latency in ms; NaN when empty."""
        return float(np.mean(self._samples)) if self._samples else math.nan

    @property
    def p50(self) -> float:
        """Median latency, ms."""
        return self.percentile(50.0)

    @property
    def p90(self) -> float:
        """90th-percentile latency, ms."""
        return self.percentile(90.0)

    @property
    def p99(self) -> float:
        """99th-percentile latency, ms."""
        return self.percentile(99.0)

    @property
    def max(self) -> float:
        """Largest latency in the window, ms; NaN when empty."""
        return max(self._samples) if self._samples else math.nan

    def summary(self) -> Dict[str, float]:
        """``{"count", "mean", "p50", "p90", "p99", "max"}`` (ms values)."""
        return {"count": self.count, "mean": self.mean, "p50": self.p50, "p90": self.p90,
                "p99": self.p99, "max": self.max}


def _is_cuda(device: Union[None, str, Any]) -> bool:
    return device is not None and str(device).startswith("cuda")


def _synchronize(device: Union[None, str, Any]) -> None:
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize(device)


class Timing:
    """Result of :func:`timer`: ``ms`` is set when the block exits."""

    __slots__ = ("ms",)

    def __init__(self) -> None:
        self.ms = math.nan


@contextlib.contextmanager
def timer(device: Union[None, str, Any] = None,
          stats: Optional[LatencyStats] = None) -> Iterator[Timing]:
    """Time a block with ``time.perf_counter``.

    With a CUDA ``device`` the GPU is synchronised before and after, so queued kernels count.

    Args:
        device: the torch device the block runs on (``"cpu"``, ``"cuda"``, ``"cuda:0"``, ...).
        stats: if given, the elapsed milliseconds are recorded into it.

    Yields:
        A :class:`Timing` whose ``ms`` holds the elapsed milliseconds after the block.
    """
    result = Timing()
    _synchronize(device)
    start = time.perf_counter()
    try:
        yield result
    finally:
        _synchronize(device)
        result.ms = (time.perf_counter() - start) * 1000.0
    if stats is not None:
        stats.record(result.ms)


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 0,
               device: Union[None, str, Any] = None) -> LatencyStats:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times under :func:`timer`.

    Args:
        fn: the work to time (no arguments).
        repeats: timed calls (>= 0).
        warmup: untimed calls first (>= 0).
        device: torch device the work runs on; CUDA is synchronised around each call.

    Returns:
        The :class:`LatencyStats` of the timed calls, milliseconds.
    """
    if repeats < 0 or warmup < 0:
        raise ValueError(f"repeats and warmup must be >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    stats = LatencyStats()
    for _ in range(repeats):
        with timer(device, stats):
            fn()
    return stats
