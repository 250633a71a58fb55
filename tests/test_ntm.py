"""The NTM's addressing pieces against their definitions (Graves et al. 2014 §3.3)."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.errors import OptionsError
from seqbench.models import ntm as ntm_module
from seqbench.models.ntm import address, circular_shift, content_weights, sharpen


def one_hot(i: int, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(i), n).float()


def test_content_weights_sum_to_one_and_find_the_key():
    torch.manual_seed(0)
    memory = torch.randn(2, 7, 4)
    keys = memory[:, [3, 5]] * 2.5  # scaled copies: cosine ignores the scale
    w = content_weights(memory, keys, beta=torch.full((2, 2), 50.0))
    assert torch.allclose(w.sum(-1), torch.ones(2, 2))
    assert w.argmax(-1).tolist() == [[3, 5], [3, 5]]


def test_key_strength_zero_gives_uniform_weights():
    w = content_weights(torch.randn(1, 5, 3), torch.randn(1, 1, 3), beta=torch.zeros(1, 1))
    assert torch.allclose(w, torch.full((1, 1, 5), 0.2))


@pytest.mark.parametrize("shift,expected", [(0, 2), (1, 3), (-1, 1)])
def test_shift_moves_weight_by_one_slot(shift, expected):
    w = one_hot(2, 6).view(1, 1, 6)
    s = one_hot(shift + 1, 3).view(1, 1, 3)  # distribution over shifts -1, 0, +1
    assert torch.equal(circular_shift(w, s), one_hot(expected, 6).view(1, 1, 6))


def test_shift_wraps_around():
    w = one_hot(5, 6).view(1, 1, 6)
    assert circular_shift(w, one_hot(2, 3).view(1, 1, 3)).argmax().item() == 0
    assert circular_shift(one_hot(0, 6).view(1, 1, 6), one_hot(0, 3).view(1, 1, 3)).argmax().item() == 5


def test_shift_is_a_convolution():
    w = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])
    s = torch.tensor([[[0.2, 0.5, 0.3]]])  # P(-1), P(0), P(+1)
    # w~(i) = Σ_j w(j) s(i - j): slot i receives w(i+1) via shift -1, w(i) via 0, w(i-1) via +1
    expected = torch.tensor(
        [
            [
                [
                    0.2 * 0.2 + 0.5 * 0.1 + 0.3 * 0.4,
                    0.2 * 0.3 + 0.5 * 0.2 + 0.3 * 0.1,
                    0.2 * 0.4 + 0.5 * 0.3 + 0.3 * 0.2,
                    0.2 * 0.1 + 0.5 * 0.4 + 0.3 * 0.3,
                ]
            ]
        ]
    )
    assert torch.allclose(circular_shift(w, s), expected)


def test_sharpening():
    w = torch.tensor([[[0.1, 0.6, 0.3]]])
    assert torch.allclose(sharpen(w, torch.ones(1, 1)), w, atol=1e-6)  # γ = 1 leaves w alone
    sharp = sharpen(w, torch.full((1, 1), 5.0))
    assert torch.allclose(sharp.sum(-1), torch.ones(1, 1))
    assert sharp[0, 0, 1] > 0.95 and sharp.argmax() == 1


def test_interpolation_gate():
    memory, prev = torch.randn(1, 5, 3), one_hot(4, 5).view(1, 1, 5)
    no_shift, gamma = one_hot(1, 3).view(1, 1, 3), torch.ones(1, 1)
    key, beta = memory[:, [1]], torch.full((1, 1), 100.0)
    kept = address(memory, prev, key, beta, torch.zeros(1, 1), no_shift, gamma)  # g = 0: previous weighting
    assert kept.argmax().item() == 4 and torch.allclose(kept, prev, atol=1e-6)
    content = address(memory, prev, key, beta, torch.ones(1, 1), no_shift, gamma)  # g = 1: content
    assert content.argmax().item() == 1


def test_weightings_sum_to_one_through_a_sequence(monkeypatch):
    ntm = seqbench.load_model(
        "ntm",
        3,
        8,
        memory_slots=9,
        memory_width=4,
        read_heads=2,
        write_heads=2,
        implementation="reference",
    )
    seen = []

    def spy(*args):
        w = address(*args)
        seen.append(w.detach())
        return w

    monkeypatch.setattr(ntm_module, "address", spy)
    ntm(torch.randn(2, 6, 3))
    assert len(seen) == 6
    for w in seen:
        assert w.shape == (2, 4, 9) and torch.allclose(w.sum(-1), torch.ones(2, 4), atol=1e-5)
        assert (w >= 0).all()


def test_write_erases_then_adds():
    """A one-hot write with full erase replaces exactly that slot with the add vector."""
    torch.manual_seed(0)
    memory = torch.randn(1, 4, 3)
    w = one_hot(2, 4).view(1, 4, 1)
    erase, add = torch.ones(1, 1, 3), torch.tensor([[[0.5, -0.5, 0.25]]])
    new = memory * (1 - w * erase) + w * add  # the update NTM.forward applies per write head
    assert torch.allclose(new[0, 2], add[0, 0])
    assert torch.equal(new[0, [0, 1, 3]], memory[0, [0, 1, 3]])


def test_feedforward_controller_and_bad_options():
    ff = seqbench.load_model("ntm", 3, 8, memory_slots=5, memory_width=2, controller="feedforward")
    assert ff(torch.randn(2, 4, 3)).shape == (2, 4, 8)
    with pytest.raises(OptionsError, match="controller"):
        seqbench.load_model("ntm", 3, 8, controller="gru")
