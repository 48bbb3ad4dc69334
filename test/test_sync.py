"""Time synchronizers (message_filters semantics) and the single-slot latest buffer."""

import threading
import time
from types import SimpleNamespace

import pytest

from dtp_stereo.ros.sync import (ApproximateTimeSynchronizer, ExactTimeSynchronizer, LatestSlot,
                                 stamp_to_ns)


def _msg(t, tag=""):
    sec = int(t)
    return SimpleNamespace(tag=tag, header=SimpleNamespace(
        stamp=SimpleNamespace(sec=sec, nanosec=int(round((t - sec) * 1e9)))))


def _collect():
    out = []
    return out, lambda *msgs: out.append(tuple(m.tag for m in msgs))


def test_stamp_to_ns():
    assert stamp_to_ns(SimpleNamespace(sec=2, nanosec=5)) == 2_000_000_005
    assert stamp_to_ns(SimpleNamespace(nanoseconds=7)) == 7
    with pytest.raises(TypeError):
        stamp_to_ns(object())


def test_exact_pairs_identical_stamps_only():
    out, cb = _collect()
    sync = ExactTimeSynchronizer(2, 5, cb)
    sync.add(0, _msg(1.0, "L1"))
    sync.add(1, _msg(1.001, "R1'"))
    assert out == []
    sync.add(1, _msg(1.0, "R1"))
    assert out == [("L1", "R1")]
    assert sync.queue_lengths() == (0, 1)


def test_exact_out_of_order_and_missing_messages():
    out, cb = _collect()
    sync = ExactTimeSynchronizer(2, 5, cb)
    for t in (1.0, 2.0, 3.0):
        sync.add(0, _msg(t, f"L{t:g}"))
    sync.add(1, _msg(3.0, "R3"))
    sync.add(1, _msg(1.0, "R1"))  # late, out of order: still matched
    assert out == [("L3", "R3"), ("L1", "R1")]
    assert sync.queue_lengths() == (1, 0)  # L2 has no partner (missing message)
    assert sync.matched == 2


def test_exact_three_inputs():
    out, cb = _collect()
    sync = ExactTimeSynchronizer(3, 5, cb)
    sync.add(2, _msg(4.0, "c"))
    sync.add(0, _msg(4.0, "a"))
    assert out == []
    sync.add(1, _msg(4.0, "b"))
    assert out == [("a", "b", "c")]


def test_queue_overflow_drops_oldest():
    out, cb = _collect()
    sync = ExactTimeSynchronizer(2, 3, cb)
    for t in range(1, 6):
        sync.add(0, _msg(float(t), f"L{t}"))
    assert sync.dropped == 2 and sync.queue_lengths() == (3, 0)
    sync.add(1, _msg(1.0, "R1"))  # its partner was evicted
    sync.add(1, _msg(4.0, "R4"))
    assert out == [("L4", "R4")]


def test_approximate_pairs_nearest_within_slop():
    out, cb = _collect()
    sync = ApproximateTimeSynchronizer(2, 10, 0.02, cb)
    sync.add(0, _msg(1.000, "L1"))
    sync.add(0, _msg(1.030, "L2"))
    sync.add(1, _msg(1.025, "R"))
    assert out == [("L2", "R")]  # 5 ms beats 25 ms (which is outside the slop anyway)
    sync.add(1, _msg(1.015, "R0"))
    assert out[-1] == ("L1", "R0")


def test_approximate_slop_boundary_is_inclusive():
    out, cb = _collect()
    sync = ApproximateTimeSynchronizer(2, 5, 0.01, cb)
    sync.add(0, _msg(5.0, "L"))
    sync.add(1, _msg(5.0101, "far"))
    assert out == []
    sync.add(1, _msg(5.01, "edge"))
    assert out == [("L", "edge")]


def test_approximate_prefers_smallest_spread_for_three_inputs():
    out, cb = _collect()
    sync = ApproximateTimeSynchronizer(3, 5, 0.05, cb)
    sync.add(0, _msg(1.00, "a0"))
    sync.add(0, _msg(1.04, "a1"))
    sync.add(1, _msg(1.03, "b"))
    sync.add(2, _msg(1.035, "c"))
    assert out == [("a1", "b", "c")]
    assert sync.queue_lengths() == (1, 0, 0)


def test_approximate_zero_slop_behaves_exactly():
    out, cb = _collect()
    sync = ApproximateTimeSynchronizer(2, 5, 0.0, cb)
    sync.add(0, _msg(2.0, "L"))
    sync.add(1, _msg(2.000000001, "R'"))
    sync.add(1, _msg(2.0, "R"))
    assert out == [("L", "R")]


def test_adaptive_slop_never_pairs_a_frame_with_the_next_frames_partner():
    """Frames every 100 ms, right 3 ms late; right frame 2 is lost. An unlimited slop pairs
    left 2 with right 3 (103 ms apart); the adaptive slop (half the period) waits for left 3."""
    for slop, expected in ((1e6, [("L1", "R1"), ("L2", "R3")]),
                           (None, [("L1", "R1"), ("L3", "R3")])):
        out, cb = _collect()
        sync = ApproximateTimeSynchronizer(2, 5, slop, cb)
        sync.add(0, _msg(1.000, "L1"))
        sync.add(1, _msg(1.003, "R1"))
        sync.add(0, _msg(1.100, "L2"))  # its right image never comes
        sync.add(1, _msg(1.203, "R3"))
        sync.add(0, _msg(1.200, "L3"))
        assert out == expected, slop
    assert 0.045e9 <= sync.slop_ns <= 0.055e9  # half of the 100 ms period


def test_adaptive_slop_is_exact_until_a_period_is_known():
    """Right camera 20 ms late, frames every 100 ms, the first right image lost: the first left
    frame is not paired with the second right one; from the second frame on, pairs form."""
    out, cb = _collect()
    sync = ApproximateTimeSynchronizer(2, 5, None, cb)
    sync.add(0, _msg(7.000, "L1"))  # R1 lost
    sync.add(1, _msg(7.120, "R2"))
    assert out == []
    sync.add(0, _msg(7.100, "L2"))
    assert out == [("L2", "R2")]


def test_invalid_arguments():
    with pytest.raises(ValueError):
        ExactTimeSynchronizer(1, 5, None)
    with pytest.raises(ValueError):
        ExactTimeSynchronizer(2, 0, None)
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(2, 5, -1.0)
    sync = ExactTimeSynchronizer(2, 5, None)
    with pytest.raises(IndexError):
        sync.add(2, _msg(1.0))
    with pytest.raises(TypeError, match="header"):
        sync.add(0, object())


def test_register_callback_adds_listener():
    out, cb = _collect()
    sync = ExactTimeSynchronizer(2, 5, None)
    sync.register_callback(cb)
    sync.add(0, _msg(1.0, "L"))
    sync.add(1, _msg(1.0, "R"))
    assert out == [("L", "R")]


def test_latest_slot_keeps_newest_and_counts_drops():
    slot = LatestSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1
    assert slot.put(3) == 2
    assert slot.dropped == 2 and slot.put_count == 3
    assert slot.get(timeout=0) == 3
    assert slot.get(timeout=0.01) is None


def test_latest_slot_wakes_consumer_and_close():
    slot = LatestSlot()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.get(timeout=5.0)))
    worker.start()
    time.sleep(0.05)
    slot.put("x")
    worker.join(timeout=2.0)
    assert got == ["x"]
    waiter = threading.Thread(target=lambda: got.append(slot.get(timeout=5.0)))
    waiter.start()
    start = time.monotonic()
    slot.close()
    waiter.join(timeout=2.0)
    assert got == ["x", None] and time.monotonic() - start < 1.0 and slot.closed
