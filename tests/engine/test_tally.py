"""The epoch's loss and accuracy sums, added a group of steps at a time, equal the step-by-step sums."""

from __future__ import annotations

import pytest
import torch

from app.engine import loop
from app.engine.losses import predictions


@pytest.mark.parametrize("classes", [1, 10])
def test_grouped_sums_equal_the_step_by_step_sums(classes, monkeypatch):
    monkeypatch.setattr(loop, "TALLY_STEPS", 4)
    generator = torch.Generator().manual_seed(0)
    sizes = [8] * 9 + [3]  # an epoch's last batch is smaller
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    tally = loop._Tally(loss_sum, correct)
    expected_loss, expected_correct = 0.0, 0
    for step, n in enumerate(sizes):
        out = torch.randn(n, classes, generator=generator, requires_grad=True)
        targets = torch.randint(0, max(classes, 2), (n,), generator=generator)
        loss = out.float().pow(2).mean()
        tally.add(out, targets, loss, n)
        expected_loss += loss.item() * n
        expected_correct += int((predictions(out.detach()) == targets).sum())
        if step == 5:
            tally.drain()  # a flush in the middle of a group
            assert correct.item() <= expected_correct
    tally.drain()
    assert correct.item() == expected_correct
    assert loss_sum.item() == pytest.approx(expected_loss, rel=1e-6)
    assert not tally.outs and tally.elements == 0, "drained: nothing kept"


def test_a_group_is_added_once_its_outputs_hold_enough_values(monkeypatch):
    monkeypatch.setattr(loop, "TALLY_ELEMENTS", 100)
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    tally = loop._Tally(loss_sum, correct)
    tally.add(torch.randn(8, 10), torch.zeros(8, dtype=torch.long), torch.tensor(1.0), 8)
    assert len(tally.outs) == 1, "80 values: kept"
    tally.add(torch.randn(8, 10), torch.zeros(8, dtype=torch.long), torch.tensor(1.0), 8)
    assert not tally.outs and loss_sum.item() == 16.0, "160 values: added at once, memory bounded"
