"""PSMNet state_dict layout against a table written from the published architecture.

The expected table mirrors JiaRenChang/PSMNet ``models/submodule.py`` and
``models/stackhourglass.py`` and does not use dtp_stereo's model code.
"""

from typing import Dict, Tuple

import pytest
import torch

from dtp_stereo.models import build_model
from dtp_stereo.models.psmnet import convert_public_psmnet_state_dict

Shape = Tuple[int, ...]


def _bn(table: Dict[str, Shape], prefix: str, n: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        table[f"{prefix}.{name}"] = (n,)
    table[f"{prefix}.num_batches_tracked"] = ()


def _convbn(table, prefix, cin, cout, k):
    table[f"{prefix}.0.weight"] = (cout, cin, k, k)
    _bn(table, f"{prefix}.1", cout)


def _convbn3d(table, prefix, cin, cout, k=3):
    table[f"{prefix}.0.weight"] = (cout, cin, k, k, k)
    _bn(table, f"{prefix}.1", cout)


def _layer(table, prefix, cin, planes, blocks, downsample):
    for i in range(blocks):
        inp = cin if i == 0 else planes
        _convbn(table, f"{prefix}.{i}.conv1.0", inp, planes, 3)
        _convbn(table, f"{prefix}.{i}.conv2", planes, planes, 3)
    if downsample:
        table[f"{prefix}.0.downsample.0.weight"] = (planes, cin, 1, 1)
        _bn(table, f"{prefix}.0.downsample.1", planes)


def published_psmnet_table() -> Dict[str, Shape]:
    t: Dict[str, Shape] = {}
    fe = "feature_extraction"
    _convbn(t, f"{fe}.firstconv.0", 3, 32, 3)
    _convbn(t, f"{fe}.firstconv.2", 32, 32, 3)
    _convbn(t, f"{fe}.firstconv.4", 32, 32, 3)
    _layer(t, f"{fe}.layer1", 32, 32, 3, downsample=False)
    _layer(t, f"{fe}.layer2", 32, 64, 16, downsample=True)
    _layer(t, f"{fe}.layer3", 64, 128, 3, downsample=True)
    _layer(t, f"{fe}.layer4", 128, 128, 3, downsample=False)
    for b in (1, 2, 3, 4):
        _convbn(t, f"{fe}.branch{b}.1", 128, 32, 1)
    _convbn(t, f"{fe}.lastconv.0", 320, 128, 3)
    t[f"{fe}.lastconv.2.weight"] = (32, 128, 1, 1)
    _convbn3d(t, "dres0.0", 64, 32)
    _convbn3d(t, "dres0.2", 32, 32)
    _convbn3d(t, "dres1.0", 32, 32)
    _convbn3d(t, "dres1.2", 32, 32)
    for h in ("dres2", "dres3", "dres4"):
        _convbn3d(t, f"{h}.conv1.0", 32, 64)
        _convbn3d(t, f"{h}.conv2", 64, 64)
        _convbn3d(t, f"{h}.conv3.0", 64, 64)
        _convbn3d(t, f"{h}.conv4.0", 64, 64)
        t[f"{h}.conv5.0.weight"] = (64, 64, 3, 3, 3)  # ConvTranspose3d: (in, out, k, k, k)
        _bn(t, f"{h}.conv5.1", 64)
        t[f"{h}.conv6.0.weight"] = (64, 32, 3, 3, 3)
        _bn(t, f"{h}.conv6.1", 32)
    for c in (1, 2, 3):
        _convbn3d(t, f"classif{c}.0", 32, 32)
        t[f"classif{c}.2.weight"] = (1, 32, 3, 3, 3)
    return t


@pytest.fixture(scope="module")
def full_psmnet():
    torch.manual_seed(0)
    return build_model("psmnet")


def test_state_dict_matches_published_layout(full_psmnet):
    expected = published_psmnet_table()
    got = {k: tuple(v.shape) for k, v in full_psmnet.state_dict().items()}
    assert sorted(set(expected) - set(got)) == []
    assert sorted(set(got) - set(expected)) == []
    assert {k: got[k] for k in expected if got[k] != expected[k]} == {}


def test_parameter_count_is_published(full_psmnet):
    n = sum(p.numel() for p in full_psmnet.parameters())
    n_table = sum(int(torch.Size(s).numel()) for k, s in published_psmnet_table().items()
                  if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert n == n_table
    assert round(n / 1e6, 3) == 5.225


def _public_format(table, drop_bn_counter=False):
    gen = torch.Generator().manual_seed(1)
    sd = {}
    for k, s in table.items():
        if drop_bn_counter and k.endswith("num_batches_tracked"):
            continue
        sd["module." + k] = (torch.tensor(7, dtype=torch.long) if s == ()
                             else torch.randn(s, generator=gen))
    return {"epoch": 10, "train_loss": 0.5, "state_dict": sd}


@pytest.mark.parametrize("drop_bn_counter", [False, True])
def test_public_checkpoint_converts_and_loads_strictly(full_psmnet, drop_bn_counter):
    obj = _public_format(published_psmnet_table(), drop_bn_counter)
    sd = convert_public_psmnet_state_dict(obj)
    result = full_psmnet.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    key = "feature_extraction.firstconv.0.0.weight"
    assert torch.equal(full_psmnet.state_dict()[key], obj["state_dict"]["module." + key])


def test_convert_reports_problems():
    table = published_psmnet_table()
    obj = _public_format(table)
    sd = dict(obj["state_dict"])
    del sd["module.classif3.2.weight"]
    sd["module.extra.weight"] = torch.zeros(1)
    sd["module.dres0.0.0.weight"] = torch.zeros(32, 64, 1, 1, 1)
    with pytest.raises(ValueError) as err:
        convert_public_psmnet_state_dict({"state_dict": sd})
    msg = str(err.value)
    assert "classif3.2.weight" in msg and "extra.weight" in msg and "dres0.0.0.weight" in msg
    with pytest.raises(ValueError, match="expected a dict"):
        convert_public_psmnet_state_dict([1, 2])
