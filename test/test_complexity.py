"""Hand-computed checks of the conv-only MAC counter and the parameter counter."""

import pytest
from torch import nn

from dtp_stereo.complexity import count_macs, count_parameters


class _Pair(nn.Module):
    """Runs ``body`` on the left image only, so MACs are those of one pass."""

    size_divisor = 4

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, left, right):
        return self.body(left)


def test_conv2d_macs():
    # 3->8, 3x3, padding 1 on 16x16: 16*16 outputs * 8 ch * (3*3*3) MACs each
    model = _Pair(nn.Conv2d(3, 8, 3, padding=1))
    assert count_macs(model, 16, 16) == 16 * 16 * 8 * 27


def test_strided_grouped_conv_and_batch():
    body = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.Conv2d(6, 6, 1, groups=3))
    # conv1: 8x8 out * 6 * 27 = 10368; conv2 grouped: 8x8 * 6 * (6/3) = 768; x2 for batch 2
    assert count_macs(_Pair(body), 16, 16, batch=2) == 2 * (10368 + 768)


def test_conv_transpose_counted_on_input_grid():
    body = nn.Sequential(nn.Conv2d(3, 4, 1, stride=4),  # 16x16 -> 4x4 grid: 16*4*3 = 192
                         nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1))
    # transposed: 16 input pixels * 4 in-ch * 2 out-ch * 9 = 1152 (not 64 outputs * 72 = 4608)
    assert count_macs(_Pair(body), 16, 16) == 192 + 1152


def test_conv3d_and_linear():
    class Body(nn.Module):
        def __init__(self):
            super().__init__()
            self.c3 = nn.Conv3d(1, 2, 3, padding=1)
            self.fc = nn.Linear(8 * 8, 5)

        def forward(self, x):
            v = self.c3(x[:, :1].unsqueeze(2))  # 1x1x1x8x8 -> 1x2x1x8x8
            return self.fc(v.flatten(2))  # 2 rows x 64 -> 5

    # conv3d: 2*1*8*8 outputs * 27 = 3456; linear: 2*5 outputs * 64 = 640
    assert count_macs(_Pair(Body()), 8, 8) == 3456 + 640


def test_count_macs_restores_mode_and_checks_size():
    model = _Pair(nn.Conv2d(3, 1, 1))
    model.train()
    count_macs(model, 8, 8)
    assert model.training
    with pytest.raises(ValueError, match="size_divisor"):
        count_macs(model, 6, 8)


def test_count_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2, bias=False))
    assert count_parameters(model) == (4 * 27 + 4) + 8 + 8
    model[0].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 4 + 8 + 8
