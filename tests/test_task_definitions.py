"""Each task of the suite against its definition and the literature's closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import seqbench
from seqbench.tasks import language_facts as lf


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_adding_constant_one_predictor_costs_one_sixth():
    task = seqbench.load_task("adding", T=50)
    b = task.sample(20_000, 50, gen())
    m = task.metrics(torch.ones(20_000, 50, 1), b)
    assert m["mse"] == pytest.approx(1 / 6, rel=0.03)  # Var(U1 + U2) = 1/6, not 0.1767
    assert task.chance(50)["mse"] == pytest.approx(1 / 6)
    assert m["accuracy"] == pytest.approx(task.chance(50)["accuracy"], abs=0.01)


def test_adding_markers_one_in_each_half_and_target_is_their_sum():
    task = seqbench.load_task("adding", T=20)
    b = task.sample(64, 20, gen(1))
    markers = b.inputs[..., 1]
    assert torch.all(markers.sum(1) == 2)
    assert torch.all(markers[:, :10].sum(1) == 1) and torch.all(markers[:, 10:].sum(1) == 1)
    expected = (b.inputs[..., 0] * markers).sum(1)
    assert torch.allclose(b.targets[:, -1, 0], expected) and b.mask.sum() == 64 and b.mask[:, -1].all()


def test_adding_1997_variant():
    task = seqbench.load_task("adding", T=100, variant="hochreiter1997")
    b = task.sample(256, 100, gen(2))
    T = b.steps
    assert 100 <= T <= 110
    values, markers = b.inputs[..., 0], b.inputs[..., 1]
    assert values.min() >= -1 and values.max() <= 1
    assert torch.all((markers == 1).sum(1) == 2)
    first = (markers == 1).float().argmax(1)
    assert torch.all(first < 10)
    x = torch.where(markers == 1, values, torch.zeros_like(values))
    x[:, 0] = 0  # X1 is zero when the first pair is the marked one
    assert torch.allclose(b.targets[:, -1, 0], 0.5 + x.sum(1) / 4)
    assert task.chance(100)["mse"] == pytest.approx(1 / 24)


@pytest.mark.parametrize("T", [10, 100, 500])
def test_copy_memory_memoryless_baseline(T):
    task = seqbench.load_task("copy_memory", T=T)
    b = task.sample(8, T, gen())
    logits = torch.full((8, T + 20, 10), -1e4)
    logits[:, : T + 10, 0] = 0.0  # blank, certainly, until the answer
    logits[:, T + 10 :, 1:9] = 0.0  # then uniform over the 8 symbols
    m = task.metrics(logits, b)
    assert m["cross_entropy"] == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-5)
    assert task.chance(T)["cross_entropy"] == pytest.approx(10 * math.log(8) / (T + 20))
    assert torch.equal(b.targets[:, -10:], b.inputs[:, :10]) and torch.all(b.inputs[:, T + 9] == 9)


def test_associative_recall_answer_is_the_item_after_the_query():
    task = seqbench.load_task("associative_recall", variant="seqbench")
    n, k = 5, 3
    b = task.sample(32, n, gen(3))
    episode = b.inputs[:, : n * (k + 1)].view(32, n, k + 1, 8)
    items = episode[:, :, 1:, :6]
    assert torch.all(episode[:, :, 0, 6] == 1)
    query = b.inputs[:, n * (k + 1) + 1 : n * (k + 1) + 1 + k, :6]
    for row in range(32):
        idx = [i for i in range(n) if torch.equal(items[row, i], query[row])]
        assert idx and idx[0] < n - 1
        assert torch.equal(b.targets[row, -k:], items[row, idx[0] + 1])


def test_priority_sort_outputs_the_highest_priorities_in_order():
    task = seqbench.load_task("priority_sort")
    b = task.sample(16, 20, gen(4))
    vectors, priority = b.inputs[:, :20, :8], b.inputs[:, :20, 8]
    for row in range(16):
        order = priority[row].argsort(descending=True)[:16]
        assert torch.equal(b.targets[row, 21:], vectors[row, order])


def test_repeat_copy_repeats_then_ends():
    task = seqbench.load_task("repeat_copy", variant="seqbench")
    b = task.sample(4, 3, gen(5))
    R = round(b.inputs[0, 3, 9].item() * 10)
    assert b.steps == 3 + 1 + 3 * R + 1
    assert torch.equal(b.targets[:, 4 : 4 + 3 * R, :8], b.inputs[:, :3, :8].repeat(1, R, 1))
    assert torch.all(b.targets[:, -1, 8] == 1) and b.targets[:, :-1, 8].sum() == 0


def test_mqar_queries_ask_for_their_own_values():
    task = seqbench.load_task("mqar", variant="seqbench", vocab=64, seq_len=32, eval_lengths=(8,))
    b = task.sample(16, 6, gen(6))
    for row in range(16):
        pairs = dict(zip(b.inputs[row, 0:12:2].tolist(), b.inputs[row, 1:12:2].tolist(), strict=True))
        assert len(pairs) == 6 and all(k < 32 <= v for k, v in pairs.items())
        queries = b.mask[row].nonzero().squeeze(1)
        assert len(queries) == 6 and queries.min() >= 12
        for q in queries.tolist():
            assert b.targets[row, q].item() == pairs[b.inputs[row, q].item()]


def test_mqar_refuses_more_keys_than_the_vocabulary_holds():
    with pytest.raises(seqbench.errors.OptionsError, match="distinct keys"):
        seqbench.load_task("mqar", vocab=16)


def test_selective_copy_and_induction_heads_targets():
    sc = seqbench.load_task("selective_copy", length=40, variant="seqbench")
    b = sc.sample(8, 40, gen(7))
    for row in range(8):
        data = b.inputs[row, :40][b.inputs[row, :40] != sc.noise]
        assert torch.equal(b.targets[row, 40:], data)
    ih = seqbench.load_task("induction_heads", length=30)
    b = ih.sample(8, 30, gen(8))
    for row in range(8):
        first = (b.inputs[row] == ih.trigger).nonzero()[0].item()
        assert b.targets[row, -1] == b.inputs[row, first + 1] and b.inputs[row, -1] == ih.trigger


def test_temporal_order_class_is_the_order_of_x_and_y():
    task = seqbench.load_task("temporal_order", relevant=3)
    b = task.sample(64, 100, gen(9))
    X, Y = 6, 7
    for row in range(64):
        symbols = [s for s in b.inputs[row].tolist() if s in (X, Y)]
        assert len(symbols) == 3
        assert b.targets[row, -1].item() == int("".join("1" if s == Y else "0" for s in symbols), 2)
    assert task.chance(100)["accuracy"] == 1 / 8


def test_counting_scores_exactly_the_predictable_symbols():
    task = seqbench.load_task("counting", language="anbncn")
    b = task.sample(2, 3, gen())
    assert b.inputs[0].tolist() == [0, 2, 2, 2, 3, 3, 3, 4, 4, 4, 1]
    assert b.mask[0].nonzero().squeeze(1).tolist() == list(range(4, 10))  # first b .. the step before E
    assert b.targets[0, 9].item() == 1  # the last c predicts the end


def test_forecast_targets_are_the_series_k_steps_ahead():
    task = seqbench.load_task("forecast", length=50, horizon=5, noise=0.0)
    b = task.sample(4, 50, gen(10))
    assert torch.allclose(b.targets[:, :-5, 0], b.inputs[:, 5:, 0])
    assert not b.mask[:, -5:].any() and b.mask[:, :-5].all()
    m = task.metrics(b.inputs, b)  # persistence
    assert m["mse"] == pytest.approx(m["persistence_mse"])


# -- language facts: a rule-based reader must answer every question from the story -----------------------------


def read_story(tokens: list[int]) -> int:
    words = [lf.VOCAB[t] for t in tokens]
    where, origin, holder = {}, {}, {}
    for i in range(0, len(words) - lf.QUESTION, lf.SENTENCE):
        s = words[i : i + lf.SENTENCE]
        if s[1] in ("went", "moved"):
            where[s[0]] = s[4]
        elif s[1] == "grew":
            origin[s[0]] = s[4]
        elif s[1] == "picked":
            holder[s[4]] = s[0]
    q = words[-lf.QUESTION :]
    if q[:2] == ["what", "does"]:
        return lf.ID[lf.LANGUAGES[lf.COUNTRIES.index(origin[q[2]])]]
    if q[2] == "the":
        return lf.ID[where[holder[q[3]]]]
    return lf.ID[where[q[2]]]


@pytest.mark.parametrize("facts", [1, 2])
@pytest.mark.parametrize("distance", [0, 13, 60])
def test_language_facts_answers_follow_from_the_story(facts, distance):
    task = seqbench.load_task("language_facts", supporting_facts=facts, distractors=4)
    b = task.sample(200, distance, gen(distance + facts))
    assert b.steps == (1 + (1 if facts == 1 else 3) + math.ceil(distance / 6)) * 6 + 5
    for row in range(200):
        assert read_story(b.inputs[row].tolist()) == b.targets[row, -1].item()


def test_language_facts_chance_is_one_over_the_candidates():
    one = seqbench.load_task("language_facts")
    assert one.chance(60)["accuracy"] == pytest.approx(0.5 / len(lf.PLACES) + 0.5 / len(lf.LANGUAGES))
    b = one.sample(4000, 12, gen(11))  # guessing the most common candidate of each question type
    answers = b.targets[:, -1]
    is_lang = answers >= lf.ID[lf.LANGUAGES[0]]
    assert is_lang.float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert seqbench.load_task("language_facts", supporting_facts=2).chance(60)["accuracy"] == 1 / len(
        lf.PLACES
    )


def test_adding_is_solved_by_mse_below_one_hundredth():
    task = seqbench.load_task("adding")
    assert task.solved({"accuracy": 0.3, "mse": 0.009}, threshold=0.99)
    assert not task.solved({"accuracy": 0.3, "mse": 0.011}, threshold=0.99)
    old = seqbench.load_task("adding", variant="hochreiter1997")
    assert old.solved({"accuracy": 0.995, "mse": 1.0}, 0.99) and not old.solved(
        {"accuracy": 0.9, "mse": 0.0}, 0.99
    )


def test_adding_chance_is_the_constant_predictor_on_the_scored_set():
    """The plateau's 0.179 is the constant 1 on the `quick` preset's fixed 256 sequences at T = 100, not 1/6."""
    from seqbench.runner import Evaluator

    task = seqbench.load_task("adding")
    sets = Evaluator(task, 256, torch.device("cpu")).sets[100]
    chance = task.chance_on(100, sets)
    y = torch.cat([b.targets[b.mask].squeeze(-1) for b in sets])
    assert chance["mse"] == pytest.approx(((y - 1) ** 2).mean().item(), rel=1e-6)
    assert chance["mse"] == pytest.approx(0.1793, abs=5e-4)
    assert task.chance(100)["mse"] == pytest.approx(1 / 6)  # the expectation, which a larger set approaches
    big = Evaluator(task, 4096, torch.device("cpu")).sets[100]
    assert task.chance_on(100, big)["mse"] == pytest.approx(1 / 6, abs=0.01)
