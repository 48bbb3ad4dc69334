"""Time synchronizers with ``message_filters`` semantics, and a single-slot "latest" buffer.

No rclpy here: messages are anything with ``header.stamp.sec`` / ``header.stamp.nanosec``
(or ``header.stamp.nanoseconds``). The node uses ``message_filters`` when it is importable and
these classes otherwise; both call ``callback(*msgs)`` with one message per input, in input
order.

Semantics (as ``message_filters`` Python ``TimeSynchronizer`` / ``ApproximateTimeSynchronizer``):
    * Each input keeps a queue of at most ``queue_size`` messages keyed by stamp; a new
      message with the stamp of a queued one replaces it; beyond ``queue_size`` the oldest
      stamp is evicted (counted in :attr:`dropped`).
    * Exact: whenever one stamp is present in every queue, the set is emitted (oldest first)
      and removed. Older unmatched messages stay until evicted, so out-of-order arrival
      still matches.
    * Approximate: when a message arrives, the other queues are searched for stamps within
      ``slop`` of it; among all candidate sets the one with the smallest spread
      ``max(stamp) - min(stamp)`` is emitted if the spread is ``<= slop`` (ties: the newest
      set). Simplifications versus ``message_filters``: the boundary is inclusive (the
      Python ``message_filters`` uses ``< slop``), the best set is chosen by spread instead
      of the first in closeness order, and there is no inter-message lower bound or
      C++-style pivot search; with two inputs (a stereo pair) both pick the nearest partner.
    * Approximate with ``slop_seconds=None`` (adaptive): the slop is half the frame period,
      the median step between the recent stamps of the steadiest input, so that a frame whose
      partner was lost is never paired with the next frame's partner; exact stamps only until
      two stamps of one input have been seen, then the messages that waited are matched again.
    * Callbacks run outside the internal lock, in the thread that called :meth:`add`.
"""

import collections
import itertools
import statistics
import threading
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "stamp_to_ns",
    "ExactTimeSynchronizer",
    "ApproximateTimeSynchronizer",
    "LatestSlot",
]


def stamp_to_ns(stamp: Any) -> int:
    """Convert a ``builtin_interfaces/Time``-like stamp (``sec``, ``nanosec``) to nanoseconds."""
    if hasattr(stamp, "sec"):
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    if hasattr(stamp, "nanoseconds"):  # rclpy.time.Time
        return int(stamp.nanoseconds)
    raise TypeError(f"cannot read a time stamp from {type(stamp).__name__}")


def _msg_stamp_ns(msg: Any) -> int:
    header = getattr(msg, "header", None)
    if header is None or not hasattr(header, "stamp"):
        raise TypeError(f"{type(msg).__name__} has no header.stamp; synchronizers need stamped "
                        "messages")
    return stamp_to_ns(header.stamp)


class _SynchronizerBase:
    def __init__(self, n_inputs: int, queue_size: int,
                 callback: Optional[Callable[..., Any]]) -> None:
        if n_inputs < 2:
            raise ValueError(f"a synchronizer needs at least 2 inputs, got {n_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.n_inputs = int(n_inputs)
        self.queue_size = int(queue_size)
        self._callbacks: List[Callable[..., Any]] = [] if callback is None else [callback]
        self._queues: List[Dict[int, Any]] = [{} for _ in range(self.n_inputs)]
        self._lock = threading.Lock()
        self.dropped = 0  #: messages evicted from a full queue without being matched
        self.matched = 0  #: sets emitted

    def register_callback(self, callback: Callable[..., Any]) -> None:
        """Add a callback called with one message per input (message_filters style)."""
        self._callbacks.append(callback)

    def queue_lengths(self) -> Tuple[int, ...]:
        """Current number of queued messages per input."""
        with self._lock:
            return tuple(len(q) for q in self._queues)

    def add(self, index: int, msg: Any) -> None:
        """Add ``msg`` to input ``index``; emit any set that becomes complete."""
        if not 0 <= index < self.n_inputs:
            raise IndexError(f"input index {index} out of range for {self.n_inputs} inputs")
        stamp = _msg_stamp_ns(msg)
        with self._lock:
            queue = self._queues[index]
            queue[stamp] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
                self.dropped += 1
            ready = self._match(index, stamp)
            self.matched += len(ready)
        for msgs in ready:
            for callback in self._callbacks:
                callback(*msgs)

    def _match(self, index: int, stamp: int) -> List[Tuple[Any, ...]]:
        raise NotImplementedError


class ExactTimeSynchronizer(_SynchronizerBase):
    """Emit message sets whose header stamps are identical.

    Args:
        n_inputs: number of inputs (2 for a stereo image pair).
        queue_size: messages kept per input.
        callback: called as ``callback(msg_0, ..., msg_{n-1})``.
    """

    def _match(self, index: int, stamp: int) -> List[Tuple[Any, ...]]:
        common = set(self._queues[0]).intersection(*self._queues[1:])
        out = []
        for t in sorted(common):
            out.append(tuple(q.pop(t) for q in self._queues))
        return out


class ApproximateTimeSynchronizer(_SynchronizerBase):
    """Emit message sets whose stamps are all within ``slop_seconds`` of each other.

    Args:
        n_inputs: number of inputs.
        queue_size: messages kept per input.
        slop_seconds: largest allowed spread of the stamps in a set, seconds (inclusive);
            None: adaptive, half the frame period measured from the stamps.
        callback: called as ``callback(msg_0, ..., msg_{n-1})``.
    """

    PERIOD_HISTORY = 9  # stamps per input behind the adaptive slop

    def __init__(self, n_inputs: int, queue_size: int, slop_seconds: Optional[float],
                 callback: Optional[Callable[..., Any]] = None) -> None:
        super().__init__(n_inputs, queue_size, callback)
        if slop_seconds is not None and slop_seconds < 0:
            raise ValueError(f"slop_seconds must be >= 0 (or None: adaptive), got {slop_seconds}")
        self.adaptive = slop_seconds is None
        self.slop_ns = -1 if slop_seconds is None else int(round(float(slop_seconds) * 1e9))
        self._recent: List[Deque[int]] = [collections.deque(maxlen=self.PERIOD_HISTORY)
                                          for _ in range(self.n_inputs)]

    def _adapt_slop(self, index: int, stamp: int) -> None:
        recent = self._recent[index]
        if stamp not in recent:
            recent.append(stamp)
        periods = []
        for stamps in self._recent:
            ordered = sorted(stamps)
            steps = [b - a for a, b in zip(ordered, ordered[1:]) if b > a]
            if steps:
                periods.append(statistics.median(steps))
        self.slop_ns = int(min(periods) // 2) if periods else 0  # exact until a period shows

    def _match(self, index: int, stamp: int) -> List[Tuple[Any, ...]]:
        before = self.slop_ns
        if self.adaptive:
            self._adapt_slop(index, stamp)
        out = self._emit(index, stamp)
        if self.adaptive and self.slop_ns > before:  # a wider slop may pair what waited
            for t in sorted(self._queues[0]):
                if t in self._queues[0]:
                    out += self._emit(0, t)
            out.sort(key=lambda msgs: _msg_stamp_ns(msgs[0]))
        return out

    def _emit(self, index: int, stamp: int) -> List[Tuple[Any, ...]]:
        """Pop and return the best set around ``stamp`` of input ``index`` (queued), if any."""
        candidates: List[Sequence[int]] = []
        for i, queue in enumerate(self._queues):
            if i == index:
                candidates.append((stamp,))
                continue
            near = [s for s in queue if abs(s - stamp) <= self.slop_ns]
            if not near:
                return []
            candidates.append(near)
        best: Optional[Tuple[int, ...]] = None
        best_key: Tuple[int, int] = (0, 0)
        for combo in itertools.product(*candidates):
            spread = max(combo) - min(combo)
            if spread > self.slop_ns:
                continue
            key = (spread, -max(combo))
            if best is None or key < best_key:
                best, best_key = combo, key
        if best is None:
            return []
        return [tuple(q.pop(t) for q, t in zip(self._queues, best))]


class LatestSlot:
    """A one-item buffer: ``put`` replaces (and returns) an unconsumed item, ``get`` waits.

    This keeps inference from queueing without bound: a producer (the synchronizer callback)
    never blocks, and a slow consumer always gets the newest item. :attr:`dropped` counts the
    items replaced before they were consumed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item: Any) -> Optional[Any]:
        """Store ``item``; return the older unconsumed item it replaced, or None."""
        with self._cond:
            old = self._item if self._has_item else None
            if self._has_item:
                self.dropped += 1
            self._item, self._has_item = item, True
            self.put_count += 1
            self._cond.notify()
            return old

    def get(self, timeout: Optional[float] = None) -> Optional[Any]:
        """Take the item, waiting up to ``timeout`` seconds; None on timeout or when closed."""
        with self._cond:
            if not self._has_item and not self._closed:
                self._cond.wait(timeout)
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self) -> None:
        """Wake every waiting ``get``; later ``get`` calls return immediately."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed
