"""Each task whose default reproduces a peer's generator, against that definition: statistics of 2,000
generated sequences beside those of the peer's own code (transcribed here in NumPy where it is short), and
the older seqbench forms kept as `variant="seqbench"`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import seqbench
from seqbench.registry import TASKS

N_SEQ = 2000


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- MQAR: HazyResearch/zoology zoology/data/multiquery_ar.py -------------------------------------------------


def zoology_mqar(vocab: int, n: int, T: int, seed: int, power_a: float = 0.01):
    """Zoology's `multiquery_ar` (num_passes 1, random_non_queries True), its NumPy calls kept."""
    np.random.seed(seed)
    half = vocab // 2
    keys = np.apply_along_axis(
        np.random.choice, 1, np.tile(np.arange(1, half), (N_SEQ, 1)), replace=False, size=n
    )
    values = np.apply_along_axis(
        np.random.choice, 1, np.tile(np.arange(half, vocab), (N_SEQ, 1)), replace=False, size=n
    )
    kvs = np.zeros((N_SEQ, 2 * n), dtype=np.int64)
    kvs[:, 0::2], kvs[:, 1::2] = keys, values
    space = (T - 2 * n) // 2
    p = power_a * np.arange(1, space + 1) ** (power_a - 1)
    p = p / p.sum()
    x = np.stack([np.arange(space, dtype=int)] * N_SEQ)
    gaps = np.apply_along_axis(np.random.choice, axis=1, arr=x, replace=False, p=p, size=n)
    queries = np.zeros((N_SEQ, T - 2 * n + 1), dtype=np.int64)
    np.put_along_axis(queries, gaps * 2, values=keys, axis=1)
    examples = np.concatenate([kvs, queries], axis=1)
    labels = np.full((N_SEQ, T + 1), -100, dtype=np.int64)
    np.put_along_axis(labels, gaps * 2 + 2 * n + 1, values=values, axis=1)
    inputs, labels = torch.tensor(examples[:, :-1]), torch.tensor(labels[:, 1:])
    inputs[inputs == 0] = torch.randint(vocab, size=inputs.shape)[inputs == 0]
    return inputs, labels


def key_to_query_gaps(inputs: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    out = []
    for row in range(inputs.shape[0]):
        first = {k: 2 * i for i, k in enumerate(inputs[row, 0 : 2 * n : 2].tolist())}
        out += [q - first[inputs[row, q].item()] for q in mask[row].nonzero().squeeze(1).tolist()]
    return torch.tensor(out, dtype=torch.float)


def entropy_bits(tokens: torch.Tensor) -> float:
    counts = torch.bincount(tokens.flatten()).float()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())


@pytest.mark.parametrize(("T", "n", "under16"), [(64, 4, 0.53), (64, 8, 0.29)])
def test_mqar_gaps_fillers_values_and_scored_positions_match_zoology(T, n, under16):
    task = seqbench.load_task("mqar")
    assert task.length_of(n) == T
    b = task.sample(N_SEQ, n, gen(n))
    ref_inputs, ref_labels = zoology_mqar(8192, n, T, seed=n)
    ref_mask = ref_labels != -100
    assert b.inputs.shape == ref_inputs.shape == (N_SEQ, T)
    ours, theirs = key_to_query_gaps(b.inputs, b.mask, n), key_to_query_gaps(ref_inputs, ref_mask, n)
    # The power law: the share of gaps under 16 and the median as Zoology's (PERF-NOTES: 53% / 29%).
    assert (ours < 16).float().mean().item() == pytest.approx((theirs < 16).float().mean().item(), abs=0.02)
    assert (ours < 16).float().mean().item() == pytest.approx(under16, abs=0.03)
    assert ours.median().item() == pytest.approx(theirs.median().item(), abs=2)
    assert ours.mean().item() == pytest.approx(theirs.mean().item(), rel=0.05)
    # Queried at even offsets after the pairs, exactly N per sequence, the label its key's value.
    q = b.mask.nonzero()[:, 1]
    assert torch.all(q >= 2 * n) and torch.all((q - 2 * n) % 2 == 0) and torch.all(b.mask.sum(1) == n)
    assert torch.equal(ref_mask.sum(1), b.mask.sum(1))
    for row in range(0, N_SEQ, 97):
        pairs = dict(
            zip(b.inputs[row, 0 : 2 * n : 2].tolist(), b.inputs[row, 1 : 2 * n : 2].tolist(), strict=True)
        )
        for pos in b.mask[row].nonzero().squeeze(1).tolist():
            assert b.targets[row, pos].item() == pairs[b.inputs[row, pos].item()]
    # Distinct values (Zoology draws them without replacement), distinct keys.
    vals, keys = b.inputs[:, 1 : 2 * n : 2], b.inputs[:, 0 : 2 * n : 2]
    assert all(len(set(r)) == n for r in vals.tolist()) and all(len(set(r)) == n for r in keys.tolist())
    assert torch.all(vals >= 4096) and torch.all((keys >= 1) & (keys < 4096))
    # Fillers: random tokens of the whole vocabulary (about 13 bits), as Zoology's random_non_queries.
    fill = ~b.mask.clone()
    fill[:, : 2 * n] = False
    ref_fill = ~ref_mask.clone()
    ref_fill[:, : 2 * n] = False
    assert entropy_bits(b.inputs[fill]) == pytest.approx(entropy_bits(ref_inputs[ref_fill]), abs=0.05)
    assert entropy_bits(b.inputs[fill]) > math.log2(8192) - 0.2


def test_mqar_training_mix_and_test_configurations_are_zoologys():
    task = seqbench.load_task("mqar")
    g = gen(1)
    draws = [task.sample_length(g) for _ in range(3000)]
    shares = {n: sum(int(d) == n for d in draws) / len(draws) for n in (4, 8, 16, 32, 64)}
    assert shares[4] == pytest.approx(100 / 180, abs=0.03) and shares[64] == pytest.approx(20 / 180, abs=0.02)
    assert {(d.seq_len, int(d)) for d in draws} == {(64, 4), (128, 8), (256, 16), (256, 32), (256, 64)}
    assert task.sample(2, draws[0], g).steps == draws[0].seq_len
    assert task.eval_lengths == (4, 8, 16, 32, 64, 128, 256)
    assert [task.length_of(n) for n in task.eval_lengths] == [64, 64, 64, 128, 256, 512, 1024]
    assert getattr(TASKS.get("mqar"), "version", 1) == 2
    s = task.summary({n: {"accuracy": n / 256, "sequence_accuracy": 0.0} for n in task.eval_lengths})
    assert s["accuracy"] == pytest.approx(sum(task.eval_lengths) / 256 / 7)  # the mean over configurations


def test_mqar_seqbench_variant_keeps_the_old_form():
    task = seqbench.load_task("mqar", variant="seqbench")
    assert task.train_lengths == (4, 16) and task.eval_lengths == (16, 32, 64)
    b = task.sample(N_SEQ, 4, gen(2))
    gaps = key_to_query_gaps(b.inputs, b.mask, 4)
    assert (gaps < 16).float().mean().item() == pytest.approx(0.20, abs=0.03)  # uniform placement
    fill = ~b.mask.clone()
    fill[:, :8] = False
    assert torch.all(b.inputs[fill] == 0)


# -- induction heads: HazyResearch/safari src/dataloaders/synthetics.py -------------------------------------


def test_induction_heads_trains_on_every_next_token_and_scores_the_last():
    task = seqbench.load_task("induction_heads")
    L = 256
    b = task.sample(N_SEQ, L, gen(3))
    assert b.inputs.shape == b.targets.shape == (N_SEQ, L + 1) and task.data == 14
    assert torch.equal(b.targets[:, :-1], b.inputs[:, 1:])  # next-token targets at every position
    assert b.mask.sum() == N_SEQ and b.mask[:, -1].all()  # only the answer is scored
    triggers = (b.inputs == task.trigger).sum(1)
    assert torch.all(triggers == 2) and torch.all(b.inputs[:, -1] == task.trigger)
    first = (b.inputs == task.trigger).float().argmax(1)
    rows = torch.arange(N_SEQ)
    assert torch.equal(b.targets[:, -1], b.inputs[rows, first + 1])
    # safari's trigger position: uniform over 0..L-3 (mean (L - 3) / 2), data symbols uniform over 14
    assert first.float().mean().item() == pytest.approx((L - 3) / 2, rel=0.05) and first.max() <= L - 3
    data = b.inputs[b.inputs != task.trigger]
    assert data.max() == 13 and entropy_bits(data) == pytest.approx(math.log2(14), abs=0.01)
    # the loss covers every position: a model right only at the answer still pays for the rest
    right_at_end = torch.zeros(N_SEQ, L + 1, task.output_size)
    right_at_end[rows, -1, b.targets[:, -1]] = 50.0
    assert task.metrics(right_at_end, b)["accuracy"] == 1.0
    assert task.loss(right_at_end, b).item() > 2.0
    old = seqbench.load_task("induction_heads", variant="seqbench")
    ob = old.sample(8, 64, gen(4))
    assert ob.steps == 64 and old.loss(torch.zeros(8, 64, old.output_size), ob).item() == pytest.approx(
        math.log(16)
    )


# -- selective copy: athms/mad-lab mad/data/instances.py ----------------------------------------------------


def mad_selective_copy(vocab: int, seq_len: int, k: int, rng: np.random.Generator):
    """MAD's `generate_copying_instance(selective=True)`, its NumPy calls kept (global RNG on its line 556)."""
    copy_token, blank = vocab - 1, vocab - 2
    n_blank = seq_len - 2 * k - 1
    to_copy = rng.choice(np.arange(vocab - 2), size=(k,), replace=True)
    inputs = np.insert(np.array(to_copy), np.random.randint(0, k, n_blank), [blank] * n_blank).tolist()
    inputs += [copy_token] + [blank] * k
    targets = [-100] * (k + n_blank + 1) + list(to_copy)
    return np.array(inputs), np.array(targets)


def test_selective_copy_places_data_and_answers_as_mad_does():
    task = seqbench.load_task("selective_copy", length=64)
    b = task.sample(N_SEQ, 64, gen(5))
    np.random.seed(5)
    rng = np.random.default_rng(5)
    ref = [mad_selective_copy(16, 64, 16, rng) for _ in range(N_SEQ)]
    ref_in = torch.tensor(np.stack([r[0] for r in ref]))
    ref_tg = torch.tensor(np.stack([r[1] for r in ref]))
    assert b.inputs.shape == ref_in.shape == (N_SEQ, 64)
    # the answer phase: one copy token, then 16 blanks, scored on exactly those 16 steps
    assert torch.all(b.inputs[:, 47] == 15) and torch.all(ref_in[:, 47] == 15)
    assert torch.all(b.inputs[:, 48:] == 14) and torch.equal(b.mask, ref_tg != -100)
    # the last data token always sits next to the copy token, in ours as in MAD's
    assert torch.all(b.inputs[:, 46] < 14) and torch.all(ref_in[:, 46] < 14)

    # where the data sit: mean position of each data token equals MAD's
    def positions(x):
        return torch.stack([(row[:47] < 14).nonzero().squeeze(1) for row in x]).float()

    assert torch.allclose(positions(b.inputs).mean(0), positions(ref_in).mean(0), atol=0.6)
    for row in range(0, N_SEQ, 101):  # the answer is the data, in order
        assert torch.equal(b.targets[row, 48:], b.inputs[row, :47][b.inputs[row, :47] < 14])
    assert entropy_bits(b.targets[b.mask]) == pytest.approx(math.log2(14), abs=0.02)
    assert task.chance(64)["token_accuracy"] == 1 / 14
    old = seqbench.load_task("selective_copy", length=64, variant="seqbench")
    assert old.sample(4, 64, gen(6)).steps == 80


# -- repeat copy: loudinthecloud/pytorch-ntm tasks/repeatcopytask.py -------------------------------------------


def test_repeat_copy_count_on_its_own_step_z_scored_as_pytorch_ntm():
    task = seqbench.load_task("repeat_copy")
    mean, std = 5.5, math.sqrt((10**2 - 1) / 12)  # pytorch-ntm's rpt_normalize for repeats 1..10
    g, counts = gen(7), []
    for _ in range(200):
        L = task.sample_length(g)
        b = task.sample(10, L, g)
        c = task.bits
        assert b.inputs.shape[2] == c + 2 and b.targets.shape[2] == c + 1
        assert torch.all(b.inputs[:, L, c] == 1) and torch.all(b.inputs[:, L, c + 1] == 0)  # delimiter alone
        z = b.inputs[:, L + 1, c + 1]
        assert torch.all(z == z[0]) and torch.all(b.inputs[:, L + 1, : c + 1] == 0)  # the count alone
        R = round(z[0].item() * std + mean)
        counts.append(R)
        assert b.steps == L + 2 + R * L + 1 and torch.all(b.inputs[:, L + 2 :] == 0)
        assert torch.equal(b.targets[:, L + 2 : L + 2 + R * L, :c], b.inputs[:, :L, :c].repeat(1, R, 1))
        assert torch.all(b.targets[:, -1, c] == 1) and b.targets[:, :-1, c].sum() == 0
        assert torch.all(b.mask[:, L + 2 :]) and not b.mask[:, : L + 2].any()
    assert set(counts) <= set(range(1, 11)) and np.mean(counts) == pytest.approx(mean, abs=0.6)
    zs = [(r - mean) / std for r in counts]  # the z-score is standardised over the training range
    assert np.mean(zs) == pytest.approx(0.0, abs=0.2) and np.std(zs) == pytest.approx(1.0, abs=0.15)


# -- associative recall: MarkPKCollier/NeuralTuringMachine generate_data.py ------------------------------------


def test_associative_recall_has_markpks_encoding():
    task = seqbench.load_task("associative_recall")
    n, k, c = 5, 3, 6
    b = task.sample(N_SEQ, n, gen(8))
    assert b.inputs.shape == (N_SEQ, n * k + 2 + 2 * k, c + 1) and task.output_size == c
    assert torch.all(b.inputs[:, : n * k, c] == 0)  # no per-item delimiter channel
    for step in (n * k, n * k + 1 + k):  # MarkPK's eos: every channel 1
        assert torch.all(b.inputs[:, step] == 1)
    assert torch.all(b.inputs[:, -k:] == 0) and torch.all(b.mask[:, -k:]) and b.mask.sum() == N_SEQ * k
    items = b.inputs[:, : n * k, :c].view(N_SEQ, n, k, c)
    query = b.inputs[:, n * k + 1 : n * k + 1 + k, :c]
    asked = []
    for row in range(N_SEQ):
        i = next(i for i in range(n) if torch.equal(items[row, i], query[row]))
        asked.append(i)
        assert torch.equal(b.targets[row, -k:], items[row, i + 1])
    # the queried item: uniform over all but the last (MarkPK: randint(0, seq_len - 1))
    assert max(asked) == n - 2 and np.mean(asked) == pytest.approx((n - 2) / 2, abs=0.1)
    assert b.inputs[:, : n * k, :c].mean().item() == pytest.approx(0.5, abs=0.01)  # snap_boolean(rand)
