"""Hand-computed checks of the training losses, temperature schedule and step decay."""

import math

import pytest
import torch

from training import losses


def test_disparity_loss_masks_invalid_and_out_of_range():
    pred = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    gt = torch.tensor([[[1.0, 3.0, 0.0, 100.0]]])  # gt 0 and gt >= D are ignored
    valid = torch.ones_like(gt, dtype=torch.bool)
    # smooth L1 (beta 1): errors 0 and 1 -> 0 and 0.5 -> mean 0.25
    assert losses.disparity_loss(pred, gt, valid, 48).item() == pytest.approx(0.25)
    assert losses.disparity_loss(pred, gt, valid, 48, "l1").item() == pytest.approx(0.5)
    valid[0, 0, 1] = False  # only the exact pixel is left
    assert losses.disparity_loss(pred, gt, valid, 48, "l1").item() == pytest.approx(0.0)


def test_disparity_loss_without_valid_pixels_is_zero_with_graph():
    pred = torch.rand(1, 2, 2, requires_grad=True)
    loss = losses.disparity_loss(pred, torch.zeros(1, 2, 2), None, 48)
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None and torch.all(pred.grad == 0)


def test_multi_output_weights_use_the_last_entries():
    gt = torch.full((1, 1, 2), 10.0)
    preds = [torch.full((1, 1, 2), 12.0), torch.full((1, 1, 2), 14.0)]
    # l1 errors 2 and 4 with weights 0.7 and 1.0
    got = losses.multi_output_disparity_loss(preds, gt, None, 48, (0.5, 0.7, 1.0), "l1")
    assert got.item() == pytest.approx(0.7 * 2 + 1.0 * 4)
    with pytest.raises(ValueError):
        losses.multi_output_disparity_loss(preds * 2, gt, None, 48, (0.5, 0.7, 1.0))


def test_soft_argmax_and_logits_l1():
    logits = torch.full((1, 4, 1, 1), -1e4)
    logits[0, 2] = 0.0
    assert losses.soft_argmax(logits).item() == pytest.approx(2.0)
    two = torch.zeros(1, 4, 1, 1)  # uniform -> mean of 0..3
    assert losses.soft_argmax(two).item() == pytest.approx(1.5)
    assert losses.logits_l1(logits, logits.clone()).item() == pytest.approx(0.0)
    assert losses.logits_l1(logits, two).item() == pytest.approx(0.5)


def test_kl_zero_when_equal_and_matches_hand_value():
    t = torch.randn(2, 5, 3, 4)
    assert losses.logits_kl(t.clone(), t, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    # two bins: teacher p = (0.5, 0.5), student logits (0, log 3) -> q = (0.25, 0.75), T = 1
    teacher = torch.zeros(1, 2, 1, 1)
    student = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert losses.logits_kl(student, teacher, 1.0).item() == pytest.approx(expected, rel=1e-5)
    # at T = 2 the logits are halved and the result is scaled by T^2
    q = torch.softmax(torch.tensor([0.0, math.log(3.0) / 2]), 0)
    expected_t2 = 4.0 * float((0.5 * torch.log(0.5 / q)).sum())
    assert losses.logits_kl(student, teacher, 2.0).item() == pytest.approx(expected_t2, rel=1e-5)


def test_kl_gradient_reaches_student_only():
    s = torch.randn(1, 3, 2, 2, requires_grad=True)
    t = torch.randn(1, 3, 2, 2, requires_grad=True)
    losses.logits_kl(s, t, 1.5).backward()
    assert s.grad is not None and t.grad is None


def test_cosine_feature_loss_cases():
    a = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    assert losses.cosine_feature_loss(a, a * 3).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.cosine_feature_loss(a, -a).item() == pytest.approx(2.0)
    b = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    assert losses.cosine_feature_loss(a, b).item() == pytest.approx(1.0)
    vol = torch.randn(1, 4, 3, 2, 2)  # 3D cost volumes work too
    assert losses.cosine_feature_loss(vol, vol).item() == pytest.approx(0.0, abs=1e-6)


def test_feature_losses_and_shape_checks():
    a, b = torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 2.0)
    assert losses.mse_feature_loss(a, b).item() == pytest.approx(4.0)
    assert losses.smooth_l1_feature_loss(a, b).item() == pytest.approx(1.5)
    assert losses.point_loss("l1", a, b).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="shapes differ"):
        losses.mse_feature_loss(a, torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="unknown distillation loss"):
        losses.point_loss("huber2", a, b)


def test_temperature_schedules():
    assert losses.temperature_at(0, 5, 1.0, 4.0) == pytest.approx(1.0)
    assert losses.temperature_at(2, 5, 1.0, 4.0) == pytest.approx(2.5)
    assert losses.temperature_at(4, 5, 1.0, 4.0) == pytest.approx(4.0)
    assert losses.temperature_at(9, 5, 1.0, 4.0) == pytest.approx(4.0)  # clamped
    assert losses.temperature_at(2, 5, 1.0, 4.0, "exponential") == pytest.approx(2.0)
    assert losses.temperature_at(0, 1, 1.0, 4.0) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        losses.temperature_at(0, 5, 1.0, 4.0, "cubic")


def test_step_decay_and_weighted_sum():
    got = [losses.step_decay_weight(1.0, e, (1, 2, 4)) for e in range(6)]
    assert got == pytest.approx([1.0, 0.1, 0.01, 0.01, 0.001, 0.001])
    total, values = losses.weighted_sum({"a": torch.tensor(2.0), "b": torch.tensor(3.0)},
                                        {"a": 0.5, "b": 2.0})
    assert total.item() == pytest.approx(7.0) and values == {"a": 2.0, "b": 3.0}
    with pytest.raises(KeyError):
        losses.weighted_sum({"a": torch.tensor(1.0)}, {})
