"""permutation_composition against its definition: the group tables are groups, the targets are the prefix
compositions computed directly on permutations, and chance is 1/|G|."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.errors import OptionsError
from seqbench.tasks.permutation_composition import composition_table, group_elements


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("group", "order"), [("S3", 6), ("S5", 120), ("A5", 60)])
def test_tables_are_groups(group, order):
    t = composition_table(group)
    assert t.shape == (order, order)
    e = torch.arange(order)
    assert torch.equal(t[0], e) and torch.equal(t[:, 0], e)  # element 0 is the identity
    for row in t:  # closure and a Latin square: each row and column a permutation of the group
        assert torch.equal(row.sort().values, e)
    assert torch.equal(t.sort(dim=0).values, e.unsqueeze(1).expand(order, order))
    a, b, c = torch.randint(0, order, (3, 500), generator=gen(1))
    assert torch.equal(t[t[a, b], c], t[a, t[b, c]])  # associative
    if group == "S3":  # non-abelian: the word problem needs the order of the elements
        assert not torch.equal(t, t.T)


def test_a5_holds_exactly_the_even_permutations_of_five():
    a5 = group_elements("A5")
    assert len(a5) == 60 and set(a5) < set(group_elements("S5"))
    assert (0, 1, 2, 4, 3) not in a5 and (1, 2, 0, 3, 4) in a5  # a transposition out, a 3-cycle in


@pytest.mark.parametrize("group", ["S3", "S5", "A5"])
def test_targets_are_the_prefix_compositions(group):
    task = seqbench.load_task("permutation_composition", group=group)
    elements = group_elements(group)
    b = task.sample(16, 12, gen(2))
    assert b.mask.all() and b.inputs.shape == b.targets.shape == (16, 12)
    for row in range(16):
        state = tuple(range(len(elements[0])))
        for x, y in zip(b.inputs[row].tolist(), b.targets[row].tolist(), strict=True):
            g = elements[x]
            state = tuple(g[state[i]] for i in range(len(g)))  # apply the state first, then g
            assert elements[y] == state


def test_worked_example_of_the_docstring():
    t = composition_table("S3")
    state, out = 0, []
    for x in (2, 2, 3, 1):
        state = int(t[x, state])
        out.append(state)
    assert out == [2, 0, 3, 5]


@pytest.mark.parametrize("group", ["S3", "A5"])
def test_chance_is_one_over_the_order(group):
    task = seqbench.load_task("permutation_composition", group=group)
    b = task.sample(2000, 8, gen(3))
    guess = torch.zeros(2000, 8, task.order)
    guess[..., 0] = 1.0  # always "the identity"
    m = task.metrics(guess, b)
    assert m["accuracy"] == pytest.approx(1 / task.order, abs=0.01 if group == "S3" else 0.004)
    assert task.chance(8)["accuracy"] == 1 / task.order
    perfect = torch.nn.functional.one_hot(b.targets, task.order).float()
    assert task.metrics(perfect, b) == {"accuracy": 1.0, "sequence_accuracy": 1.0, "final_accuracy": 1.0}


def test_options_are_checked():
    with pytest.raises(OptionsError, match="group"):
        seqbench.load_task("permutation_composition", group="S4")
    with pytest.raises(OptionsError):
        seqbench.load_task("permutation_composition", min_length=5, max_length=2)
