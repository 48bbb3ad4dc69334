"""Accuracy, complexity and CPU latency of models and of OpenCV SGBM on a test split.

Metrics follow ``dtp_stereo.metrics`` (valid: finite GT, 0 < gt < max_disparity, dataset mask;
per-image averaging). Images whose size is not a multiple of the model's ``size_divisor`` are
padded (replicate) and the prediction is cropped back.
"""

import time
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from dtp_stereo.baselines import fill_invalid_background, sgbm_disparity
from dtp_stereo.complexity import count_macs, count_parameters
from dtp_stereo.metrics import MetricAccumulator, valid_mask
from dtp_stereo.models.modes import eval_mode
from dtp_stereo.preprocess import InputPadder
from dtp_stereo.timing import time_calls


def _sample(dataset: Dataset, i: int) -> Dict[str, torch.Tensor]:
    s = dataset[i]
    return {k: torch.as_tensor(s[k]) for k in ("left", "right", "disparity", "valid")}


def _report(acc: MetricAccumulator) -> Dict[str, Any]:
    res = acc.compute()
    return {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in res.items()}


SYNTHETIC_TEST = "synthetic test, 128x256, D=64"  # the held-out split of the CPU configs


def synthetic_test_split(samples: int = 50) -> Dataset:
    """The first ``samples`` pairs of the synthetic test split the CPU configs evaluate on
    (128×256 pixels, D = 64; see configs/dtp_cpu.yaml ``data.test``)."""
    from training.data.datasets import build_dataset

    return build_dataset(dict(name="synthetic", split="test", size=samples, height=128,
                              width=256, max_disparity=64))


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, max_samples: int = 0,
                   device: str = "cpu", max_disparity: Optional[int] = None) -> Dict[str, Any]:
    """EPE, D1, bad-1/2/3 of ``model`` over the first ``max_samples`` images (0: all).

    Args:
        model: a dtp_stereo model (eval mode is used; the mode is restored).
        dataset: samples with ``left``/``right`` (3×H×W, [0, 1]), ``disparity``, ``valid``.
        max_samples: number of images (0 means the whole dataset).
        device: torch device.
        max_disparity: D of the valid mask (default ``model.max_disparity``).
    """
    d_max = int(max_disparity or model.max_disparity)
    divisor = int(getattr(model, "size_divisor", 1))
    acc = MetricAccumulator()
    n = len(dataset) if max_samples <= 0 else min(max_samples, len(dataset))
    with eval_mode(model):
        for i in range(n):
            s = _sample(dataset, i)
            h, w = s["left"].shape[-2:]
            padder = InputPadder(h, w, divisor)
            left, right = padder.pad(s["left"][None].float().to(device),
                                     s["right"][None].float().to(device))
            pred = padder.unpad(model(left, right).disparity)[0].cpu().numpy()
            gt = s["disparity"].numpy()
            acc.update(pred, gt, valid_mask(gt, d_max, s["valid"].numpy()))
    return _report(acc)


def evaluate_sgbm(dataset: Dataset, max_disparity: int, max_samples: int = 0) -> Dict[str, Any]:
    """Metrics of OpenCV SGBM (:func:`dtp_stereo.baselines.sgbm_disparity`) on the same images
    as :func:`evaluate_model`.

    SGBM's holes are filled as the KITTI devkit does, so its metrics cover every valid pixel like
    the networks'. Also reports ``density`` (percent of valid-GT pixels SGBM itself matched,
    before filling) and the mean CPU ``latency_ms`` per image.
    """
    acc = MetricAccumulator()
    n = len(dataset) if max_samples <= 0 else min(max_samples, len(dataset))
    dense, total, elapsed = 0, 0, 0.0
    for i in range(n):
        s = _sample(dataset, i)
        left, right = (np.round(s[k].permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
                       for k in ("left", "right"))
        t0 = time.perf_counter()
        raw = sgbm_disparity(left, right, max_disparity, fill=False)
        elapsed += time.perf_counter() - t0
        pred = fill_invalid_background(raw, ~np.isfinite(raw))
        gt = s["disparity"].numpy()
        mask = valid_mask(gt, max_disparity, s["valid"].numpy())
        dense += int(np.isfinite(raw[mask]).sum())
        total += int(mask.sum())
        acc.update(pred, gt, mask)
    res = _report(acc)
    res["density"] = 100.0 * dense / max(total, 1)
    res["latency_ms"] = 1000.0 * elapsed / max(n, 1)
    return res


@torch.no_grad()
def latency_ms(model: nn.Module, height: int, width: int, runs: int = 3,
               device: str = "cpu") -> float:
    """Median wall time (ms) of one batch-1 forward at height×width after one warm-up."""
    x = torch.rand(1, 3, height, width, device=device)
    with eval_mode(model):
        stats = time_calls(lambda: model(x, x), repeats=max(runs, 1), warmup=1, device=device)
    return stats.p50


def complexity(model: nn.Module, height: int, width: int) -> Dict[str, int]:
    """Parameter count and conv-only MACs at height×width."""
    return {"params": count_parameters(model), "macs": count_macs(model, height, width)}
