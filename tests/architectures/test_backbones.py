"""The layer registry's hard-coded backbone table matches torchvision (weights=None, classifier removed)."""

from __future__ import annotations

import pytest
import torch

from app.layers.pretrained import BACKBONES


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_table_matches_torchvision(name):
    from torch.utils.flop_counter import FlopCounterMode

    from app.layers.torch_modules import load_backbone

    net = load_backbone(name, "none", None).eval()
    info = BACKBONES[name]
    assert sum(p.numel() for p in net.parameters()) == info.params
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        features = net(torch.zeros(1, 3, 224, 224))
    assert features.shape == (1, info.features)
    assert counter.get_total_flops() == info.flops_224
    assert hasattr(net, info.head)
    with torch.no_grad():
        small = info.min_size
        assert net(torch.zeros(1, 3, small, small)).shape == (1, info.features)
