"""Diagnostics levels, counters and message building (fake clock, no ROS)."""

from types import SimpleNamespace

import pytest

from dtp_stereo.ros.diagnostics import (ERROR, OK, STALE, WARN, StereoDiagnostics,
                                        report_to_msg)


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _diag(**kw):
    clock = _Clock()
    return StereoDiagnostics(latency_budget_ms=50.0, clock=clock, **kw), clock


def _frame(diag, clock, e2e, dt=0.1):
    clock.t += dt
    diag.record_frame({"convert": 1.0, "inference": e2e / 2, "postprocess": 2.0,
                       "publish": 0.5}, e2e)


def test_warn_before_first_frame_then_ok():
    diag, clock = _diag()
    assert diag.report().level == WARN
    for _ in range(5):
        _frame(diag, clock, 20.0)
    report = diag.report()
    assert report.level == OK
    values = report.as_dict()
    assert values["frames_out"] == "5"
    assert float(values["rate_hz"]) == pytest.approx(10.0)
    assert float(values["end_to_end_ms_p50"]) == pytest.approx(20.0)
    assert float(values["inference_ms_p50"]) == pytest.approx(10.0)


def test_warn_above_latency_budget_and_recovery():
    diag, clock = _diag(budget_window=3)
    for _ in range(3):
        _frame(diag, clock, 80.0)
    report = diag.report()
    assert report.level == WARN and "above budget" in report.message
    for _ in range(3):
        _frame(diag, clock, 10.0)
    assert diag.report().level == OK
    diag.latency_budget_ms = 5.0
    assert diag.report().level == WARN


def test_error_clears_after_good_frames():
    diag, clock = _diag(error_clear_frames=3, error_timeout_s=100.0)
    _frame(diag, clock, 10.0)
    diag.record_error("bad_input", "unsupported image encoding 'bgr16'")
    report = diag.report()
    assert report.level == ERROR and "bgr16" in report.message
    assert report.as_dict()["errors_bad_input"] == "1"
    _frame(diag, clock, 10.0)
    _frame(diag, clock, 10.0)
    assert diag.report().level == ERROR
    _frame(diag, clock, 10.0)
    assert diag.report().level == OK
    assert "bgr16" in diag.report().as_dict()["last_error"]  # last error text is kept


def test_error_clears_after_timeout():
    diag, clock = _diag(error_clear_frames=100, error_timeout_s=2.0)
    _frame(diag, clock, 10.0)
    diag.record_error("processing", "boom")
    clock.t += 1.0
    assert diag.error_active()
    clock.t += 1.5
    assert not diag.error_active()
    assert diag.report().level == OK


def test_counters_and_static_values():
    diag, clock = _diag()
    diag.set_value("backend", "torch")
    diag.record_input(3)
    diag.record_dropped(2)
    diag.record_error("bad_input", "a")
    diag.record_error("bad_input", "b")
    diag.record_error("processing", "c")
    values = diag.report().as_dict()
    assert values["backend"] == "torch"
    assert (values["frames_in"], values["dropped_pairs"]) == ("3", "2")
    assert (values["errors_total"], values["errors_bad_input"], values["errors_processing"]) == \
        ("3", "2", "1")
    assert values["last_error"] == "processing: c"


def test_rate_uses_window_and_negative_latency_is_clamped():
    diag, clock = _diag(rate_window_s=1.0)
    for _ in range(4):
        _frame(diag, clock, -5.0, dt=0.5)
    assert diag.rate_hz() == pytest.approx(2.0)
    assert diag.end_to_end.samples == [0.0] * 4
    clock.t += 10.0
    assert diag.rate_hz() == 0.0


def test_report_to_msg_with_plain_classes():
    diag, clock = _diag()
    _frame(diag, clock, 10.0)
    status = report_to_msg(diag.report(), "node: stereo", "hw",
                           lambda: SimpleNamespace(level=0), SimpleNamespace)
    assert status.level == OK and status.name == "node: stereo" and status.hardware_id == "hw"
    assert any(kv.key == "frames_out" and kv.value == "1" for kv in status.values)


def test_report_to_msg_with_ros_message():
    msgs = pytest.importorskip("diagnostic_msgs.msg")
    diag, _ = _diag()
    diag.record_error("bad_input", "x")
    status = report_to_msg(diag.report(), "n", "h", msgs.DiagnosticStatus, msgs.KeyValue)
    assert status.level == msgs.DiagnosticStatus.ERROR


def test_stale_when_frames_stop_and_ok_again_when_they_resume():
    diag, clock = _diag(stale_after_s=2.0)
    for _ in range(5):
        _frame(diag, clock, 20.0)
    assert diag.report().level == OK
    clock.t += 8.0  # the camera stopped
    report = diag.report()
    assert report.level == STALE and "no stereo pair processed for 8.0 s" in report.message
    assert float(report.as_dict()["rate_hz"]) == 0.0
    for _ in range(3):
        _frame(diag, clock, 20.0)
    assert diag.report().level == OK


def test_warn_when_images_arrive_but_never_pair():
    """Exact sync with skewed stamps: both inputs deliver, nothing pairs (stereo_image_proc
    warns that the topics do not appear to be synchronized)."""
    diag, clock = _diag(unsynchronized_after_s=3.0)
    for _ in range(20):
        clock.t += 0.1
        diag.record_image(0)
        diag.record_image(1)
    assert diag.report().level == WARN and "no stereo pair processed yet" in \
        diag.report().message  # 2 s: not yet
    for _ in range(20):
        clock.t += 0.1
        diag.record_image(0)
        diag.record_image(1)
    report = diag.report()
    assert report.level == WARN and "do not appear to be synchronized" in report.message
    assert report.as_dict()["left_images_in"] == "40"
    diag.record_input()  # a pair at last
    _frame(diag, clock, 20.0, dt=0.0)
    assert diag.report().level == OK
    clock.t += 10.0  # only the left camera keeps publishing: stale, not unsynchronized
    for _ in range(5):
        clock.t += 0.1
        diag.record_image(0)
    assert diag.report().level == STALE
