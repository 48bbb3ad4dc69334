"""Metrics and latency statistics against hand-computed values."""

import math
import time

import numpy as np
import pytest
import torch

from dtp_stereo.metrics import MetricAccumulator, stereo_metrics, valid_mask
from dtp_stereo.timing import LatencyStats, time_calls, timer


def test_valid_mask_excludes_nonfinite_nonpositive_out_of_range_and_masked():
    gt = np.array([[np.nan, 0.0, -1.0, 5.0], [192.0, 191.5, np.inf, 10.0]], np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)
    assert valid_mask(gt, 192).tolist() == [[False, False, False, True],
                                            [False, True, False, True]]
    assert valid_mask(gt, 192, mask).tolist() == [[False, False, False, True],
                                                  [False, True, False, False]]
    assert valid_mask(gt, None)[1, 0]  # no upper bound
    with pytest.raises(ValueError, match="mask shape"):
        valid_mask(gt, 192, np.ones((3, 3), bool))


def test_stereo_metrics_hand_computed():
    gt = np.array([[10.0, 100.0], [50.0, 20.0]], np.float32)
    # errors: 0.5, 4 (4 <= 5 % of 100 = 5, so not D1), 3.0 (not > 3), 8 (> 3 and > 1)
    pred = np.array([[10.5, 104.0], [53.0, 12.0]], np.float32)
    valid = np.ones_like(gt, bool)
    m = stereo_metrics(pred, gt, valid)
    assert m["valid_pixels"] == 4
    assert m["epe"] == pytest.approx((0.5 + 4 + 3 + 8) / 4)
    assert m["d1"] == pytest.approx(25.0)      # only the 8 px error
    assert m["bad_1"] == pytest.approx(75.0)   # 4, 3, 8
    assert m["bad_2"] == pytest.approx(75.0)
    assert m["bad_3"] == pytest.approx(50.0)   # strict: 3.0 is not bad_3


def test_stereo_metrics_respects_valid_and_accepts_torch():
    gt = torch.tensor([[10.0, 10.0, 10.0]])
    pred = torch.tensor([[11.0, 30.0, float("nan")]])
    valid = torch.tensor([[True, False, False]])
    m = stereo_metrics(pred, gt, valid)
    assert m["valid_pixels"] == 1 and m["epe"] == pytest.approx(1.0) and m["bad_1"] == 0.0


def test_stereo_metrics_errors_and_empty():
    gt = np.full((2, 2), 5.0, np.float32)
    with pytest.raises(ValueError, match="shape mismatch"):
        stereo_metrics(np.zeros((2, 3)), gt, np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="non-finite"):
        stereo_metrics(np.full((2, 2), np.nan), gt, np.ones((2, 2), bool))
    m = stereo_metrics(gt, gt, np.zeros((2, 2), bool))
    assert m["valid_pixels"] == 0 and math.isnan(m["epe"])


def test_accumulator_per_image_vs_pooled():
    # image A: 1 valid pixel, error 10 (D1); image B: 3 valid pixels, error 0
    gt_a, pred_a = np.array([[20.0]]), np.array([[30.0]])
    gt_b, pred_b = np.full((1, 3), 20.0), np.full((1, 3), 20.0)
    empty = (np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2), bool))
    per, pooled = MetricAccumulator("per_image"), MetricAccumulator("pooled")
    for acc in (per, pooled):
        acc.update(pred_a, gt_a, np.ones_like(gt_a, bool))
        acc.update(pred_b, gt_b, np.ones_like(gt_b, bool))
        acc.update(*empty)
    r_per, r_pool = per.compute(), pooled.compute()
    assert r_per["epe"] == pytest.approx(5.0) and r_per["d1"] == pytest.approx(50.0)
    assert r_pool["epe"] == pytest.approx(2.5) and r_pool["d1"] == pytest.approx(25.0)
    for r, mode in ((r_per, "per_image"), (r_pool, "pooled")):
        assert r["n_images"] == 2 and r["n_skipped"] == 1 and r["valid_pixels"] == 4
        assert r["mode"] == mode
    with pytest.raises(ValueError, match="mode"):
        MetricAccumulator("mean")
    assert math.isnan(MetricAccumulator().compute()["epe"])


def test_latency_stats_percentiles_and_window():
    stats = LatencyStats()
    for v in range(1, 101):
        stats.record(float(v))
    assert stats.count == 100 and stats.mean == pytest.approx(50.5)
    assert stats.p50 == pytest.approx(50.5) and stats.p90 == pytest.approx(90.1)
    assert stats.p99 == pytest.approx(99.01) and stats.max == 100.0
    windowed = LatencyStats(window=3)
    for v in (100.0, 1.0, 2.0, 3.0):
        windowed.record(v)
    assert windowed.samples == [1.0, 2.0, 3.0] and windowed.total_count == 4
    assert windowed.summary()["mean"] == pytest.approx(2.0)
    assert math.isnan(LatencyStats().p50)
    with pytest.raises(ValueError):
        stats.record(-1.0)
    with pytest.raises(ValueError):
        LatencyStats(window=0)


def test_timer_measures_and_records():
    stats = LatencyStats()
    with timer("cpu", stats=stats) as t:
        time.sleep(0.02)
    assert 15.0 <= t.ms < 1000.0
    assert stats.samples == [t.ms]


def test_time_calls_warms_up_untimed_then_times_each_call():
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.005)

    stats = time_calls(work, repeats=3, warmup=2)
    assert len(calls) == 5 and stats.count == 3
    assert all(4.0 <= ms < 1000.0 for ms in stats.samples)
    assert time_calls(work, repeats=0).count == 0
    with pytest.raises(ValueError, match="repeats"):
        time_calls(work, repeats=-1)
