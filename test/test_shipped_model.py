"""The shipped students (models/dtpnet_pruned_fast.pt, the runtime default, and
models/dtpnet_pruned.pt): load safely, are the pruned DTPnet, and work."""

import json

import numpy as np
import pytest
import torch

from dtp_stereo.assets import default_model_path, find_model
from dtp_stereo.checkpoint import load_model
from dtp_stereo.data.synthetic import SyntheticStereo, split_seed
from dtp_stereo.metrics import stereo_metrics, valid_mask


def test_the_default_is_the_fast_head_student():
    assert default_model_path().name == "dtpnet_pruned_fast.pt"
    _, ckpt = load_model(default_model_path())
    assert ckpt.model_config["head"] == "fast"


@pytest.mark.parametrize("name", ["dtpnet_pruned_fast.pt", "dtpnet_pruned.pt"])
def test_shipped_student_loads_and_beats_a_constant_predictor(torch_one_thread, name):
    path = find_model(name)
    model, ckpt = load_model(path)  # weights_only=True inside
    assert ckpt.model_name == "dtpnet"
    assert sum(p.numel() for p in model.parameters()) < 300_000  # pruned: 0.62 M -> 0.27 M
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["parameters"] == sum(p.numel() for p in model.parameters())

    data = SyntheticStereo(128, 256, max_disparity=64, seed=split_seed(0, "test"))
    epe, constant = [], []
    for i in range(3):
        s = data.sample(i)
        left, right = (torch.from_numpy(s[k]).permute(2, 0, 1)[None].float() / 255.0
                       for k in ("left", "right"))
        with torch.inference_mode():
            pred = model(left, right).disparity[0].numpy()
        valid = valid_mask(s["disparity"], 64, s["valid"])
        epe.append(stereo_metrics(pred, s["disparity"], valid)["epe"])
        median = np.full_like(pred, np.median(s["disparity"][valid]))
        constant.append(stereo_metrics(median, s["disparity"], valid)["epe"])
    # docs/results.md: test-split EPE 2.59 (fast) / 3.21 px over 50 pairs; a per-image median
    # predictor ~5.7 px
    assert np.mean(epe) < 0.75 * np.mean(constant)
