"""The contract checks catch what they claim to catch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqbench.tasks.copy import Copy
from seqbench.testing import check_model, check_task


class LooksAhead(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lin = nn.Linear(input_size, hidden_size)

    def forward(self, x):
        return self.lin(x.flip(1))  # reads the sequence backwards: step t sees the future


class DeadWeight(LooksAhead):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.unused = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return self.lin(x)


class WrongShape(LooksAhead):
    def forward(self, x):
        return self.lin(x)[:, :-1]


class EmptyMask(Copy):
    def sample(self, batch_size, length, generator):
        b = super().sample(batch_size, length, generator)
        b.mask[:] = False
        return b


@pytest.mark.parametrize(
    "cls,message", [(LooksAhead, "looks ahead"), (DeadWeight, "no gradient reaches"), (WrongShape, "output")]
)
def test_check_model_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_model(cls)


def test_check_task_catches_an_empty_mask():
    with pytest.raises(AssertionError, match="mask is empty"):
        check_task(EmptyMask)
