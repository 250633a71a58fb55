"""Every registered task, tested the same way; then each task against its definition."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.errors import OptionsError
from seqbench.registry import TASKS
from seqbench.testing import check_task


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", TASKS.names())
def test_contract(name):
    """Every registered task passes the checks a plugin author calls (seqbench.testing.check_task), built
    with the small test configuration it declares (`test_options`), if any."""
    check_task(seqbench.load_task(name, **getattr(TASKS.get(name), "test_options", {})))


# -- copy: the format of Graves et al. 2014 §4.1 -------------------------------------------------------------


def test_copy_format_matches_its_definition():
    task = seqbench.load_task("copy")
    L = 5
    b = task.sample(16, L, gen(3))
    assert b.inputs.shape == (16, 2 * L + 1, 9)
    bits, delim = b.inputs[..., :8], b.inputs[..., 8]
    assert set(bits[:, :L].unique().tolist()) <= {0.0, 1.0}
    assert torch.all(delim[:, L] == 1) and delim.sum() == 16  # one delimiter per sequence, at step L
    assert torch.all(b.inputs[:, L:, :8] == 0)  # nothing but the delimiter after the data
    assert torch.equal(b.targets[:, L + 1 :], bits[:, :L])  # the answer is the input, in order
    assert torch.all(~b.mask[:, : L + 1]) and torch.all(b.mask[:, L + 1 :])


def test_copy_loss_ignores_everything_outside_the_answer():
    task = seqbench.load_task("copy")
    b = task.sample(4, 6, gen())
    perfect = torch.where(b.targets > 0.5, 20.0, -20.0)
    noisy = perfect.clone()
    noisy[~b.mask] = torch.randn_like(noisy[~b.mask]) * 50  # garbage where the mask is off
    assert task.loss(noisy, b).item() == pytest.approx(task.loss(perfect, b).item())
    m = task.metrics(noisy, b)
    assert m["accuracy"] == 1.0 and m["bit_errors"] == 0.0 and m["bit_accuracy"] == 1.0


@pytest.mark.parametrize("length", [1, 7, 20])
def test_copy_half_everywhere_costs_eight_bits_per_step(length):
    task = seqbench.load_task("copy")
    b = task.sample(8, length, gen())
    m = task.metrics(torch.zeros(*b.targets.shape), b)  # logit 0 = p 0.5
    assert m["cost_bits"] == pytest.approx(8 * length, rel=1e-5)
    assert task.chance(length)["cost_bits"] == 8 * length


def test_copy_counts_bit_errors_per_sequence():
    task = seqbench.load_task("copy")
    b = task.sample(2, 4, gen())
    out = torch.where(b.targets > 0.5, 5.0, -5.0)
    t = b.mask.nonzero()[0]  # first answer step of sequence 0
    out[0, t[1], :3] *= -1  # three wrong bits in sequence 0
    m = task.metrics(out, b)
    assert m["bit_errors"] == pytest.approx(1.5)  # (3 + 0) / 2
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["bit_accuracy"] == pytest.approx(1 - 3 / (2 * 4 * 8))


def test_copy_rejects_impossible_options():
    with pytest.raises(OptionsError):
        seqbench.load_task("copy", min_length=5, max_length=2)
    with pytest.raises(OptionsError, match="unknown option"):
        seqbench.load_task("copy", length=3)
